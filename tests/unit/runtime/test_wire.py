"""Unit tests of the frame layout: pack/unpack are mirror images and bad input is rejected cleanly."""

from __future__ import annotations

import pickle

import pytest
from kray.protocol import messages, wire


def test_pack_unpack_round_trip_with_payload_frames() -> None:
    msg = messages.TaskDone(b"t" * 16, b"w" * 16, [messages.ReturnValue("inline", 2)], True)
    payload = [b"pickle-stream", memoryview(b"buffer")]
    frames = wire.pack(msg, payload)
    assert frames[1:] == payload, "payload frames must travel unchanged, after the header"
    decoded, got_payload = wire.unpack(frames)
    assert decoded == msg
    assert got_payload == payload


def test_every_message_type_round_trips_with_defaults() -> None:
    spec = messages.TaskSpec(b"t", 1, "f", b"id", b"args", [], 1, {"CPU": 1.0}, "tcp://1.2.3.4:5")
    decoded, _ = wire.unpack(wire.pack(messages.PushTasks(7, [spec])))
    assert decoded.specs[0] == spec
    decoded, _ = wire.unpack(wire.pack(messages.Reply(3, False, "no")))
    assert (decoded.req_id, decoded.ok, decoded.value) == (3, False, "no")


@pytest.mark.parametrize(
    "frames",
    [
        [],
        [b"not a pickle"],
        [pickle.dumps((99999, ()))],  # unknown type code
        [pickle.dumps((messages.Reply._code, (1, 2, 3, 4, 5)))],  # wrong field count
        [pickle.dumps("just a string")],
    ],
)
def test_malformed_messages_raise_malformed_message(frames: list) -> None:
    with pytest.raises(wire.MalformedMessage):
        wire.unpack(frames)


def test_message_codes_are_unique() -> None:
    with pytest.raises(ValueError, match="registered twice"):
        wire.register(messages.Reply._code, messages.Exit)


def test_host_of_endpoint() -> None:
    assert wire.host_of("tcp://10.1.2.3:6379") == "10.1.2.3"
    assert wire.tcp("h", 5) == "tcp://h:5"
