"""A lease in the database: of several processes (two schedulers started against one
database), one holds it and works; the others stand by and take over when it
expires. Taking and renewing happen in a write transaction (``BEGIN IMMEDIATE`` on
SQLite, a row lock on PostgreSQL), so two processes can never both hold it."""

from __future__ import annotations

import datetime as dt
import os
import socket
import uuid
from dataclasses import dataclass

from sqlalchemy import Engine, delete, insert, select, update

from models.database import begin_write
from models.schema import leases

__all__ = ["Lease", "LeaseState"]

UTC = dt.UTC


@dataclass(frozen=True)
class LeaseState:
    held: bool
    holder: str
    expires_at: dt.datetime


class Lease:
    def __init__(self, engine: Engine, name: str, ttl: dt.timedelta,
                 holder: str | None = None) -> None:
        self.engine = engine
        self.name = name
        self.ttl = ttl
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    def acquire(self, now: dt.datetime | None = None) -> LeaseState:
        """Take the lease if it is free or expired, renew it if we hold it; otherwise
        report who holds it."""
        now = now or dt.datetime.now(UTC)
        expires = now + self.ttl
        with begin_write(self.engine) as conn:
            query = select(leases).where(leases.c.name == self.name)
            if self.engine.dialect.name == "postgresql":
                query = query.with_for_update()
            row = conn.execute(query).first()
            if row is None:
                conn.execute(insert(leases).values(name=self.name, holder=self.holder,
                                                   acquired_at=now, expires_at=expires))
                return LeaseState(True, self.holder, expires)
            if row.holder == self.holder or row.expires_at <= now:
                values: dict[str, object] = {"holder": self.holder, "expires_at": expires}
                if row.holder != self.holder:
                    values["acquired_at"] = now
                conn.execute(update(leases).where(leases.c.name == self.name).values(**values))
                return LeaseState(True, self.holder, expires)
            return LeaseState(False, row.holder, row.expires_at)

    def release(self) -> None:
        with begin_write(self.engine) as conn:
            conn.execute(delete(leases).where(leases.c.name == self.name,
                                              leases.c.holder == self.holder))
