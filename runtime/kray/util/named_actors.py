"""`kray.util.list_named_actors`: the names of the live named actors, as `ray.util.list_named_actors`.

Asks the GCS's actor directory through the caller's core worker.
"""

from __future__ import annotations

from typing import Any

from kray.api import runtime
from kray.protocol import messages

_DEAD = "DEAD"


def list_named_actors(all_namespaces: bool = False) -> list[Any]:
    """The names of the named actors that are not dead, in the current namespace, as a list of str.

    With all_namespaces=True, every namespace's named actors, as dicts {"name": ..., "namespace": ...}.
    Actors still being created or restarting are listed (their names are taken), as in Ray.
    """
    if not isinstance(all_namespaces, bool):
        raise TypeError(f"all_namespaces must be a bool, got {all_namespaces!r}.")
    core = runtime.current_core()
    infos = core.call(core.gcs_address, lambda rid: messages.ListActors(rid))
    named = [(i.options.name, i.options.namespace) for i in infos if i.options.name and i.state != _DEAD]
    if all_namespaces:
        return [{"name": name, "namespace": namespace} for name, namespace in sorted(set(named))]
    return sorted({name for name, namespace in named if namespace == core.namespace})
