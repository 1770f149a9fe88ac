"""A pod's volumes as files on the host and the mounts that put them at each container's mountPaths.

Writes volume contents under the pod's own directory and creates missing mount-point directories on
the host (recorded in `MountPoints`, removed at teardown). The mounts themselves happen in the
container's private mount namespace (container.py), never in the host's. A memory-backed emptyDir
is a tmpfs of its sizeLimit per container (so a pod's containers do not share it).
"""

from __future__ import annotations

import dataclasses
import logging
import shlex
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import podspec

log = logging.getLogger(__name__)
TokenSource = Callable[[Any, Any], str | None]


@dataclasses.dataclass(frozen=True)
class Volume:
    """A materialized volume: a host directory to bind, or a tmpfs (memory emptyDir) of a size."""

    name: str
    host_path: Path | None = None
    tmpfs_bytes: int | None = None


@dataclasses.dataclass(frozen=True)
class Mount:
    """One mount in a container: a bind of `source`, or a fresh tmpfs when `tmpfs_bytes` is set."""

    target: str
    source: Path | None
    tmpfs_bytes: int | None
    read_only: bool


class MountPoints:
    """Mount-point directories this runner had to create on the host; removed (if empty) at teardown."""

    def __init__(self, on_create: Callable[[Path], None] | None = None) -> None:
        self._created: list[Path] = []
        self._lock = threading.Lock()
        self._on_create = on_create

    def ensure(self, target: str, is_file: bool) -> None:
        """Makes `target` exist so that a bind mount can cover it; records what it created."""
        path = Path(target)
        with self._lock:
            missing: list[Path] = []
            probe = path.parent if is_file else path
            while not probe.exists():
                missing.append(probe)
                probe = probe.parent
            for d in reversed(missing):
                self._record(d)
                d.mkdir()
            if is_file and not path.exists():
                self._record(path)
                path.touch()

    def _record(self, path: Path) -> None:
        self._created.append(path)
        if self._on_create is not None:
            self._on_create(path)  # the registry, so a later run can remove it if this one is killed

    def remove_all(self) -> None:
        """Removes what `ensure` created, deepest first, leaving anything something else put there."""
        with self._lock:
            for p in reversed(self._created):
                try:
                    p.rmdir() if p.is_dir() and not p.is_symlink() else p.unlink()
                except OSError as e:
                    log.warning("pod runner: cannot remove mount point %s: %s", p, e)
            self._created.clear()


def _write_items(d: Path, data: dict[str, bytes], items: Any, mode: int | None) -> None:
    """Writes keys (or the selected items, with their paths and modes) as files under d."""
    selected = [(i.key, i.path, i.mode) for i in items] if items else [(k, k, None) for k in data]
    for key, rel, item_mode in selected:
        if key not in data:
            continue
        f = d / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(data[key])
        f.chmod(item_mode if item_mode is not None else (mode if mode is not None else 0o644))


def _bytes_of(data: dict[str, str] | None) -> dict[str, bytes]:
    return {k: v.encode() for k, v in (data or {}).items()}


def _projected(pod: Any, d: Path, sources: Any, mode: int | None, lookups: podspec.Lookups,
               facts: podspec.PodFacts, token: TokenSource) -> None:
    ns = pod.metadata.namespace
    for src in sources or []:
        if src.secret is not None:
            data = lookups.secret(ns, src.secret.name)
            _write_items(d, dict(data or {}), src.secret.items, mode)
        elif src.config_map is not None:
            _write_items(d, _bytes_of(dict(lookups.config_map(ns, src.config_map.name) or {})),
                         src.config_map.items, mode)
        elif src.downward_api is not None:
            _write_downward(pod, d, src.downward_api.items, mode, facts)
        elif src.service_account_token is not None:
            value = token(pod, src.service_account_token)
            if value is not None:
                _write_items(d, {"token": value.encode()},
                             [_Item("token", src.service_account_token.path, 0o600)], mode)


@dataclasses.dataclass(frozen=True)
class _Item:
    key: str
    path: str
    mode: int | None


