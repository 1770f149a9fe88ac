"""`ray._private.internal_api` under kray: `free`, which kray keeps in kray.internal."""

from kray.internal import free

__all__ = ["free"]
