"""A month's spend allocated team -> project, with each line's share of the month
and an ``unallocated`` line for usage recorded without a team. Read from the
monthly rollup; money stays Decimal (shares too)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pandas as pd
from sqlalchemy import Engine

from dashboard.queries import add_money, aggregate
from models.schema import rollup_monthly

__all__ = ["ALLOCATION_COLUMNS", "UNALLOCATED", "allocation", "month_usage"]

UNALLOCATED = "unallocated"
NO_PROJECT = "(no project)"
_COUNTS = ("requests", "input_tokens", "cached_input_tokens", "output_tokens",
           "unpriced_tokens")
#: Columns of :func:`allocation`'s frame.
ALLOCATION_COLUMNS = ("level", "team", "project", *_COUNTS, "cost", "cost_list", "share")


def month_usage(engine: Engine, month: dt.date) -> pd.DataFrame:
    """(team, project) sums for the month that starts on ``month``."""
    return aggregate(engine, keys=["team", "project"], start=month, end=month,
                     counts=_COUNTS, money=("cost", "cost_list"), table=rollup_monthly)


def _share(cost: Decimal | None, total: Decimal | None) -> Decimal | None:
    if cost is None or not total:
        return None
    return cost / total


def allocation(engine: Engine, month: dt.date) -> pd.DataFrame:
    """Rows in display order: each team (largest first) then its projects, the
    ``unallocated`` line (events with no team) last but one, and the total.
    ``level`` is team, project, unallocated or total; ``share`` is the line's
    fraction of the month's priced cost (Decimal, None when unknown)."""
    usage = month_usage(engine, month)
    total_cost: Decimal | None = None
    for value in usage["cost"]:
        total_cost = add_money(total_cost, value)
    teams: dict[str, dict[str, object]] = {}
    projects: dict[str, list[dict[str, object]]] = {}
    for row in usage.to_dict("records"):
        team = str(row["team"])
        sums = teams.setdefault(team, {**dict.fromkeys(_COUNTS, 0), "cost": None,
                                       "cost_list": None})
        for c in _COUNTS:
            sums[c] += row[c]  # type: ignore[operator]
        for m in ("cost", "cost_list"):
            sums[m] = add_money(sums[m], row[m])  # type: ignore[arg-type]
        projects.setdefault(team, []).append(row)
    out: list[dict[str, object]] = []

    def line(level: str, team: str, project: str, data: dict[str, object]) -> None:
        out.append({"level": level, "team": team, "project": project,
                    **{c: int(data[c]) for c in _COUNTS},  # type: ignore[call-overload]
                    "cost": data["cost"], "cost_list": data["cost_list"],
                    "share": _share(data["cost"], total_cost)})  # type: ignore[arg-type]

    def by_cost(item: tuple[str, dict[str, object]]) -> tuple[Decimal, str]:
        cost = item[1]["cost"]
        return (-(cost if isinstance(cost, Decimal) else Decimal(0)), item[0])

    for team, sums in sorted(((t, s) for t, s in teams.items() if t != ""), key=by_cost):
        line("team", team, "", sums)
        rows = sorted(projects[team], key=lambda r: by_cost((str(r["project"]), r)))
        for row in rows:
            line("project", team, str(row["project"]) or NO_PROJECT, row)
    if "" in teams:
        line(UNALLOCATED, UNALLOCATED, "", teams[""])
    grand = {**{c: int(usage[c].sum()) if len(usage) else 0 for c in _COUNTS},
             "cost": total_cost, "cost_list": None}
    for value in usage["cost_list"]:
        grand["cost_list"] = add_money(grand["cost_list"], value)  # type: ignore[arg-type]
    if out:
        line("total", "total", "", grand)
    frame = pd.DataFrame(out, columns=list(ALLOCATION_COLUMNS))
    for m in ("cost", "cost_list", "share"):
        frame[m] = frame[m].astype(object)
    return frame
