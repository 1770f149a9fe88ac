"""The core worker: what every driver and worker process runs to own, share and read objects.

Starts an I/O thread (a protocol.loop.Loop) that owns all of this process's sockets; the user's
threads call put/get/wait/submit, which touch the object table under its lock and hand network
work to the I/O thread. Reads and writes object files in the node's shared-memory directory.
"""

from __future__ import annotations

import errno
import functools
import itertools
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import zmq

from kray import config, exceptions, ids, serialization
from kray.core import (
    blocked_get,
    borrower_watch,
    fetch,
    generators,
    node_watch,
    object_table,
    owner_watch,
    reference_table,
    refs,
    submitter,
    task_events,
)
from kray.object_store import shm
from kray.protocol import borrower_messages, limits, messages, wire
from kray.protocol import loop as loop_mod

log = logging.getLogger(__name__)

# Released refs and freed objects are sent in batches gathered over this long.
FLUSH_DELAY_S = 0.05


class CoreWorker:
    def __init__(
        self, *, node: messages.NodeInfo, gcs_address: str, job_id: int, worker_id: bytes,
        is_driver: bool, namespace: str = "",
    ) -> None:
        self.node = node
        self.node_id = node.node_id
        self.gcs_address = gcs_address
        self.raylet_address = node.raylet_address
        self.job_id = job_id
        self.worker_id = worker_id
        self.is_driver = is_driver
        self.namespace = namespace
        self.ctx = limits.context()  # thousands of peers: one socket per actor
        self.loop = loop_mod.Loop(self.ctx, name="driver" if is_driver else "worker")
        self.router = wire.make_socket(self.ctx, zmq.ROUTER)
        self.address = wire.bind_random(self.router, node.ip)
        self.loop.serve(self.router)
        self.objects = object_table.ObjectTable(self.address)
        self.released = self.objects.released  # ObjectRef.__del__ appends here
        self.task_ids = ids.TaskIdFactory()
        self.current_task_id = self.task_ids.next()
        self.current_task_name = ""
        self.assigned_resources: dict[str, float] = {}
        self.captured_group = ""  # hex id of the placement group this task's children go into by default
        self.gpu_ids: list[int] = []
        self.actor_id = b""
        # The runtime_env (canonical JSON, packages uploaded) this process's tasks run in by default:
        # the job's for a driver, its own for a worker; "" for none.
        self.runtime_env = ""
        self.escaped_actors: set[bytes] = set()  # actors whose handles were sent to other processes
        self._put_index = itertools.count(1)
        self.nodes: dict[bytes, messages.NodeInfo] = {node.node_id: node}
        self.node_watch = node_watch.NodeWatch(self)
        self.owner_watch = owner_watch.OwnerWatch(self)
        self.borrower_watch = borrower_watch.BorrowerWatch(self)  # a dead borrower's borrows are released
        self.task_events = task_events.TaskEventRecorder(self)  # before the submitter, which records into it
        self.submitter = submitter.Submitter(self)
        self.generators = generators.StreamTable(self)  # items of generator tasks it owns
        self.fetcher = fetch.LocalFetcher(self)
        self.executor: Any = None  # set in worker processes
        self.loop.on(messages.GetObject, self._on_get_object)
        self.call_sites: dict[bytes, str] | None = None  # where refs were made, when recorded (kray memory)
        reference_table.install(self)  # `kray memory` asks every process what it holds
        self.loop.on(messages.AddObjectLocation, lambda m, p, peer: self.objects.add_copy(m.object_id, m.node_id))
        # Flushes run when there is something to flush (a dropped ref, a freed object), batched over
        # FLUSH_DELAY_S: an idle process never wakes on a timer.
        self._flush_due = False
        self.objects.wake = self.wake_flush
        self._thread = threading.Thread(target=self._run_loop, name="kray-io", daemon=True)
        self._closed = False

    def start(self) -> None:
        self._thread.start()
        if self.gcs_address:
            self.subscribe_nodes()

    def subscribe_nodes(self) -> None:
        """Hear about dead nodes (tasks and objects there are retried or lost)."""
        self.send(self.gcs_address, messages.SubscribeNodes(self.worker_id))
        self.owner_watch.announce()

    def _run_loop(self) -> None:
        try:
            self.loop.run()
        finally:
            self.loop.close()
            self.ctx.term()

    # ------------------------------------------------------------ calls into the I/O thread

    def call(self, endpoint: str, make: Callable[[int], Any], timeout: float = config.REQUEST_TIMEOUT_S) -> Any:
        """Send a request from a user thread and wait for its reply value; raises on error."""
        return self.call_with_payload(endpoint, make, timeout)[0]

    def call_with_payload(
        self, endpoint: str, make: Callable[[int], Any], timeout: float = config.REQUEST_TIMEOUT_S
    ) -> tuple[Any, list]:
        """Like `call`, and also return the reply's payload frames."""
        done = threading.Event()
        box: list[Any] = []

        def on_reply(msg: Any, payload: list) -> None:
            box.append(msg)
            box.append(payload)
            done.set()

        self.loop.call_soon_threadsafe(self.loop.request, endpoint, make, on_reply, timeout)
        if not done.wait(timeout + 1.0):
            raise exceptions.RaySystemError(f"no reply from {endpoint} within {timeout:.0f}s")
        reply = box[0]
        if isinstance(reply, messages.Reply) and not reply.ok:
            raise exceptions.RaySystemError(f"request to {endpoint} failed: {reply.value}")
        return (reply.value if isinstance(reply, messages.Reply) else reply), box[1]

    def send(self, endpoint: str, msg: Any) -> None:
        self.loop.call_soon_threadsafe(lambda: self.loop.connect(endpoint).send(msg))

    def wake_flush(self) -> None:
        """Any thread (ObjectRef.__del__ included): make sure a flush runs within FLUSH_DELAY_S."""
        if not self._flush_due and not self._closed:
            self._flush_due = True
            self.loop.call_soon_threadsafe(self.loop.call_later, FLUSH_DELAY_S, self._due_flush)

    def _due_flush(self) -> None:
        self._flush_due = False
        self.flush()

    def flush(self) -> None:
        """I/O thread: apply released refs, send borrower updates and shared-memory frees."""
        self.objects.process_released()
        adds, removes, freed = self.objects.take_outbox()
        for kind, items in ((borrower_messages.BorrowsAdded, adds), (borrower_messages.BorrowsRemoved, removes)):
            by_owner: dict[tuple[str, str], list[bytes]] = {}
            for owner, oid, borrower in items:
                by_owner.setdefault((owner, borrower), []).append(oid)
            for (owner, borrower), oids in by_owner.items():
                self.loop.connect(owner).send(kind(borrower, oids))
        by_node: dict[bytes, list[str]] = {}
        for node_id, hex_id in freed:
            by_node.setdefault(node_id, []).append(hex_id)
        for node_id, hexes in by_node.items():
            self._send_to_node(node_id, messages.DeleteObjects(hexes))

    def delete_shm(self, node_id: bytes, hex_id: str) -> None:
        self._send_to_node(node_id, messages.DeleteObjects([hex_id]))

    def _send_to_node(self, node_id: bytes, msg: Any) -> None:
        node = self.nodes.get(node_id)
        if node is not None:
            self.loop.connect(node.raylet_address).send(msg)
            return

        def on_nodes(reply: Any, payload: list) -> None:
            if isinstance(reply, messages.Reply) and reply.ok:
                for info in reply.value:
                    self.nodes.setdefault(info.node_id, info)
            known = self.nodes.get(node_id)
            if known is not None:
                self.loop.connect(known.raylet_address).send(msg)

        self.loop.request(self.gcs_address, lambda rid: messages.GetNodes(rid), on_nodes)

    def learn_node(self, node_id: bytes, raylet_address: str) -> None:
        """Remember a node first heard of in a spillback (the full record comes from the GCS later)."""
        if node_id not in self.nodes:
            self.nodes[node_id] = messages.NodeInfo(node_id, wire.host_of(raylet_address), raylet_address, "", {}, "", "", False)

    # ------------------------------------------------------------ references

    def add_local_ref(self, object_id: bytes, owner: str, precounted: bool = False) -> None:
        if self.objects.add_local_ref(object_id, owner, precounted):
            self.loop.call_soon_threadsafe(self.flush)

    # ------------------------------------------------------------ put

    def put(self, value: Any) -> refs.ObjectRef:
        frames, contained = serialization.serialize(value, "object passed to put()")
        return self.put_frames(frames, contained)

    def put_frames(self, frames: list[Any], contained: list[Any]) -> refs.ObjectRef:
        oid = ids.put_object_id(self.current_task_id, next(self._put_index))
        self.objects.new_owned(oid)
        size = sum(len(f) if isinstance(f, bytes) else memoryview(f).nbytes for f in frames)
        if size <= config.INLINE_THRESHOLD:
            self.objects.set_value(oid, object_table.INLINE, frames, contained=contained)
        else:
            written = self.write_shm(oid.hex(), frames)
            self.objects.set_value(oid, object_table.SHM, None, self.node_id, written, contained)
        return refs.ObjectRef(oid, self.address)

    def write_shm(self, hex_id: str, frames: Sequence[Any]) -> int:
        """Write an object file into this node's store and report it sealed; returns its size."""
        path = os.path.join(self.node.shm_dir, hex_id)
        try:
            size = shm.write_object(path, frames)
        except OSError as e:
            if e.errno != errno.ENOSPC:
                raise
            needed = shm.encoded_size(frames)
            self.call(self.raylet_address, lambda rid: messages.MakeRoom(rid, needed))
            try:
                size = shm.write_object(path, frames)
            except OSError as e2:
                if e2.errno != errno.ENOSPC:
                    raise
                # Shared memory is still full: the object goes straight to the spill directory.
                size = shm.write_object(os.path.join(self.node.spill_dir, hex_id), frames)
                return size
        self.send(self.raylet_address, messages.ObjectSealed(hex_id, size, job_id=self.job_id))
        return size

    # ------------------------------------------------------------ get and wait

    def get_objects(self, object_refs: Sequence[refs.ObjectRef], timeout: float | None) -> list[Any]:
        self.objects.process_released()
        entries = self.objects.entries
        missing = [r for r in object_refs if (e := entries.get(r._id)) is None or e.state != object_table.READY]
        if missing:
            self._wait_ready(missing, len(missing), timeout, raise_timeout=True)
        return [self._materialize(r) for r in object_refs]

    def wait(
        self, object_refs: Sequence[refs.ObjectRef], num_returns: int, timeout: float | None,
        fetch_local: bool = True,
    ) -> tuple[list[refs.ObjectRef], list[refs.ObjectRef]]:
        deadline = None if timeout is None else time.monotonic() + timeout
        self.objects.process_released()
        entries = self.objects.entries
        missing = [r for r in object_refs if (e := entries.get(r._id)) is None or e.state != object_table.READY]
        if len(object_refs) - len(missing) < num_returns:
            self._wait_ready(missing, num_returns - (len(object_refs) - len(missing)), timeout, raise_timeout=False)
        ready: list[refs.ObjectRef] = []
        not_ready: list[refs.ObjectRef] = []
        for r in object_refs:
            e = entries.get(r._id)
            (ready if len(ready) < num_returns and (e is None or e.state == object_table.READY)
             else not_ready).append(r)
        if fetch_local:
            late = self._fetch_ready_locally(ready, deadline)
            if late:
                # As in Ray, an object that is not on this node by the deadline is not ready yet.
                waiting = late | {r._id for r in not_ready}
                ready = [r for r in ready if r._id not in late]
                not_ready = [r for r in object_refs if r._id in waiting]
        return ready, not_ready

    def _fetch_ready_locally(self, ready: list[refs.ObjectRef], deadline: float | None) -> set[bytes]:
        """Copy ready objects that live on other nodes to this node (wait's fetch_local=True), in
        parallel; returns the ids of those not here by the deadline (their fetch goes on).

        A fetch that fails is left for `get` to report: the object counts as ready.
        """
        pulls = []
        for ref in ready:
            entry = self.objects.get(ref._id)
            if entry is None or entry.kind != object_table.SHM or entry.node_id in (b"", self.node_id):
                continue
            hex_id = ref.hex()
            if any(os.path.exists(p) for p in shm.object_paths(self.node.shm_dir, self.node.spill_dir, hex_id)):
                continue
            pulls.append((ref._id, self.fetcher.ensure_local(entry.node_id, hex_id, entry.owner)))
        late: set[bytes] = set()
        for object_id, done in pulls:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not done.wait(left):
                late.add(object_id)
        return late

    def _wait_ready(self, missing: list[refs.ObjectRef], needed: int, timeout: float | None, raise_timeout: bool) -> None:
        waiter = object_table.Waiter(needed)
        ready, registered, to_fetch = self.objects.add_waiter_many([ref._id for ref in missing], waiter)
        for _ in range(ready):
            waiter.notify(b"")
        if to_fetch:
            self.loop.call_soon_threadsafe(self._fetch_from_owners, to_fetch)
        ok = waiter.is_set()
        if not ok:
            executor = self.executor
            blocked = executor is not None and executor.block_begin()
            try:
                ok = blocked_get.wait(self, waiter, missing, timeout, "get" if raise_timeout else "wait")
            finally:
                if blocked:
                    executor.block_end()
        if registered and (not ok or len(registered) > needed):
            self.objects.remove_waiter_many(registered, waiter)  # or they pile up on objects still pending
        if not ok and raise_timeout:
            raise exceptions.GetTimeoutError(
                f"Get timed out: {len(missing)} object(s) not ready after {timeout}s, "
                f"e.g. {missing[0]!r}."
            )

    def _materialize(self, ref: refs.ObjectRef) -> Any:
        entry = self.objects.get(ref._id)
        if entry is None:
            raise exceptions.ObjectFreedError(ref.hex(), "it was freed")
        kind = entry.kind
        if kind == object_table.INLINE:
            return serialization.deserialize(entry.frames)  # type: ignore[arg-type]
        if kind == object_table.SHM:
            frames = entry.mapped
            if frames is None:
                frames = entry.mapped = self.map_shm(entry.node_id, ref.hex(), entry.owner)
            return serialization.deserialize(frames)
        error = serialization.deserialize(entry.frames)  # type: ignore[arg-type]
        if isinstance(error, exceptions.RayTaskError):
            raise error.as_instanceof_cause()
        raise error

    def map_shm(self, node_id: bytes, hex_id: str, owner: str = "") -> list[Any]:
        """Map an object file zero-copy, first fetching a copy to this node if it lives elsewhere."""
        local = shm.object_paths(self.node.shm_dir, self.node.spill_dir, hex_id)
        try:
            return shm.map_object(local)
        except shm.ObjectNotFound:
            if node_id == self.node_id:
                raise exceptions.ObjectLostError(hex_id, "its shared-memory file is gone") from None
        fetch.pull(self, node_id, hex_id, owner)
        self.note_copy(bytes.fromhex(hex_id), owner)
        try:
            return shm.map_object(local)
        except shm.ObjectNotFound:
            raise exceptions.ObjectLostError(hex_id, "its copy vanished right after it was fetched") from None

    def note_copy(self, object_id: bytes, owner: str) -> None:
        """Tell the object's owner that this node now has a copy (freed with the object)."""
        if owner == self.address:
            self.objects.add_copy(object_id, self.node_id)  # at once: the ref may be dropped next
        elif owner:
            self.send(owner, messages.AddObjectLocation(object_id, self.node_id))

    # ------------------------------------------------------------ borrowing across processes

    def _fetch_from_owners(self, items: list[tuple[bytes, str]]) -> None:
        for oid, owner in items:
            def on_value(msg: Any, payload: list, oid: bytes = oid, owner: str = owner) -> None:
                self.owner_watch.answered(owner, getattr(msg, "req_id", 0))
                if isinstance(msg, messages.ObjectValue):
                    ret = msg.value
                    kind = object_table.SHM if ret.kind == "shm" else ret.kind
                    self.objects.set_value(oid, kind, payload, ret.node_id, ret.size)
                else:
                    error = exceptions.OwnerDiedError(
                        oid.hex(), f"its owner at {owner} did not answer ({getattr(msg, 'value', msg)})"
                    )
                    self.objects.set_value(oid, object_table.ERROR, serialization.serialize(error)[0])

            req_id = self.loop.request(owner, functools.partial(messages.GetObject, object_id=oid), on_value, timeout=10**9)
            self.owner_watch.fetching(owner, req_id)

    def _on_get_object(self, msg: messages.GetObject, payload: list, peer: loop_mod.Peer) -> None:
        oid = msg.object_id
        entry = self.objects.get(oid)
        if entry is None:
            error = exceptions.ObjectLostError(oid.hex(), "its owner has already freed it")
            frames = serialization.serialize(error)[0]
            peer.send(messages.ObjectValue(msg.req_id, oid, messages.ReturnValue("error", len(frames))), frames)
            return

        def answer(_oid: bytes) -> None:
            e = self.objects.get(oid)
            if e is None:
                return
            if e.kind == object_table.SHM:
                peer.send(messages.ObjectValue(msg.req_id, oid, messages.ReturnValue("shm", 0, e.node_id, e.size)))
            else:
                frames = e.frames or []
                peer.send(messages.ObjectValue(msg.req_id, oid, messages.ReturnValue(e.kind, len(frames))), frames)

        if self.objects.add_waiter(oid, object_table.CallbackWaiter(answer)):
            answer(oid)

    # ------------------------------------------------------------ shutdown

    def shutdown(self) -> None:
        if self._closed:
            return
        self._closed = True
        done = threading.Event()

        def stop() -> None:
            try:
                self.flush()
                self.submitter.shutdown()
            finally:
                self.loop.stop()
                done.set()

        self.loop.call_soon_threadsafe(stop)
        done.wait(5.0)
        self._thread.join(5.0)
