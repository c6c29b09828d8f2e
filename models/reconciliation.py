"""Reconciliation with what OpenAI bills: its Costs API against our estimates.

``fetch_billed_costs`` reads ``GET /v1/organization/costs`` through the installed
``openai`` SDK (``client.admin.organization.usage.costs``, admin key), grouped by
project and line item, one bucket per UTC day, following ``next_page`` until
``has_more`` is false, and replaces the stored amounts of the days it read in one
transaction (nothing is stored when any page fails). Amounts are read from the JSON
text as exact decimals (the SDK's model holds them as floats).

``reconciliation`` compares them, per UTC day and project, with the contracted cost
of the rollups (OpenAI project ids are mapped to our project names by the
``openai_projects`` setting) and gives the month's drift in percent.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from sqlalchemy import Engine, delete, func, insert, select

from models.database import begin_write
from models.months import next_month
from models.schema import billed_costs, reconcile_runs, rollup_daily
from models.types import as_date
from spendwatch.errors import ConfigurationError, ReconciliationError

__all__ = ["DayProject", "FetchResult", "Reconciliation", "fetch_billed_costs",
           "month_drift", "parse_project_map", "reconciliation"]

UTC = dt.UTC
_ZERO = Decimal(0)
_MAX_PAGES = 1000


@dataclass
class FetchResult:
    days: int
    rows: int
    pages: int
    total: Decimal


@dataclass
class DayProject:
    day: dt.date
    project: str
    estimated: Decimal
    billed: Decimal | None

    @property
    def difference(self) -> Decimal | None:
        return None if self.billed is None else self.billed - self.estimated

    @property
    def difference_pct(self) -> Decimal | None:
        if self.billed is None or not self.estimated:
            return None
        return ((self.billed - self.estimated) * 100 / self.estimated).quantize(Decimal("0.01"))


@dataclass
class Reconciliation:
    month: dt.date
    rows: list[DayProject] = field(default_factory=list)
    last_run: dt.datetime | None = None

    @property
    def estimated(self) -> Decimal:
        """Estimated cost of the days OpenAI's bill covers."""
        return sum((r.estimated for r in self.rows if r.billed is not None), _ZERO)

    @property
    def billed(self) -> Decimal:
        return sum((r.billed for r in self.rows if r.billed is not None), _ZERO)

    @property
    def drift(self) -> Decimal:
        return self.billed - self.estimated

    @property
    def drift_pct(self) -> Decimal | None:
        if not self.estimated:
            return None
        return (self.drift * 100 / self.estimated).quantize(Decimal("0.01"))


def parse_project_map(text: str) -> dict[str, str]:
    """``"proj_abc=ranker, proj_def=search"`` -> {OpenAI project id: our project}."""
    out: dict[str, str] = {}
    for part in (text or "").replace("\n", ",").split(","):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ConfigurationError(
                f"SPENDWATCH_OPENAI_PROJECTS: {part.strip()!r} is not OPENAI_ID=PROJECT; "
                f"write it like proj_abc123=ranker,proj_def456=search")
        out[key.strip()] = value.strip()
    return out


def fetch_billed_costs(engine: Engine, *, admin_key: str, since: dt.date, until: dt.date,
                       base_url: str | None = None, client: object | None = None,
                       now: dt.datetime | None = None) -> FetchResult:
    """Read the UTC days ``since``..``until`` from the Costs API and store them
    (``now``: when the run is recorded as started; default the current time)."""
    if not admin_key and client is None:
        raise ReconciliationError("no OpenAI admin key is configured: set "
                                  "SPENDWATCH_OPENAI_ADMIN_KEY (an admin key from "
                                  "platform.openai.com/settings/organization/admin-keys)")
    if since > until:
        raise ConfigurationError(f"--since {since} is after {until}")
    import openai

    if client is None:
        client = openai.OpenAI(api_key="unused", admin_api_key=admin_key, base_url=base_url,
                               max_retries=2)
    start = int(dt.datetime.combine(since, dt.time(0), UTC).timestamp())
    end = int(dt.datetime.combine(until + dt.timedelta(days=1), dt.time(0), UTC).timestamp())
    amounts: dict[tuple[dt.date, str, str], tuple[Decimal, str]] = {}
    page: str | None = None
    pages = 0
    started = now or dt.datetime.now(UTC)
    try:
        while True:
            kwargs: dict[str, object] = {"start_time": start, "end_time": end,
                                         "bucket_width": "1d",
                                         "group_by": ["project_id", "line_item"],
                                         "limit": min((until - since).days + 1, 180)}
            if page:
                kwargs["page"] = page
            raw = client.admin.organization.usage.with_raw_response.costs(  # type: ignore[attr-defined]
                **kwargs)
            body = json.loads(raw.text, parse_float=Decimal)
            pages += 1
            _read_page(body, amounts)
            page = body.get("next_page")
            if not body.get("has_more"):
                break
            if not page or pages >= _MAX_PAGES:
                raise ReconciliationError(
                    "the Costs API said has_more but gave no usable next_page; nothing was "
                    "stored; try again later")
    except openai.APIStatusError as exc:
        _failed(engine, started, since, until, f"HTTP {exc.status_code}: {exc.message}")
        raise ReconciliationError(
            f"OpenAI's Costs API refused the request (HTTP {exc.status_code}: {exc.message}); "
            f"check SPENDWATCH_OPENAI_ADMIN_KEY is an admin key; nothing was stored") from None
    except openai.APIConnectionError as exc:
        _failed(engine, started, since, until, f"unreachable: {exc}")
        raise ReconciliationError(
            f"OpenAI's Costs API is unreachable ({exc}); nothing was stored; the daily job "
            f"tries again tomorrow") from None
    except (ValueError, KeyError, TypeError) as exc:
        _failed(engine, started, since, until, f"bad answer: {exc}")
        raise ReconciliationError(f"OpenAI's Costs API gave an answer spendwatch cannot read "
                                  f"({exc}); nothing was stored") from None
    now = now or dt.datetime.now(UTC)
    with begin_write(engine) as conn:
        if not amounts:  # nothing billed (yet): keep what an earlier run stored
            conn.execute(insert(reconcile_runs).values(
                started_at=started, since=since, until=until, status="empty", rows=0,
                message="the Costs API returned no costs for these days"))
            return FetchResult(days=0, rows=0, pages=pages, total=_ZERO)
        conn.execute(delete(billed_costs).where(billed_costs.c.day >= since,
                                                billed_costs.c.day <= until))
        if amounts:
            conn.execute(insert(billed_costs), [
                {"day": d, "openai_project_id": p, "line_item": li, "amount": a,
                 "currency": cur, "fetched_at": now}
                for (d, p, li), (a, cur) in sorted(amounts.items())])
        conn.execute(insert(reconcile_runs).values(started_at=started, since=since,
                                                   until=until, status="ok",
                                                   rows=len(amounts), message=None))
    return FetchResult(days=len({d for d, _, _ in amounts}), rows=len(amounts), pages=pages,
                       total=sum((a for a, _ in amounts.values()), _ZERO))


