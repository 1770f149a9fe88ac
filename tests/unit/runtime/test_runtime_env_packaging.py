"""runtime_env packaging and setup without processes: gitignore matching, deterministic zips, content
URIs, upload_local's skip on a hash hit, safe unpacking, and setup.prepare over a dict of packages."""

from __future__ import annotations

import io
import os
import sys
import time
import zipfile
from pathlib import Path

import pytest
from kray import exceptions
from kray.runtime_env import ignore, packaging, setup


def _excluded(patterns: list[str], path: str, is_dir: bool = False) -> bool:
    return ignore.excluded(ignore.parse(patterns), path, is_dir)


@pytest.mark.parametrize(("patterns", "path", "is_dir", "expected"), [
    (["*.log"], "a.log", False, True),
    (["*.log"], "deep/down/a.log", False, True),
    (["*.log"], "a.logx", False, False),
    (["/top.txt"], "top.txt", False, True),
    (["/top.txt"], "sub/top.txt", False, False),
    (["build/"], "build", True, True),
    (["build/"], "build", False, False),  # a trailing slash matches directories only
    (["build/"], "src/build", True, True),
    (["docs/*.md"], "docs/a.md", False, True),
    (["docs/*.md"], "docs/sub/a.md", False, False),  # * stays within one segment
    (["docs/**/*.md"], "docs/sub/deeper/a.md", False, True),
    (["docs/**/*.md"], "docs/a.md", False, True),
    (["**/cache"], "x/y/cache", True, True),
    (["logs/**"], "logs/a/b.txt", False, True),
    (["*.txt", "!keep.txt"], "keep.txt", False, False),  # the last matching rule wins
    (["!keep.txt", "*.txt"], "keep.txt", False, True),
    (["file?.py"], "file1.py", False, True),
    (["file[0-2].py"], "file3.py", False, False),
    (["file[!0-2].py"], "file3.py", False, True),
    (["# comment", "", "  "], "# comment", False, False),
    (["\\#hash"], "#hash", False, True),
])
def test_gitignore_semantics(patterns: list[str], path: str, is_dir: bool, expected: bool) -> None:
    assert _excluded(patterns, path, is_dir) is expected


def _tree(root: Path) -> Path:
    (root / "pkg" / "sub").mkdir(parents=True)
    (root / "pkg" / "__init__.py").write_text("X = 1\n")
    (root / "pkg" / "sub" / "data.bin").write_bytes(b"\x00\x01")
    (root / "pkg" / "sub" / "noise.tmp").write_text("nested .gitignore drops me\n")
    (root / "pkg" / "sub" / ".gitignore").write_text("*.tmp\n")
    (root / "venv").mkdir()
    (root / "venv" / "big").write_bytes(b"x" * 100)
    (root / ".gitignore").write_text("venv/\n")
    (root / "run.sh").write_text("#!/bin/sh\n")
    (root / "run.sh").chmod(0o755)
    (root / "notes.md").write_text("excluded by the caller\n")
    return root


def _names(data: bytes) -> list[str]:
    return zipfile.ZipFile(io.BytesIO(data)).namelist()


def test_zip_is_deterministic_and_honours_excludes_and_gitignore(tmp_path: Path) -> None:
    root = _tree(tmp_path / "project")
    first = packaging.zip_directory(str(root), ["notes.md"])
    assert _names(first) == [".gitignore", "pkg/", "pkg/__init__.py", "pkg/sub/", "pkg/sub/.gitignore",
                             "pkg/sub/data.bin", "run.sh"]
    future = time.time() + 3600
    for path in root.rglob("*"):
        os.utime(path, (future, future))  # timestamps do not enter the package
    again = packaging.zip_directory(str(root), ["notes.md"])
    assert again == first and packaging.package_uri(again) == packaging.package_uri(first)
    (root / "pkg" / "__init__.py").write_text("X = 2\n")
    assert packaging.package_uri(packaging.zip_directory(str(root), ["notes.md"])) != packaging.package_uri(first)
    with_parent = packaging.zip_directory(str(root / "pkg"), include_parent_dir=True)
    assert _names(with_parent)[0] == "pkg/__init__.py" or "pkg/__init__.py" in _names(with_parent)
    assert all(n.startswith("pkg/") for n in _names(with_parent))


def test_uri_and_kv_key() -> None:
    uri = packaging.package_uri(b"abc")
    assert uri == "gcs://_ray_pkg_a9993e364706816aba3e25717850c26c9cd0d89d.zip"
    assert packaging.kv_key(uri).endswith(uri) and packaging.kv_key(uri) != uri
    with pytest.raises(ValueError, match="not a runtime_env package URI"):
        packaging.kv_key("s3://x.zip")


