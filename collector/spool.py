"""The disk spool: where events wait while the database is unreachable.

Each batch is one JSON-lines file, written to a temporary name, fsynced and then
renamed, so a crash leaves either a whole file or none. Files are named by a
UUIDv7 and so replay in the order they were written. Replay inserts with the
event id as the conflict key, so a file replayed twice (two processes, or a crash
between the insert and the delete) never double-counts.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

from models.events import UsageEvent
from models.ids import uuid7
from spendwatch.errors import SpoolError

__all__ = ["Spool"]

log = logging.getLogger("spendwatch.collector")

#: A file that fails this many times for a reason other than the database being
#: unreachable is moved to ``failed/`` so that it cannot block the others.
MAX_FILE_FAILURES = 3


class Spool:
    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory).expanduser()
        self._failures: dict[str, int] = {}
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            probe = self.directory / f".probe-{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise SpoolError(
                f"spool directory {self.directory} is not writable ({exc.strerror}); set "
                f"SPENDWATCH_SPOOL_DIR to a folder this process can write"
            ) from None

    def write(self, events: Sequence[UsageEvent]) -> Path:
        """Store ``events`` durably; returns the file."""
        name = f"{uuid7().hex}.jsonl"
        tmp = self.directory / f".{name}.tmp"
        final = self.directory / name
        data = "".join(json.dumps(e.to_json(), separators=(",", ":")) + "\n" for e in events)
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, final)
        return final

    def files(self) -> list[Path]:
        try:
            return sorted(self.directory.glob("*.jsonl"))
        except OSError:
            return []

    def pending_events(self) -> int:
        total = 0
        for path in self.files():
            with contextlib.suppress(OSError), open(path, encoding="utf-8") as fh:
                total += sum(1 for _ in fh)
        return total

    @staticmethod
    def read(path: Path) -> list[UsageEvent]:
        with open(path, encoding="utf-8") as fh:
            return [UsageEvent.from_json(json.loads(line)) for line in fh if line.strip()]

    def replay(self, insert: Callable[[Sequence[UsageEvent]], None],
               is_transient: Callable[[BaseException], bool]) -> int:
        """Insert every spooled file, oldest first, deleting each once committed.

        Stops at the first transient failure (the database went away again) and
        re-raises it; returns the number of events replayed."""
        replayed = 0
        for path in self.files():
            try:
                fh = open(path, encoding="utf-8")  # noqa: SIM115 - held for the lock
            except FileNotFoundError:
                continue  # another process replayed it
            with fh:
                try:
                    fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    continue  # another process is replaying it right now
                if not path.exists():
                    continue
                try:
                    events = [UsageEvent.from_json(json.loads(line)) for line in fh
                              if line.strip()]
                    insert(events)
                except Exception as exc:
                    if is_transient(exc):
                        raise
                    self._record_failure(path, exc)
                    continue
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                replayed += len(events)
        return replayed

    def _record_failure(self, path: Path, exc: BaseException) -> None:
        count = self._failures.get(path.name, 0) + 1
        self._failures[path.name] = count
        if count < MAX_FILE_FAILURES:
            log.warning("spool file %s could not be replayed (%s: %s); will retry", path,
                        type(exc).__name__, exc)
            return
        failed = self.directory / "failed"
        failed.mkdir(exist_ok=True)
        os.replace(path, failed / path.name)
        self._failures.pop(path.name, None)
        log.error("spool file %s failed %d times (%s: %s); moved to %s. Fix the cause, "
                  "move it back and run: spendwatch spool replay", path, count,
                  type(exc).__name__, exc, failed)
