"""A stop asked for by a signal, remembered even if the exception it raised was swallowed.

The command line turns SIGTERM and SIGINT into an exception in the main thread; code that happens to be
running then (a library's import, a callback) may catch it too broadly and carry on. The handler therefore
also sets this flag, and long loops (the sweep between trials) check it, so a stop is never lost: at worst it
takes effect at the next trial boundary instead of at once.
"""
from __future__ import annotations

import threading

_REQUESTED = threading.Event()
_REASON = {"signal": ""}


def request_stop(signal_name: str) -> None:
    _REASON["signal"] = signal_name
    _REQUESTED.set()


def clear_stop() -> None:
    _REQUESTED.clear()
    _REASON["signal"] = ""


def stop_requested() -> str:
    """The name of the signal that asked for a stop ('SIGTERM', 'SIGINT'), or '' when none did."""
    return _REASON["signal"] if _REQUESTED.is_set() else ""


def check_stop() -> None:
    """Raise KeyboardInterrupt if a stop was asked for and its exception did not get through."""
    if _REQUESTED.is_set():
        raise KeyboardInterrupt("stop requested")
