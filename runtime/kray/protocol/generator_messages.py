"""Messages of generator tasks (TaskSpec.num_returns < 0; see kray.core.generators): items reported as
they are yielded, and the consumer's progress for backpressure.

Pure data, registered with `wire` like kray.protocol.messages (codes 140-149). Who sends what:

    executor -> owner     GeneratorItem (one per yielded value, before the task's TaskDone on the same connection)
    owner -> executor     GeneratorConsumed (only for _generator_backpressure_num_objects streams)
"""

from __future__ import annotations

from kray.protocol.messages import ReturnValue, message


@message(140)
class GeneratorItem:
    """executor -> owner: a generator task yielded its index-th (0-based) item; the value travels as a
    task's return does (inline in the payload frames, or in the executor node's shared memory)."""

    task_id: bytes
    attempt: int  # reports of an older attempt are dropped (a retry yields the same items again)
    index: int
    value: ReturnValue
    worker_address: str  # where GeneratorConsumed goes


@message(141)
class GeneratorConsumed:
    """owner -> executor: the consumer of a streaming generator has taken `consumed` items in all."""

    task_id: bytes
    consumed: int
