"""Unit tests of messages whose header names a class the receiver cannot import (issue 15, defect 11):
unpack still recovers the message's outline, so the receiver can fail what it carries."""

from __future__ import annotations

import sys
import types

import pytest
from kray import serialization
from kray.protocol import messages, wire


def _spec_with(retry_exceptions: object) -> messages.TaskSpec:
    return messages.TaskSpec(b"t" * 16, 1, "add", b"id", b"args", [], 1, {"CPU": 1.0}, "tcp://1.2.3.4:5",
                             0, retry_exceptions)


def test_a_header_naming_a_missing_class_is_undecodable_not_merely_malformed(monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("kray_gone_module")
    gone_error = type("GoneError", (Exception,), {"__module__": "kray_gone_module"})
    module.GoneError = gone_error  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "kray_gone_module", module)
    frames = wire.pack(messages.PushTasks(3, [_spec_with([gone_error])]))
    monkeypatch.delitem(sys.modules, "kray_gone_module")  # the receiver cannot import it
    with pytest.raises(wire.UndecodableMessage) as caught:
        wire.unpack(frames)
    error = caught.value
    assert isinstance(error, wire.MalformedMessage)
    assert error.missing == ["kray_gone_module.GoneError"]
    assert isinstance(error.msg, messages.PushTasks)
    spec = error.msg.specs[0]
    assert (spec.task_id, spec.name, spec.owner) == (b"t" * 16, "add", "tcp://1.2.3.4:5")
    assert spec.retry_exceptions == [wire.MissingClass]


def test_garbage_headers_stay_plain_malformed_messages() -> None:
    with pytest.raises(wire.MalformedMessage) as caught:
        wire.unpack([b"not a pickle"])
    assert not isinstance(caught.value, wire.UndecodableMessage)


def test_options_pickled_by_value_decode_without_the_class_module(monkeypatch: pytest.MonkeyPatch) -> None:
    main_error = type("MainError", (Exception,), {"__module__": "__main__"})
    monkeypatch.setattr(sys.modules["__main__"], "MainError", main_error, raising=False)
    blob = serialization.dumps_by_value((main_error,), "retry_exceptions")
    monkeypatch.delattr(sys.modules["__main__"], "MainError")
    frames = wire.pack(messages.PushTasks(3, [_spec_with(blob)]))
    decoded, _ = wire.unpack(frames)
    (loaded,) = serialization.loads_by_value(decoded.specs[0].retry_exceptions)
    assert loaded.__name__ == "MainError" and issubclass(loaded, Exception)