def _write_downward(pod: Any, d: Path, items: Any, mode: int | None, facts: podspec.PodFacts) -> None:
    for item in items or []:
        if item.field_ref is not None:
            value = podspec.field_value(pod, item.field_ref.field_path, facts)
            _write_items(d, {item.path: value.encode()}, None, item.mode if item.mode is not None else mode)


def materialize(pod: Any, pod_dir: Path, lookups: podspec.Lookups, facts: podspec.PodFacts,
                token: TokenSource) -> dict[str, Volume]:
    """Writes secret, configMap, projected, downwardAPI and emptyDir volumes under pod_dir/volumes.

    Raises podspec.ConfigError when a non-optional Secret or ConfigMap does not exist yet.
    """
    ns = pod.metadata.namespace
    out: dict[str, Volume] = {}
    for vol in pod.spec.volumes or []:
        d = pod_dir / "volumes" / vol.name
        d.mkdir(parents=True, exist_ok=True)
        if vol.secret is not None:
            data = lookups.secret(ns, vol.secret.secret_name)
            if data is None and not vol.secret.optional:
                raise podspec.ConfigError(f"secret {vol.secret.secret_name!r} not found (volume {vol.name})")
            _write_items(d, dict(data or {}), vol.secret.items, vol.secret.default_mode)
        elif vol.config_map is not None:
            cm = lookups.config_map(ns, vol.config_map.name)
            if cm is None and not vol.config_map.optional:
                raise podspec.ConfigError(f"configmap {vol.config_map.name!r} not found (volume {vol.name})")
            _write_items(d, _bytes_of(dict(cm or {})), vol.config_map.items, vol.config_map.default_mode)
        elif vol.projected is not None:
            _projected(pod, d, vol.projected.sources, vol.projected.default_mode, lookups, facts, token)
        elif vol.downward_api is not None:
            _write_downward(pod, d, vol.downward_api.items, vol.downward_api.default_mode, facts)
        elif vol.empty_dir is not None and vol.empty_dir.medium == "Memory":
            limit = vol.empty_dir.size_limit
            size = int(podspec.parse_quantity(limit)) if limit else facts.node_memory // 2
            out[vol.name] = Volume(vol.name, tmpfs_bytes=size)
            continue
        elif vol.host_path is not None:
            out[vol.name] = Volume(vol.name, host_path=Path(vol.host_path.path))
            continue
        elif vol.empty_dir is None:
            log.warning("pod runner: volume %s of %s/%s has an unsupported type; it is an empty dir",
                        vol.name, ns, pod.metadata.name)
        out[vol.name] = Volume(vol.name, host_path=d)
    return out


def container_mounts(container: Any, volumes: dict[str, Volume], points: MountPoints) -> list[Mount]:
    """The mounts a container needs, with their host mount points made to exist."""
    mounts: list[Mount] = []
    for vm in container.volume_mounts or []:
        vol = volumes.get(vm.name)
        if vol is None:
            raise podspec.ConfigError(f"volumeMount {vm.name!r} names no volume of the pod")
        if vol.tmpfs_bytes is not None:
            points.ensure(vm.mount_path, is_file=False)
            mounts.append(Mount(vm.mount_path, None, vol.tmpfs_bytes, bool(vm.read_only)))
            continue
        if vol.host_path is None:
            raise podspec.ConfigError(f"volume {vm.name!r} has nothing to mount")
        source = vol.host_path / vm.sub_path if vm.sub_path else vol.host_path
        if vm.sub_path and not source.exists():
            source.mkdir(parents=True)
        points.ensure(vm.mount_path, is_file=source.is_file())
        mounts.append(Mount(vm.mount_path, source, None, bool(vm.read_only)))
    return mounts


def mount_script(mounts: list[Mount], mount_bin: str) -> list[str]:
    """Shell lines that perform the mounts inside the container's private mount namespace."""
    lines: list[str] = []
    m = shlex.quote(mount_bin)
    for mt in mounts:
        target = shlex.quote(mt.target)
        if mt.tmpfs_bytes is not None:
            lines.append(f"{m} -t tmpfs -o size={mt.tmpfs_bytes},mode=1777 kray-tmpfs {target}")
        else:
            lines.append(f"{m} --bind {shlex.quote(str(mt.source))} {target}")
        if mt.read_only:
            lines.append(f"{m} -o remount,bind,ro {target}")
    return lines