def _read_page(body: Mapping[str, object],
               amounts: dict[tuple[dt.date, str, str], tuple[Decimal, str]]) -> None:
    if body.get("object") != "page" or not isinstance(body.get("data"), list):
        raise ValueError("not a page of cost buckets")
    for bucket in body["data"]:  # type: ignore[union-attr]
        day = dt.datetime.fromtimestamp(int(bucket["start_time"]), UTC).date()
        for result in bucket.get("results") or []:
            amount = result.get("amount") or {}
            value = amount.get("value")
            if value is None:
                continue
            currency = str(amount.get("currency") or "usd").lower()
            if currency != "usd":
                raise ValueError(f"amount in {currency!r}; spendwatch reconciles USD only")
            key = (day, str(result.get("project_id") or ""),
                   str(result.get("line_item") or "")[:300])
            previous = amounts.get(key, (_ZERO, currency))[0]
            amounts[key] = (previous + Decimal(str(value)), currency)


def _failed(engine: Engine, started: dt.datetime, since: dt.date, until: dt.date,
            message: str) -> None:
    with begin_write(engine) as conn:
        conn.execute(insert(reconcile_runs).values(started_at=started, since=since,
                                                   until=until, status="failed", rows=0,
                                                   message=message[:2000]))


def reconciliation(engine: Engine, month: dt.date,
                   project_map: Mapping[str, str]) -> Reconciliation:
    """Estimated (rollups, contracted cost, by UTC day) against billed, per day and
    project, for ``month`` (UTC days)."""
    end = next_month(month)
    d = rollup_daily.c
    estimated: dict[tuple[dt.date, str], Decimal] = defaultdict(lambda: _ZERO)
    billed: dict[tuple[dt.date, str], Decimal] = defaultdict(lambda: _ZERO)
    with engine.connect() as conn:
        query = (select(d.price_date, d.project, d.cost_contract)
                 .where(d.price_date >= month, d.price_date < end))
        for day, project, cost in conn.execute(query):
            estimated[(as_date(day), project)] += cost or _ZERO
        b = billed_costs.c
        for day, pid, amount in conn.execute(
                select(b.day, b.openai_project_id, b.amount)
                .where(b.day >= month, b.day < end)):
            name = project_map.get(pid) or (f"openai:{pid}" if pid else "(no project)")
            billed[(as_date(day), name)] += amount
        last = conn.execute(select(func.max(reconcile_runs.c.started_at))
                            .where(reconcile_runs.c.status == "ok")).scalar()
    billed_days = {day for day, _ in billed}
    rows = [DayProject(day, project, estimated.get((day, project), _ZERO),
                       billed.get((day, project), _ZERO) if day in billed_days else None)
            for day, project in sorted(set(estimated) | set(billed))]
    return Reconciliation(month, rows, last)


def month_drift(engine: Engine, month: dt.date,
                project_map: Mapping[str, str]) -> Decimal | None:
    """The month's drift in percent ((billed - estimated) / estimated over the days
    OpenAI billed); None before any bill was read. For alert rules."""
    return reconciliation(engine, month, project_map).drift_pct