def test_upload_local_skips_what_the_store_holds(tmp_path: Path) -> None:
    root = _tree(tmp_path / "project")
    module = root / "pkg"
    store: dict[str, bytes] = {}
    uploads: list[str] = []

    def upload(uri: str, data: bytes) -> None:
        uploads.append(uri)
        store[uri] = data

    env = {"working_dir": str(root), "py_modules": [str(module)], "env_vars": {"A": "1"}}
    out = packaging.upload_local(env, store.__contains__, upload)
    assert out["env_vars"] == {"A": "1"} and env["working_dir"] == str(root)  # the input is not changed
    assert out["working_dir"] in store and out["py_modules"][0] in store and len(uploads) == 2
    assert packaging.upload_local(env, store.__contains__, upload) == out
    assert len(uploads) == 2  # content-hash hits: nothing uploaded again
    assert packaging.upload_local(out, store.__contains__, upload) == out  # URIs pass through


def test_size_limit_names_the_package_and_the_way_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _tree(tmp_path / "project")
    monkeypatch.setattr(packaging, "MAX_PACKAGE_BYTES", 64)
    with pytest.raises(ValueError, match="over the limit of .* 'excludes'"):
        packaging.upload_local({"working_dir": str(root)}, lambda uri: False, lambda uri, data: None)


def test_unpack_refuses_paths_outside_the_package(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("../escape.txt", "x")
    with pytest.raises(ValueError, match="outside the package directory"):
        packaging.unpack(buf.getvalue(), str(tmp_path / "dest"))
    assert not (tmp_path / "escape.txt").exists()


def test_prepare_unpacks_into_the_cache_and_describes_the_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _tree(tmp_path / "project")
    store: dict[str, bytes] = {}
    env = packaging.upload_local(
        {"working_dir": str(root), "py_modules": [str(root / "pkg")],
         "env_vars": {"GREETING": "hi", "MYPATH": "${HOME_FOR_TEST}:/extra"}},
        store.__contains__, store.__setitem__,
    )
    monkeypatch.setenv("HOME_FOR_TEST", "/home/x")
    monkeypatch.setenv("PYTHONPATH", "/already")
    fetched: list[str] = []

    def fetch(uri: str) -> bytes | None:
        fetched.append(uri)
        return store.get(uri)

    cache = tmp_path / "cache"
    prepared = setup.prepare(env, fetch, str(cache))
    assert prepared.python == sys.executable and not setup.needs_exec(prepared)
    assert prepared.cwd is not None and prepared.cwd.startswith(str(cache))
    assert sorted(os.listdir(prepared.cwd)) == [".gitignore", "notes.md", "pkg", "run.sh"]
    assert os.access(os.path.join(prepared.cwd, "run.sh"), os.X_OK)  # permissions survive the trip
    module_dir = prepared.paths[1]
    assert os.listdir(module_dir) == ["pkg"]
    assert prepared.env["PYTHONPATH"] == os.pathsep.join([prepared.cwd, module_dir, "/already"])
    assert prepared.env["GREETING"] == "hi" and prepared.env["MYPATH"] == "/home/x:/extra"
    assert len(fetched) == 2
    assert setup.prepare(env, fetch, str(cache)) == prepared and len(fetched) == 2  # reused from the cache


def test_prepare_unwraps_a_user_zip_working_dir(tmp_path: Path) -> None:
    user_zip = tmp_path / "wd.zip"
    with zipfile.ZipFile(user_zip, "w") as zf:
        zf.writestr("myproject/main.py", "print('hi')\n")
    store: dict[str, bytes] = {}
    env = packaging.upload_local({"working_dir": str(user_zip)}, store.__contains__, store.__setitem__)
    prepared = setup.prepare(env, store.get, str(tmp_path / "cache"))
    assert prepared.cwd is not None and os.listdir(prepared.cwd) == ["main.py"]


def test_prepare_failures_are_runtime_env_setup_errors(tmp_path: Path) -> None:
    missing = {"working_dir": packaging.package_uri(b"never uploaded")}
    with pytest.raises(exceptions.RuntimeEnvSetupError, match="is not in this cluster's GCS"):
        setup.prepare(missing, lambda uri: None, str(tmp_path / "cache"))
    with pytest.raises(exceptions.RuntimeEnvSetupError, match="local paths: upload them first"):
        setup.prepare({"working_dir": str(tmp_path)}, lambda uri: None, str(tmp_path / "cache"))

    def broken(uri: str) -> bytes:
        raise ConnectionError("GCS unreachable")

    with pytest.raises(exceptions.RuntimeEnvSetupError, match="GCS unreachable"):
        setup.prepare(missing, broken, str(tmp_path / "cache"))
