"""Unit tests of reference counting in the object table (no processes)."""

from __future__ import annotations

from kray.core import object_table

ME = "tcp://127.0.0.1:1"
OTHER = "tcp://127.0.0.1:2"


def test_owned_object_is_freed_when_local_refs_and_borrowers_reach_zero() -> None:
    table = object_table.ObjectTable(ME)
    table.new_owned(b"o")
    table.set_value(b"o", object_table.SHM, None, b"node", 10)
    table.add_local_ref(b"o", ME)
    table.add_borrowers([b"o"])
    table.released.append(b"o")
    table.process_released()
    assert table.get(b"o") is not None, "a borrower still holds it"
    table.remove_borrowers([b"o"])
    assert table.get(b"o") is None
    _, _, freed = table.take_outbox()
    assert freed == [(b"node", b"o".hex())], "a freed shared-memory object must be deleted from its node"


def test_borrowed_ref_registers_once_and_unregisters_at_zero() -> None:
    table = object_table.ObjectTable(ME)
    assert table.add_local_ref(b"b", OTHER) is True
    assert table.add_local_ref(b"b", OTHER) is False
    table.released.extend([b"b", b"b"])
    table.process_released()
    adds, removes, _ = table.take_outbox()
    assert adds == [(OTHER, b"b", ME)] and removes == [(OTHER, b"b", ME)]


def test_a_dead_borrowers_borrows_are_released_and_its_late_removal_is_not_counted_again() -> None:
    table = object_table.ObjectTable(ME)
    for oid in (b"x", b"y"):
        table.new_owned(oid)
        table.set_value(oid, object_table.SHM, None, b"node", 10)
    table.add_borrowers([b"x", b"y"], "tcp://dead:1")
    table.add_borrowers([b"x"], "tcp://dead:1")
    table.add_borrowers([b"x"], "tcp://live:1")
    assert table.release_borrower("tcp://dead:1") == 3
    assert table.borrowed_by == {"tcp://live:1": {b"x": 1}}
    assert table.get(b"y") is None and table.get(b"x") is not None  # y had no other holder: freed
    table.remove_borrowers([b"x"], "tcp://dead:1")  # its BorrowsRemoved, sent before it died, arrives late
    assert table.get(b"x") is not None and table.get(b"x").borrowers == 1  # type: ignore[union-attr]
    table.remove_borrowers([b"x"], "tcp://live:1")
    assert table.get(b"x") is None and table.borrowed_by == {}
    assert sorted(hex_id for _, hex_id in table.take_outbox()[2]) == [b"x".hex(), b"y".hex()]


def test_precounted_borrow_sends_no_registration() -> None:
    table = object_table.ObjectTable(ME)
    assert table.add_local_ref(b"p", OTHER, precounted=True) is False
    assert table.take_outbox()[0] == []


def test_waiters_are_notified_once_the_value_arrives() -> None:
    table = object_table.ObjectTable(ME)
    table.new_owned(b"w")
    table.add_local_ref(b"w", ME)
    waiter = object_table.Waiter(1)
    assert table.add_waiter(b"w", waiter) is False
    assert not waiter.is_set()
    assert table.set_value(b"w", object_table.INLINE, [b"x"])
    assert waiter.is_set()
    assert table.add_waiter(b"w", object_table.Waiter(1)) is True, "a ready object needs no waiter"


def test_contained_refs_are_released_with_their_container() -> None:
    table = object_table.ObjectTable(ME)
    released = []

    class Holder:
        def __del__(self) -> None:
            released.append(True)

    table.new_owned(b"c")
    table.add_local_ref(b"c", ME)
    table.set_value(b"c", object_table.INLINE, [b"x"], contained=[Holder()])
    table.released.append(b"c")
    table.process_released()
    assert released == [True]


def test_a_waiter_on_many_objects_is_registered_once_and_can_be_taken_back() -> None:
    table = object_table.ObjectTable(ME)
    for oid in (b"a", b"b", b"c"):
        table.new_owned(oid)
    table.set_value(b"a", object_table.INLINE, [b"x"])
    table.add_local_ref(b"d", OTHER)  # borrowed and pending: the caller must fetch it
    waiter = object_table.Waiter(1)
    ready, registered, to_fetch = table.add_waiter_many([b"a", b"b", b"c", b"d"], waiter)
    assert ready == 1 and registered == [b"b", b"c", b"d"] and to_fetch == [(b"d", OTHER)]
    assert table.add_waiter_many([b"d"], object_table.Waiter(1))[2] == [], "a fetch is asked for once"
    table.set_value(b"b", object_table.INLINE, [b"y"])
    assert waiter.is_set()
    table.remove_waiter_many(registered, waiter)
    assert all(waiter not in table.get(oid).waiters for oid in (b"c", b"d"))


def test_a_table_that_shrank_to_a_fraction_of_its_peak_is_compacted_and_keeps_its_live_entries() -> None:
    table = object_table.ObjectTable(ME)
    count = object_table.COMPACT_MIN_PEAK
    ids = [i.to_bytes(20, "big") for i in range(count)]
    for object_id in ids:
        table.new_owned(object_id)
        table.add_local_ref(object_id, ME)
    before = table.entries
    keep = ids[: count // (object_table.COMPACT_FRACTION * 2)]
    table.released.extend(ids[len(keep):])
    table.process_released()
    assert table.entries is not before, "a table that dropped to a small fraction of its peak must be rebuilt"
    assert len(table.entries) == len(keep) and all(table.get(i) is not None for i in keep)
    table.released.extend(keep[:1])
    table.process_released()
    assert table.get(keep[0]) is None and table.get(keep[1]) is not None


def test_a_small_table_is_not_compacted() -> None:
    table = object_table.ObjectTable(ME)
    for i in range(100):
        table.new_owned(bytes([i]))
        table.add_local_ref(bytes([i]), ME)
    before = table.entries
    table.released.extend(bytes([i]) for i in range(99))
    table.process_released()
    assert table.entries is before
