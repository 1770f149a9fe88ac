"""`ray.cloudpickle` under kray: cloudpickle itself. An ObjectRef pickled with it (out of band) keeps its
object pinned for as long as the object's owner lives, as with Ray's copy."""

from cloudpickle import (
    CloudPickler,
    dump,
    dumps,
    load,
    loads,
    register_pickle_by_value,
    unregister_pickle_by_value,
)

__all__ = ["CloudPickler", "dump", "dumps", "load", "loads", "register_pickle_by_value", "unregister_pickle_by_value"]
