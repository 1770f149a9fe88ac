"""The `kray` command line: a thin click group; each subcommand lives in a module of its own."""

from __future__ import annotations

import click

from kray.cli import (
    cluster_commands,
    health_check,
    job_commands,
    logs_command,
    memory_command,
    microbenchmark,
    node_commands,
    state_commands,
)


@click.group()
@click.version_option(package_name="kray")
def main() -> None:
    """kray: a Ray-compatible distributed runtime for Python, native to Kubernetes."""


main.add_command(node_commands.start)
main.add_command(node_commands.stop)
main.add_command(node_commands.status)
main.add_command(microbenchmark.command)
main.add_command(health_check.command)
main.add_command(job_commands.job)
for _verb in cluster_commands.COMMANDS:
    main.add_command(_verb)
for _state_verb in state_commands.COMMANDS:  # kray list | get | summary
    main.add_command(_state_verb)
for _debug_verb in (*memory_command.COMMANDS, *logs_command.COMMANDS):  # kray memory | logs
    main.add_command(_debug_verb)


if __name__ == "__main__":
    main()
