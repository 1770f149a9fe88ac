"""Checks on what arrives from other processes: mis-typed message fields, and ids and names that would
leave their directory once they become paths."""

from __future__ import annotations

import pytest
from kray.protocol import field_check, messages
from kray.runtime_env import validation
from kray.util import safe_names


def test_a_well_typed_message_has_no_mismatch() -> None:
    assert field_check.mismatch(messages.ReadObject(1, "ab" * 20, 0, 4096)) is None
    assert field_check.mismatch(messages.DeleteObjects(["ab" * 20])) is None
    assert field_check.mismatch(messages.KvPut(1, "key", b"value")) is None


@pytest.mark.parametrize(("msg", "named"), [
    (messages.ReadObject(1, 5, 0, 10), "field 'object_hex' is int 5, expected str"),  # type: ignore[arg-type]
    (messages.DeleteObjects("abc"), "field 'object_hexes' is str 'abc', expected list[str]"),  # type: ignore[arg-type]
    (messages.DeleteObjects(["ab", 3]), "field 'object_hexes' is list ['ab', 3], expected list[str]"),  # type: ignore[list-item]
    (messages.ReadObject(True, "ab", 0, 10), "field 'req_id' is bool True, expected int"),
    (messages.KvPut(1, "k", "text"), "field 'value' is str 'text', expected bytes"),  # type: ignore[arg-type]
])
def test_a_mistyped_field_is_named(msg: object, named: str) -> None:
    assert field_check.mismatch(msg) == named


@pytest.mark.parametrize("value", ["", "../" * 10, "AB" * 20, "ab" * 19 + "a/", "ab" * 21, None, 7])
def test_only_real_object_ids_may_become_store_paths(value: object) -> None:
    assert not safe_names.is_object_hex(value)


@pytest.mark.parametrize("uri", [
    "gcs://_ray_pkg_/../../escape.zip", "gcs://_ray_pkg_../x.zip", "gcs://_ray_pkg_.zip", "gcs://_ray_pkg_a.b.zip",
    "s3://_ray_pkg_abc.zip", "gcs:///_ray_pkg_abc.zip",
])
def test_package_uris_that_name_another_directory_are_refused(uri: str) -> None:
    assert not safe_names.is_package_uri(uri)
    with pytest.raises(validation.RuntimeEnvFieldError):
        validation.validate({"working_dir": uri})


def test_the_package_uris_kray_makes_are_accepted() -> None:
    uri = "gcs://_ray_pkg_" + "0f" * 20 + ".zip"
    assert safe_names.is_package_uri(uri)
    assert validation.validate({"working_dir": uri})["working_dir"] == uri
