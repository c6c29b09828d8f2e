"""The organisation's own price rows (``org_prices``): negotiated (``contract``) prices
and prices for models the price library does not know (``list``), each with an
effective date. Loaded from price files (``models.price_file``), looked up by
``models.pricing.PriceBook``."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import Connection, select

from models._library_prices import clean as _clean
from models.schema import PRICE_COLUMNS

__all__ = ["KINDS", "ORG_TIERS", "REF_MAX", "OrgPrice", "read_org_prices"]

#: Tiers an org row may name ("*" means every tier).
ORG_TIERS = ("default", "flex", "priority", "batch", "*")
#: Kinds of org rows.
KINDS = ("contract", "list")
#: Longest price ref (rollup_daily.price_ref is String(300)).
REF_MAX = 300

log = logging.getLogger("spendwatch.pricing")


@dataclass(frozen=True)
class OrgPrice:
    """One row of the organisation's price table (``org_prices``), or of a price file."""

    model: str
    service_tier: str
    kind: str
    effective_from: dt.date
    input_per_mtok: Decimal
    output_per_mtok: Decimal
    cached_input_per_mtok: Decimal | None = None
    cache_write_per_mtok: Decimal | None = None
    audio_input_per_mtok: Decimal | None = None
    audio_output_per_mtok: Decimal | None = None
    note: str | None = None
    #: where it came from, e.g. "prices.toml:7"
    source: str | None = None
    #: ``org_prices.id`` once stored
    id: int | None = None
    #: line of its ``[[price]]`` header in a price file
    line: int | None = None
    applied_at: dt.datetime | None = None

    @property
    def key(self) -> tuple[str, str, str, dt.date]:
        """The unique key of the row: (model, service_tier, kind, effective_from)."""
        return (self.model, self.service_tier, self.kind, self.effective_from)

    @property
    def prices(self) -> tuple[Decimal | None, ...]:
        """The six prices in ``models.schema.PRICE_COLUMNS`` order."""
        return tuple(getattr(self, name) for name in PRICE_COLUMNS)

    @property
    def ref(self) -> str:
        """How a cost names this row."""
        where = _short_source(self.source)
        if self.id is not None:
            text = f"org_prices #{self.id}" + (f" ({where})" if where else "")
        else:
            text = (f"org {self.kind} {self.model} {self.service_tier} from "
                    f"{self.effective_from.isoformat()}" + (f" ({where})" if where else ""))
        return text[:REF_MAX]


def read_org_prices(conn: Connection) -> list[OrgPrice]:
    """Every usable row of ``org_prices``, by id."""
    from models.schema import org_prices

    found = [_org_from_db(r._mapping)
             for r in conn.execute(select(org_prices).order_by(org_prices.c.id))]
    return [r for r in found if r is not None]


def _short_source(source: str | None) -> str:
    """"prices.toml:7" for "/etc/spendwatch/prices.toml:7"."""
    return (source or "").replace("\\", "/").rsplit("/", 1)[-1]


def _org_from_db(m: Mapping[str, object]) -> OrgPrice | None:
    prices = {name: None if m[name] is None else _clean(Decimal(str(m[name])))
              for name in PRICE_COLUMNS}
    if prices["input_per_mtok"] is None or prices["output_per_mtok"] is None:
        log.warning("org_prices #%s (%s) has no input or output price and is ignored; "
                    "apply a price file that gives both", m["id"], m["model"])
        return None
    applied, note, source = m["applied_at"], m["note"], m["source"]
    return OrgPrice(
        model=str(m["model"]), service_tier=str(m["service_tier"]), kind=str(m["kind"]),
        effective_from=m["effective_from"], **prices,  # type: ignore[arg-type]
        note=None if note is None else str(note), source=None if source is None else str(source),
        id=int(m["id"]),  # type: ignore[call-overload]
        applied_at=applied if isinstance(applied, dt.datetime) else None)
