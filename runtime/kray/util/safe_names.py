"""Checks for the ids and names that reach the file system from messages and HTTP requests.

An object id or a runtime_env package URI arrives from another process and becomes part of a path
(a shared-memory file, a spill file, a package's cache directory). Each is checked here against the
exact shape kray makes, so a name such as `../../etc` can never leave the directory it is meant for. Pure functions; no I/O.
"""

from __future__ import annotations

import re

from kray import ids

_OBJECT_HEX = re.compile(f"[0-9a-f]{{{2 * ids.OBJECT_ID_SIZE}}}")
# Packages are "_ray_pkg_<hash>.zip", as Ray names them.
_PACKAGE_NAME = re.compile(r"_ray_pkg_[A-Za-z0-9_-]{1,128}\.zip")


def is_object_hex(value: object) -> bool:
    """True for the hex form of an ObjectID (lower-case, 40 characters)."""
    return isinstance(value, str) and _OBJECT_HEX.fullmatch(value) is not None


def is_package_uri(value: object) -> bool:
    """True for a runtime_env package URI as kray and Ray make them: gcs://_ray_pkg_<hash>.zip."""
    return (isinstance(value, str) and value.startswith("gcs://")
            and _PACKAGE_NAME.fullmatch(value, len("gcs://")) is not None)
