"""Ray's exception names, raised by kray's API.

Pure definitions: no I/O. `RayTaskError.as_instanceof_cause()` builds an exception that is both a
RayTaskError and an instance of the user's original exception class, as Ray does.
"""

from __future__ import annotations

from typing import Any


class RayError(Exception):
    """Base class of every error kray raises on behalf of the cluster."""


class RaySystemError(RayError):
    """The cluster itself failed (a process or connection), not the user's code."""


class RayTaskError(RayError):
    """A task or actor method raised; re-raised on `get` with the remote traceback."""

    def __init__(
        self,
        function_name: str = "",
        traceback_str: str = "",
        cause: BaseException | None = None,
        pid: int = 0,
        ip: str = "",
    ) -> None:
        self.function_name = function_name
        self.traceback_str = traceback_str
        self.cause = cause
        self.pid = pid
        self.ip = ip
        super().__init__(self._message())

    def _message(self) -> str:
        where = f"{self.function_name}() (pid={self.pid}, ip={self.ip})"
        cause_name = type(self.cause).__name__ if self.cause is not None else "Exception"
        return f"{cause_name}: ray::{where}\n{self.traceback_str.rstrip()}"

    def __str__(self) -> str:
        return self._message()

    def __reduce__(self) -> tuple[Any, ...]:
        return (RayTaskError, (self.function_name, self.traceback_str, self.cause, self.pid, self.ip))

    def as_instanceof_cause(self) -> RayTaskError:
        """Return an error that is an instance of both RayTaskError and the cause's class."""
        cause_cls = type(self.cause) if self.cause is not None else None
        if cause_cls is None or issubclass(cause_cls, RayTaskError) or not _subclassable(cause_cls):
            return self
        return _dual_error(cause_cls)(self)


_DUAL_CLASSES: dict[type, type] = {}


def _subclassable(cls: type) -> bool:
    try:
        type("_probe", (RayTaskError, cls), {})
    except TypeError:
        return False
    return True


def _dual_error(cause_cls: type) -> type:
    """A cached subclass of (RayTaskError, cause_cls) whose instances wrap one RayTaskError."""
    dual = _DUAL_CLASSES.get(cause_cls)
    if dual is not None:
        return dual

    def __init__(self: Any, task_error: RayTaskError) -> None:
        self.__dict__.update(task_error.__dict__)
        self.args = (task_error._message(),)
        if self.cause is not None:
            # Copy the cause's own attributes (errno, filename, custom fields) so handlers work.
            for key, value in getattr(self.cause, "__dict__", {}).items():
                self.__dict__.setdefault(key, value)

    def __getattr__(self: Any, name: str) -> Any:
        cause = self.__dict__.get("cause")
        if cause is None:
            raise AttributeError(name)
        return getattr(cause, name)

    def __reduce__(self: Any) -> tuple[Any, ...]:
        base = RayTaskError(self.function_name, self.traceback_str, self.cause, self.pid, self.ip)
        return (RayTaskError.as_instanceof_cause, (base,))

    name = f"RayTaskError({cause_cls.__name__})"
    dual = type(
        name,
        (RayTaskError, cause_cls),
        {
            "__init__": __init__,
            "__getattr__": __getattr__,
            "__reduce__": __reduce__,
            "__str__": RayTaskError.__str__,
            "__module__": __name__,
        },
    )
    _DUAL_CLASSES[cause_cls] = dual
    return dual


class GetTimeoutError(RayError, TimeoutError):
    """`get` did not finish within its timeout."""


class TaskCancelledError(RayError):
    """The task was cancelled with `kray.cancel`."""

    def __init__(self, task_id: str = "") -> None:
        self.task_id = task_id
        super().__init__(f"Task {task_id} was cancelled." if task_id else "This task was cancelled.")

    def __reduce__(self) -> tuple[Any, ...]:
        return (TaskCancelledError, (self.task_id,))


class WorkerCrashedError(RayError):
    """The worker running the task died before it finished (after all retries)."""


class ActorError(RayError):
    """Base for actor failures."""


RayActorError = ActorError  # Ray's name for the base of actor failures


class ActorDiedError(ActorError):
    """The actor is dead: killed, crashed past max_restarts, or its creation failed."""


class ActorUnavailableError(ActorError):
    """The actor is temporarily unreachable (for example, restarting)."""


class ObjectLostError(RayError):
    """Every copy of the object was lost and it cannot be reconstructed."""

    def __init__(self, object_ref_hex: str = "", reason: str = "") -> None:
        self.object_ref_hex = object_ref_hex
        self.reason = reason
        text = f"Object {object_ref_hex} is lost"
        super().__init__(f"{text}: {reason}" if reason else f"{text}.")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.object_ref_hex, self.reason))


class OwnerDiedError(ObjectLostError):
    """The process that owned the object (its creator) died, so the object cannot be reached."""


class ObjectFreedError(ObjectLostError):
    """The object was freed explicitly and can no longer be read."""


class ObjectStoreFullError(RayError):
    """The object store had no room and could not spill."""


class OutOfMemoryError(RayError):
    """The task was killed because its node was running out of memory."""


class RuntimeEnvSetupError(RayError):
    """The task's runtime_env could not be set up."""


class NodeDiedError(RayError):
    """The node running the task died."""


class PendingCallsLimitExceeded(RayError):
    """Too many calls are queued on an actor handle."""


class CrossLanguageError(RayError):
    """Kept for Ray compatibility; kray runs Python only."""


__all__ = [
    "ActorDiedError",
    "ActorError",
    "ActorUnavailableError",
    "CrossLanguageError",
    "GetTimeoutError",
    "NodeDiedError",
    "ObjectFreedError",
    "ObjectLostError",
    "ObjectStoreFullError",
    "OutOfMemoryError",
    "OwnerDiedError",
    "PendingCallsLimitExceeded",
    "RayActorError",
    "RayError",
    "RaySystemError",
    "RayTaskError",
    "RuntimeEnvSetupError",
    "TaskCancelledError",
    "WorkerCrashedError",
]
