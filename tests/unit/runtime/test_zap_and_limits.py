"""kray's ZAP handler (protocol/zap.py) answers PLAIN handshakes by the cluster token alone, and a zmq
context's socket cap follows the open-files limit (protocol/limits.py). Pure functions; no sockets."""

from __future__ import annotations

from kray.protocol import limits, zap

USER, TOKEN = b"kray", b"s3cret-token"


def _request(mechanism: bytes = b"PLAIN", *credentials: bytes) -> list[bytes]:
    return [b"1.0", b"req-7", b"", b"127.0.0.1", b"", mechanism, *credentials]


def test_the_right_user_and_token_are_accepted() -> None:
    assert zap.answer(_request(b"PLAIN", USER, TOKEN), USER, TOKEN) == [b"1.0", b"req-7", b"200", b"OK", USER, b""]


def test_a_wrong_token_user_mechanism_or_frame_count_is_refused() -> None:
    for request in (_request(b"PLAIN", USER, b"s3cret-tokeN"), _request(b"PLAIN", USER, b""),
                    _request(b"PLAIN", b"ray", TOKEN), _request(b"NULL"), _request(b"CURVE", USER, TOKEN),
                    _request(b"PLAIN", USER), _request(b"PLAIN", USER, TOKEN, b"extra")):
        reply = zap.answer(request, USER, TOKEN)
        assert reply[:3] == [b"1.0", b"req-7", b"400"] and reply[4] == b"", request


def test_a_malformed_request_gets_a_400_it_can_route() -> None:
    assert zap.answer([b"1.0", b"req-7"], USER, TOKEN)[:3] == [b"1.0", b"req-7", b"400"]
    assert zap.answer([b"2.0", b"req-7", b"", b"", b"", b"PLAIN", USER, TOKEN], USER, TOKEN)[2] == b"400"
    assert zap.answer([], USER, TOKEN)[2] == b"400"


def test_same_compares_whole_values() -> None:
    assert zap.same(b"abc", b"abc") and not zap.same(b"abc", b"abd") and not zap.same(b"abc", b"ab")


def test_the_socket_cap_follows_the_open_files_limit() -> None:
    assert limits.max_sockets(1024, 65535) == limits.ZMQ_DEFAULT_MAX_SOCKETS  # never below zmq's default
    assert limits.max_sockets(20000, 65535) == (20000 - limits.RESERVED_FDS) // limits.FDS_PER_SOCKET
    assert limits.max_sockets(1 << 20, 65535) == 65535  # never above what libzmq allows
