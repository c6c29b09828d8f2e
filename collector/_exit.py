"""Flushing the event sinks when the process ends: at interpreter exit, and on
SIGTERM (then the process dies of SIGTERM as it would have without us)."""

from __future__ import annotations

import atexit
import logging
import os
import signal
import threading
from types import FrameType
from typing import Protocol

__all__ = ["forget", "install"]

log = logging.getLogger("spendwatch.collector")


class Closable(Protocol):
    def close(self) -> None: ...


_exit_sinks: list[Closable] = []
_exit_lock = threading.Lock()
_sigterm_installed = False


def _at_exit() -> None:
    for sink in list(_exit_sinks):
        try:
            sink.close()
        except Exception:  # pragma: no cover - never fail interpreter shutdown
            log.exception("spendwatch: error while flushing at exit")


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    _at_exit()
    # Then die of SIGTERM as the process would have without us.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


def install(sink: Closable) -> None:
    """Close ``sink`` at interpreter exit, and on SIGTERM when the process has no
    SIGTERM handler of its own (only possible from the main thread)."""
    global _sigterm_installed
    with _exit_lock:
        if not _exit_sinks:
            atexit.register(_at_exit)
        if sink not in _exit_sinks:
            _exit_sinks.append(sink)
        if _sigterm_installed or threading.current_thread() is not threading.main_thread():
            return
        try:
            if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
                signal.signal(signal.SIGTERM, _on_sigterm)
                _sigterm_installed = True
        except (ValueError, OSError):  # pragma: no cover - not the main interpreter
            pass


def forget(sink: Closable) -> None:
    """No longer close ``sink`` at exit (it was replaced and closed already)."""
    with _exit_lock:
        if sink in _exit_sinks:
            _exit_sinks.remove(sink)
