"""Zone transfers: AXFR (RFC 5936), IXFR from a journal (RFC 1995), NOTIFY (RFC 1996), TSIG (RFC 8945)."""

from .keys import KeyFileError, KeyRing, TsigKey, load_key_files
from .observer import TransferEvent, TransferObserver
from .service import TransferService, TransferSettings, TransferSetupError, check_settings, may_concern_transfers

__all__ = [
    "KeyFileError",
    "KeyRing",
    "TransferEvent",
    "TransferObserver",
    "TransferService",
    "TransferSettings",
    "TransferSetupError",
    "TsigKey",
    "check_settings",
    "load_key_files",
    "may_concern_transfers",
]
