"""The monthly chargeback: cost by team -> project (-> user), with the unallocated
bucket, corrections of closed months, shared-cost splits and cost centres.

The amount charged is the contracted cost (the contract price where there is one,
else the list price). Every amount is exact until it is split into cents by largest
remainder, top down: teams first (their direct cost and their corrections), then the
projects and users inside each team, then the shared-cost rules in cents, so every
view adds up to the month's total to the cent and a team's row is exactly
direct + corrections + shared in - shared out.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from sqlalchemy import Engine, insert, inspect, select

from models.allocation import Allocation, Split, allocate, largest_remainder, to_cents
from models.allocation_file import AllocationConfig, SharedCostRule, parse_allocation_file
from models.database import begin_write
from models.months import Line, month_lines
from models.schema import allocation_files
from spendwatch.errors import AllocationFileError, ConfigurationError

__all__ = ["ADJUSTMENT_LABEL", "UNALLOCATED_LABEL", "VIEWS", "ChargebackReport", "ChargebackRow",
           "apply_allocation", "chargeback_report", "current_allocation"]

VIEWS = ("team", "project", "cost-centre", "user")
UNALLOCATED_LABEL = "(unallocated)"
#: The line of the difference between OpenAI's bill and the estimate.
ADJUSTMENT_LABEL = "(billing adjustment)"
_ZERO = Decimal(0)
_COUNTS = ("requests", "errors", "input_tokens", "cached_input_tokens", "output_tokens",
           "reasoning_tokens", "unpriced_tokens")


@dataclass
class ChargebackRow:
    """One row of a view. Amounts are USD in cents except ``cost_list`` (exact)."""

    team: str
    project: str = ""
    user: str = ""
    cost_centre: str = ""
    kind: str = "usage"  # usage | correction | shared
    note: str = ""
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(_COUNTS, 0))
    cost_list: Decimal | None = None
    direct: Decimal = _ZERO
    corrections: Decimal = _ZERO
    shared_in: Decimal = _ZERO
    shared_out: Decimal = _ZERO
    share_pct: Decimal = _ZERO

    @property
    def allocated(self) -> Decimal:
        return self.direct + self.corrections + self.shared_in - self.shared_out

    @property
    def team_label(self) -> str:
        return self.team or UNALLOCATED_LABEL


@dataclass
class ChargebackReport:
    month: dt.date
    closed: bool
    by: str
    rows: list[ChargebackRow]
    total: Decimal  # cents
    total_exact: Decimal
    total_list: Decimal  # exact
    unallocated: Decimal  # cents, before shared-cost rules
    splits: list[Split]
    notes: list[str]
    lines: list[Line]
    config: AllocationConfig

    @property
    def status(self) -> str:
        return "closed" if self.closed else "open"

    @property
    def unallocated_pct(self) -> Decimal:
        return _pct(self.unallocated, self.total)

    @property
    def corrections(self) -> Decimal:
        return sum((r.corrections for r in self.rows), _ZERO)


def current_allocation(engine: Engine) -> AllocationConfig:
    """The allocation file in force (the latest applied); empty when none was."""
    with engine.connect() as conn:
        row = conn.execute(select(allocation_files).order_by(allocation_files.c.id.desc())
                           .limit(1)).first()
    if row is None:
        return AllocationConfig()
    return parse_allocation_file(row.content, row.source)


def apply_allocation(engine: Engine, path: Path, *, dry_run: bool = False) -> AllocationConfig:
    """Validate the allocation file at ``path`` against the usage recorded (teams and
    projects must exist) and the closed months (what decides a closed month's
    allocation may not change), then store it as the file in force."""
    from models.months import closed_months
    from models.schema import chargeback_snapshot, rollup_monthly

    text = path.read_text(encoding="utf-8")
    with engine.connect() as conn:
        pairs = set()
        for table in (rollup_monthly, chargeback_snapshot):
            pairs |= {(t, p) for t, p in conn.execute(
                select(table.c.team, table.c.project).distinct())}
        closed = sorted(closed_months(conn))
    config = parse_allocation_file(text, str(path), known_teams={t for t, _ in pairs},
                                   known_projects=pairs)
    current = current_allocation(engine)
    changed = [m for m in closed if current.in_force(m) != config.in_force(m)]
    if changed:
        shown = ", ".join(f"{m:%Y-%m}" for m in changed)
        raise AllocationFileError(
            f"{path}: refused, nothing was applied: it changes the allocation of closed "
            f"month(s) {shown}; give new entries an effective_from after the last closed "
            f"month, or reopen the month first (spendwatch month reopen YYYY-MM --reason ...)")
    if not dry_run:
        with begin_write(engine) as conn:
            conn.execute(insert(allocation_files).values(
                source=str(path)[:500], content=text, applied_at=dt.datetime.now(dt.UTC)))
    return config


def chargeback_report(engine: Engine, month: dt.date, *, by: str = "team",
                      config: AllocationConfig | None = None,
                      adjustment: Decimal | None = None) -> ChargebackReport:
    """``month``'s chargeback viewed ``by`` team, project, cost-centre or user.
    ``adjustment`` (billed minus estimated, from reconciliation) is added as the line
    ADJUSTMENT_LABEL and spread over every team in proportion to its estimate, before
    the shared-cost rules; events are never edited."""
    if by not in VIEWS:
        raise ConfigurationError(f"--by {by!r}: use one of {', '.join(VIEWS)}")
    config = config if config is not None else current_allocation(engine)
    closed, lines = month_lines(engine, month)
    # exact amounts per (team, project, source month or None)
    items: dict[tuple[str, str, dt.date | None], _Acc] = defaultdict(_Acc)
    for line in lines:
        items[(line.team, line.project, line.correction_of)].add(line)
    rules = config.rules_for(month)
    if adjustment:
        targets = tuple(sorted({t for (t, _, _), a in items.items() if a.cost}))
        items[(ADJUSTMENT_LABEL, "", None)].cost = adjustment
        rules = [SharedCostRule("billing adjustment", ADJUSTMENT_LABEL, "proportional",
                                targets, (), month, None), *rules]
    teams = sorted({t for t, _, _ in items})
    usage = {t: sum((a.cost for (tt, _, src), a in items.items() if tt == t and src is None),
                    _ZERO) for t in teams}
    fixes = {t: sum((a.cost for (tt, _, src), a in items.items() if tt == t and src),
                    _ZERO) for t in teams}
    cents = largest_remainder([v for t in teams for v in (usage[t], fixes[t])])
    usage_c = {t: cents[2 * i] for i, t in enumerate(teams)}
    fixes_c = {t: cents[2 * i + 1] for i, t in enumerate(teams)}
    base = {t: usage[t] + fixes[t] for t in teams}
    result = allocate(base, rules,
                      {t: usage_c[t] + fixes_c[t] for t in teams})
    total_exact = sum(base.values(), _ZERO)
    total = sum(cents, _ZERO)
    report = ChargebackReport(
        month=month, closed=closed, by=by, rows=[], total=total, total_exact=total_exact,
        total_list=sum((a.cost_list or _ZERO for a in items.values()), _ZERO),
        unallocated=usage_c.get("", _ZERO) + fixes_c.get("", _ZERO), splits=result.splits,
        notes=list(result.notes), lines=lines, config=config)
    assert to_cents(total_exact) == total
    project_rows = _project_rows(items, teams, usage_c, fixes_c, result)
    if by == "team":
        rows = _by_team(project_rows)
    elif by == "project":
        rows = project_rows
    elif by == "cost-centre":
        rows = _by_cost_centre(project_rows, config, month)
    else:
        rows = _by_user(engine, month, project_rows, report)
    for row in rows:
        row.cost_centre = row.cost_centre or config.cost_centre_of(row.team, row.project, month)
        row.share_pct = _pct(row.allocated, total)
    report.rows = rows
    unpriced = sorted({(ln.model, ln.service_tier) for ln in lines
                       if ln.counts.get("unpriced_tokens")})
    if unpriced:
        names = ", ".join(m + (f" ({t})" if t else "") for m, t in unpriced)
        report.notes.append(f"unpriced models (tokens counted, cost not in the totals): "
                            f"{names}; add prices with `spendwatch prices apply FILE`")
    return report


class _Acc:
    def __init__(self) -> None:
        self.counts = dict.fromkeys(_COUNTS, 0)
        self.cost = _ZERO
        self.cost_list: Decimal | None = None

    def add(self, line: Line) -> None:
        for k in _COUNTS:
            self.counts[k] += line.counts.get(k, 0)
        self.cost += line.cost_contract or _ZERO
        if line.cost_list is not None:
            self.cost_list = (self.cost_list or _ZERO) + line.cost_list


def _project_rows(items: dict[tuple[str, str, dt.date | None], _Acc], teams: Sequence[str],
                  usage_c: dict[str, Decimal], fixes_c: dict[str, Decimal],
                  result: Allocation) -> list[ChargebackRow]:
    rows: list[ChargebackRow] = []
    for team in teams:
        mine = sorted((((p, src), a) for (t, p, src), a in items.items() if t == team),
                      key=lambda item: (item[0][0], item[0][1] or dt.date.min))
        used = [(k, a) for k, a in mine if k[1] is None]
        fixed = [(k, a) for k, a in mine if k[1] is not None]
        for group, total, column in ((used, usage_c[team], "direct"),
                                     (fixed, fixes_c[team], "corrections")):
            split = largest_remainder([a.cost for _, a in group], total)
            for ((project, src), acc), amount in zip(group, split, strict=True):
                row = ChargebackRow(team=team, project=project, counts=dict(acc.counts),
                                    cost_list=acc.cost_list,
                                    kind="usage" if src is None else "correction",
                                    note="" if src is None else f"correction of {src:%Y-%m}")
                setattr(row, column, amount)
                rows.append(row)
        received, given = result.received(team), result.given(team)
        if received or given:
            pools = sorted({s.pool or UNALLOCATED_LABEL for s in result.splits
                            if s.team == team})
            rows.append(ChargebackRow(team=team, project="(shared costs)", kind="shared",
                                      note=("from " + ", ".join(pools)) if pools else
                                      "spread to other teams",
                                      shared_in=received, shared_out=given))
    return rows


def _by_team(project_rows: Sequence[ChargebackRow]) -> list[ChargebackRow]:
    teams: dict[str, ChargebackRow] = {}
    for r in project_rows:
        row = teams.setdefault(r.team, ChargebackRow(team=r.team))
        _merge(row, r)
    return sorted(teams.values(), key=lambda r: (r.team == "", -r.allocated, r.team))


def _by_cost_centre(project_rows: Sequence[ChargebackRow], config: AllocationConfig,
                    month: dt.date) -> list[ChargebackRow]:
    names = {c.code: c.name for c in config.cost_centres}
    out: dict[str, ChargebackRow] = {}
    for r in project_rows:
        code = config.cost_centre_of(r.team, "" if r.kind == "shared" else r.project, month)
        row = out.setdefault(code, ChargebackRow(team="", cost_centre=code or "(unmapped)",
                                                 note=names.get(code, "")))
        _merge(row, r)
    return sorted(out.values(), key=lambda r: (r.cost_centre == "(unmapped)", -r.allocated,
                                               r.cost_centre))


def _by_user(engine: Engine, month: dt.date, project_rows: Sequence[ChargebackRow],
             report: ChargebackReport) -> list[ChargebackRow]:
    """Projects split by user (from ``rollup_daily_user``); corrections and shared
    costs stay at project level."""
    if not inspect(engine).has_table("rollup_daily_user"):
        report.notes.append("per-user spend is not rolled up in this database; shown by "
                            "project")
        return list(project_rows)
    from models.months import next_month
    from models.schema import rollup_daily_user as u

    users: dict[tuple[str, str], dict[str, _UserAcc]] = defaultdict(dict)
    with engine.connect() as conn:
        for r in conn.execute(select(u).where(u.c.day >= month, u.c.day < next_month(month))):
            m = r._mapping
            acc = users[(m["team"], m["project"])].setdefault(m["user"], _UserAcc())
            acc.add(m)
    rows: list[ChargebackRow] = []
    for r in project_rows:
        found = users.get((r.team, r.project)) if r.kind == "usage" else None
        if not found:
            rows.append(r)
            continue
        names = sorted(found)
        split = largest_remainder([found[n].cost for n in names], r.direct)
        for name, amount in zip(names, split, strict=True):
            acc = found[name]
            rows.append(ChargebackRow(team=r.team, project=r.project, user=name or "(no user)",
                                      counts=dict(acc.counts), cost_list=acc.cost_list,
                                      direct=amount))
    return rows


class _UserAcc(_Acc):
    def add(self, m: object) -> None:  # type: ignore[override]
        g = m.__getitem__  # type: ignore[attr-defined]
        for k in _COUNTS:
            self.counts[k] += int(g(k) or 0)
        self.cost += g("cost_contract") or _ZERO
        if g("cost_list") is not None:
            self.cost_list = (self.cost_list or _ZERO) + g("cost_list")


def _merge(into: ChargebackRow, r: ChargebackRow) -> None:
    for k in _COUNTS:
        into.counts[k] += r.counts.get(k, 0)
    if r.cost_list is not None:
        into.cost_list = (into.cost_list or _ZERO) + r.cost_list
    into.direct += r.direct
    into.corrections += r.corrections
    into.shared_in += r.shared_in
    into.shared_out += r.shared_out


def _pct(part: Decimal, whole: Decimal) -> Decimal:
    if not whole:
        return _ZERO
    return (part * 100 / whole).quantize(Decimal("0.01"))
