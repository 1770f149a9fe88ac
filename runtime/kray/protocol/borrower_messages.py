"""Borrower registrations that name the borrowing process, so that an owner can release the borrows of a
borrower that died without saying so (issue 15 defect 5: a SIGKILLed worker, actor or driver).

Pure data, registered with `wire` like the other protocol modules. Who sends what:

    borrower -> owner    BorrowsAdded (these objects are borrowed by `borrower`; sent by the borrower, or
                         by the worker whose return value carries the refs to its caller)
    borrower -> owner    BorrowsRemoved (`borrower` dropped its refs to these objects)

The owner asks the GCS to tell it when a borrower dies (owner_messages.WatchOwners: every process is
announced there) and then releases what that borrower held (core/borrower_watch.py).
"""

from __future__ import annotations

from kray.protocol.messages import message


@message(231)
class BorrowsAdded:
    borrower: str  # the borrowing process's address (the one it announced to the GCS)
    object_ids: list[bytes]


@message(232)
class BorrowsRemoved:
    borrower: str
    object_ids: list[bytes]
