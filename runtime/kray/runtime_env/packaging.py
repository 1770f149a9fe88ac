"""Packages of runtime_env working_dir and py_modules: deterministic zips of local directories
(honouring excludes and .gitignore files), their content-hash URIs, upload, and safe unpacking.

Reads local directories and zip files, writes unpacked packages under a directory the caller names;
talks to no server itself (upload_local calls the `exists`/`upload` functions it is given).
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import zipfile
from collections.abc import Callable
from typing import Any

from kray import config
from kray.runtime_env import ignore, validation
from kray.util import safe_names

# Ray's GCS_STORAGE_MAX_SIZE (its max_grpc_message_size): the largest package kept in the GCS.
MAX_PACKAGE_BYTES = config.RUNTIME_ENV_MAX_PACKAGE_BYTES
KV_PREFIX = "runtime_env_package:"
# Zips made here carry this comment: they hold a directory's content at their root, while a
# user's own .zip of a working_dir may wrap it in one top-level directory (unwrapped on unpack).
KRAY_ZIP_COMMENT = b"kray-runtime-env-package"
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)


def kv_key(uri: str) -> str:
    """The GCS key-value key that holds the bytes of the package `uri`."""
    if not is_package_uri(uri):
        raise ValueError(f"{uri!r} is not a runtime_env package URI ({validation.URI_PREFIX}<hash>.zip).")
    return KV_PREFIX + uri


def is_package_uri(value: str) -> bool:
    return safe_names.is_package_uri(value)


def package_uri(data: bytes) -> str:
    """The content-addressed URI of a package: equal bytes, equal URI."""
    return f"{validation.URI_PREFIX}{hashlib.sha1(data, usedforsecurity=False).hexdigest()}.zip"


def zip_directory(path: str, excludes: list[str] | None = None, include_parent_dir: bool = False) -> bytes:
    """A deterministic zip of directory `path`: entries sorted, timestamps fixed, permissions kept.

    `excludes` (gitignore syntax, relative to `path`) and every `.gitignore` below `path` decide what
    is left out. With include_parent_dir, entries sit under the directory's own name (py_modules).
    """
    root = os.path.abspath(path)
    prefix = os.path.basename(root.rstrip(os.sep)) + "/" if include_parent_dir else ""
    rules = ignore.parse(list(excludes or []))
    entries: list[tuple[str, str, bool]] = []  # (archive name, file path, is_dir)
    _walk(root, "", rules, entries)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for rel, full, is_dir in sorted(entries):
            name = prefix + rel + ("/" if is_dir else "")
            info = zipfile.ZipInfo(name, date_time=_FIXED_TIME)
            mode = os.stat(full).st_mode
            info.external_attr = ((stat.S_IFDIR if is_dir else stat.S_IFREG) | (mode & 0o777)) << 16
            if is_dir:
                zf.writestr(info, b"")
            else:
                info.compress_type = zipfile.ZIP_DEFLATED
                with open(full, "rb") as f:
                    zf.writestr(info, f.read())
        zf.comment = KRAY_ZIP_COMMENT
    return buf.getvalue()


def _walk(root: str, rel_dir: str, rules: list[ignore.Rule], out: list[tuple[str, str, bool]]) -> None:
    here = os.path.join(root, rel_dir) if rel_dir else root
    if not config.RUNTIME_ENV_IGNORE_GITIGNORE:
        gitignore = os.path.join(here, ".gitignore")
        if os.path.isfile(gitignore):
            with open(gitignore, encoding="utf-8", errors="replace") as f:
                rules = rules + ignore.parse(f.read().splitlines(), rel_dir)
    with os.scandir(here) as it:
        children = sorted(it, key=lambda e: e.name)
    for entry in children:
        rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
        is_dir = entry.is_dir(follow_symlinks=False)
        if ignore.excluded(rules, rel, is_dir):
            continue
        if is_dir:
            out.append((rel, entry.path, True))
            _walk(root, rel, rules, out)
        elif entry.is_file():  # regular files and links to them; sockets, fifos, dangling links are left out
            out.append((rel, entry.path, False))


def package_local(path: str, excludes: list[str] | None, include_parent_dir: bool) -> bytes:
    """The bytes to upload for a local directory or .zip file, checked against the size limit."""
    if os.path.isdir(path):
        data = zip_directory(path, excludes, include_parent_dir)
    else:
        with open(path, "rb") as f:
            data = f.read()
        try:
            zipfile.ZipFile(io.BytesIO(data)).testzip()
        except zipfile.BadZipFile:
            raise ValueError(f"runtime_env package {path!r} is not a valid .zip file.") from None
    if len(data) > MAX_PACKAGE_BYTES:
        raise ValueError(
            f"runtime_env package {path!r} is {len(data) / 2**20:.2f} MiB, over the limit of "
            f"{MAX_PACKAGE_BYTES / 2**20:.2f} MiB. Leave large files out with the 'excludes' option (or a "
            ".gitignore), or raise KRAY_RUNTIME_ENV_MAX_PACKAGE_BYTES."
        )
    return data


def upload_local(
    runtime_env: dict[str, Any], exists: Callable[[str], bool], upload: Callable[[str, bytes], None],
) -> dict[str, Any]:
    """A copy of `runtime_env` whose local working_dir and py_modules are replaced by gcs:// URIs.

    Each package is uploaded with upload(uri, data) unless exists(uri) says the cluster already
    holds those bytes (the URI is a hash of the content).
    """
    env = validation.validate(runtime_env)
    excludes = env.get("excludes")

    def ship(path: str, parent_dir: bool) -> str:
        if "://" in path:
            return path
        data = package_local(path, excludes, parent_dir)
        uri = package_uri(data)
        if not exists(uri):
            upload(uri, data)
        return uri

    if "working_dir" in env:
        env["working_dir"] = ship(env["working_dir"], False)
    if "py_modules" in env:
        env["py_modules"] = [ship(p, True) for p in env["py_modules"]]
    return env


def unpack(data: bytes, dest: str) -> None:
    """Extract a package into `dest` (which must not exist yet), refusing paths that leave it."""
    os.makedirs(dest)
    real_dest = os.path.realpath(dest)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        for info in zf.infolist():
            name = info.filename
            target = os.path.realpath(os.path.join(dest, name))
            if os.path.isabs(name) or not (target == real_dest or target.startswith(real_dest + os.sep)):
                raise ValueError(f"package entry {name!r} would land outside the package directory")
            if info.is_dir():
                os.makedirs(target, exist_ok=True)
                continue
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with zf.open(info) as src, open(target, "wb") as out:
                while chunk := src.read(1 << 20):
                    out.write(chunk)
            mode = (info.external_attr >> 16) & 0o777
            if mode:
                os.chmod(target, mode)


def made_by_kray(data: bytes) -> bool:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return zf.comment == KRAY_ZIP_COMMENT


def single_top_dir(path: str) -> str:
    """The one directory a user's zip wraps its content in, or `path` itself when there is not one."""
    names = [n for n in os.listdir(path) if n != "__MACOSX"]
    if len(names) == 1 and os.path.isdir(os.path.join(path, names[0])):
        return os.path.join(path, names[0])
    return path
