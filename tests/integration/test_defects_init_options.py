"""kray.init's keyword options from Ray either work or are refused by name (issue 15, defect 2)."""

from __future__ import annotations

import logging

import kray
import pytest


@pytest.mark.parametrize(
    ("options", "named"),
    [({"_temp_dir": "/tmp/x"}, "_temp_dir"), ({"job_config": object()}, "job_config"),
     ({"logging_level": "LOUD"}, "logging_level"), ({"no_such_option": 1}, "no_such_option")],
)
def test_init_refuses_what_it_cannot_honour_before_starting_anything(options: dict, named: str) -> None:
    with pytest.raises((ValueError, TypeError), match=named):
        kray.init(**options)
    assert not kray.is_initialized()


def test_init_logging_level_sets_krays_loggers(cluster_factory, monkeypatch: pytest.MonkeyPatch) -> None:
    logger = logging.getLogger("kray")
    monkeypatch.setattr(logger, "level", logger.level)  # restored after the test
    cluster_factory(num_cpus=1, logging_level="DEBUG")
    assert logger.level == logging.DEBUG
