"""Unit tests of Ray's error semantics: RayTaskError is also an instance of the user's class."""

from __future__ import annotations

import pickle

from kray import exceptions


class CustomError(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(f"code {code}")
        self.code = code


def test_task_error_is_instance_of_cause_and_keeps_traceback() -> None:
    error = exceptions.RayTaskError("f", "Traceback...\nCustomError: code 7", CustomError(7), 123, "10.0.0.1")
    dual = error.as_instanceof_cause()
    assert isinstance(dual, CustomError) and isinstance(dual, exceptions.RayTaskError)
    assert dual.code == 7
    assert "Traceback" in str(dual) and "pid=123" in str(dual)


def test_task_error_pickles() -> None:
    error = exceptions.RayTaskError("f", "tb", ValueError("bad"), 1, "ip")
    again = pickle.loads(pickle.dumps(error))
    assert isinstance(again.cause, ValueError)
    dual = pickle.loads(pickle.dumps(error.as_instanceof_cause()))
    assert isinstance(dual, ValueError)


def test_get_timeout_error_is_a_timeout_error() -> None:
    assert issubclass(exceptions.GetTimeoutError, TimeoutError)
    assert issubclass(exceptions.OwnerDiedError, exceptions.ObjectLostError)
