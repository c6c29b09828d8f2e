"""The allocation file (TOML): cost centres and shared-cost rules, with effective dates.

.. code-block:: toml

    [[cost_centre]]
    code = "CC-1001"                 # what finance books against
    name = "Search and discovery"    # optional
    teams = ["search"]               # teams mapped here (all their projects) ...
    projects = ["ads/bidder"]        # ... and/or single projects as "team/project"
    effective_from = 2026-01-01      # optional: the first day of a month (default: always)
    effective_until = 2026-12-31     # optional: the last day of a month (default: open)

    [[rule]]
    name = "spread unallocated"
    pool = "unallocated"             # "unallocated" (events with no team) or a team
    method = "proportional"          # proportional (to direct cost) | even | fixed
    targets = ["search", "ads"]      # optional: default every team with direct cost
    effective_from = 2026-01-01
    percentages = { search = "60", ads = "40" }   # fixed only; must sum to 100

A project mapping beats its team's mapping. Rules run in file order; a pool's amount
is what it holds when its rule runs (its direct cost plus what earlier rules gave it).
A file is refused as a whole: every problem is reported as ``FILE:LINE: problem; fix``.
"""

from __future__ import annotations

import datetime as dt
import re
import tomllib
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path

from models.toml_files import key_line
from spendwatch.errors import AllocationFileError

__all__ = ["METHODS", "UNALLOCATED", "AllocationConfig", "CostCentre", "SharedCostRule",
           "load_allocation_file", "parse_allocation_file"]

#: The pool name of events with no team.
UNALLOCATED = "unallocated"
METHODS = ("proportional", "even", "fixed")
_CC_KEYS = ("code", "name", "teams", "projects", "effective_from", "effective_until")
_RULE_KEYS = ("name", "pool", "method", "targets", "percentages", "effective_from",
              "effective_until")
_HUNDRED = Decimal(100)


@dataclass(frozen=True)
class CostCentre:
    code: str
    name: str
    teams: tuple[str, ...]
    projects: tuple[tuple[str, str], ...]
    effective_from: dt.date | None
    effective_until: dt.date | None
    line: int = 0

    def covers(self, month: dt.date) -> bool:
        return _covers(self.effective_from, self.effective_until, month)


@dataclass(frozen=True)
class SharedCostRule:
    name: str
    pool: str
    method: str
    targets: tuple[str, ...] | None
    percentages: tuple[tuple[str, Decimal], ...]
    effective_from: dt.date
    effective_until: dt.date | None
    line: int = 0

    def covers(self, month: dt.date) -> bool:
        return _covers(self.effective_from, self.effective_until, month)

    @property
    def pool_team(self) -> str:
        """The team value of the pool ('' for unallocated)."""
        return "" if self.pool == UNALLOCATED else self.pool


@dataclass(frozen=True)
class AllocationConfig:
    cost_centres: tuple[CostCentre, ...] = ()
    rules: tuple[SharedCostRule, ...] = ()
    source: str = ""
    text: str = field(default="", compare=False)

    def rules_for(self, month: dt.date) -> list[SharedCostRule]:
        return [r for r in self.rules if r.covers(month)]

    def cost_centre_of(self, team: str, project: str, month: dt.date) -> str:
        """The cost centre code of (team, project) in ``month``; '' when unmapped."""
        team_hit = ""
        for cc in self.cost_centres:
            if not cc.covers(month):
                continue
            if (team, project) in cc.projects:
                return cc.code
            if team in cc.teams and not team_hit:
                team_hit = cc.code
        return team_hit

    def in_force(self, month: dt.date) -> tuple[object, ...]:
        """Everything that decides ``month``'s allocation (compared before a new file
        replaces this one while the month is closed)."""
        centres = tuple((c.code, c.teams, c.projects) for c in self.cost_centres
                        if c.covers(month))
        rules = tuple((r.pool, r.method, r.targets, r.percentages)
                      for r in self.rules_for(month))
        return centres, rules

    def names(self) -> tuple[set[str], set[tuple[str, str]]]:
        """The teams and (team, project) pairs the file names."""
        teams: set[str] = set()
        projects: set[tuple[str, str]] = set()
        for cc in self.cost_centres:
            teams.update(cc.teams)
            projects.update(cc.projects)
        for r in self.rules:
            if r.pool != UNALLOCATED:
                teams.add(r.pool)
            teams.update(r.targets or ())
            teams.update(name for name, _ in r.percentages)
        return teams, projects


def load_allocation_file(path: str | Path) -> AllocationConfig:
    """Read and validate an allocation file (see the module docstring)."""
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise AllocationFileError(f"{name}: no such file; check the path given to "
                                  f"`spendwatch allocation apply`") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise AllocationFileError(f"{name}: cannot be read ({exc}); save it as UTF-8 text "
                                  f"and check its permissions") from None
    return parse_allocation_file(text, name)


def parse_allocation_file(text: str, file: str = "allocation.toml", *,
                          known_teams: Collection[str] | None = None,
                          known_projects: Collection[tuple[str, str]] | None = None
                          ) -> AllocationConfig:
    """Validate the text of an allocation file; with ``known_teams`` /
    ``known_projects`` also refuse names never seen in usage."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        found = re.search(r"at line (\d+)", str(exc))
        line = int(found.group(1)) if found else 1
        raise _refused(file, [(line, f"not valid TOML: {exc}",
                               'fix the syntax on that line (text needs quotes: '
                               'code = "CC-1"; dates are written 2026-01-01)')]) from None
    lines = text.splitlines()
    problems: list[tuple[int, str, str]] = []
    for key in data:
        if key not in ("cost_centre", "rule"):
            problems.append((key_line(lines, key, 0, len(lines)), f"unknown table {key!r}",
                             "use [[cost_centre]] and [[rule]] tables only"))
    centres: list[CostCentre] = []
    rules: list[SharedCostRule] = []
    for kind, parse in (("cost_centre", _cost_centre), ("rule", _rule)):
        entries = data.get(kind, [])
        if not isinstance(entries, list):
            problems.append((key_line(lines, kind, 0, len(lines)), f"{kind!r} is not a list",
                             f"start each with [[{kind}]] (double brackets)"))
            continue
        headers = [i + 1 for i, t in enumerate(lines)
                   if re.match(rf"^\s*\[\[\s*{kind}\s*\]\]", t)]
        for index, entry in enumerate(entries):
            start = headers[index] if index < len(headers) else 1
            end = next((i for i in range(start, len(lines))
                        if re.match(r"^\s*\[\[", lines[i])), len(lines))

            def at(key: str | None, start: int = start, end: int = end) -> int:
                return start if key is None else key_line(lines, key, start - 1, end, start)

            found = parse(entry, at, problems.append, start)
            if isinstance(found, CostCentre):
                centres.append(found)
            elif isinstance(found, SharedCostRule):
                rules.append(found)
    _overlaps(centres, problems)
    config = AllocationConfig(tuple(centres), tuple(rules), file, text)
    if known_teams is not None:
        _unknown_names(config, set(known_teams), set(known_projects or ()), problems)
    if problems:
        raise _refused(file, problems)
    return config


# -- entries ----------------------------------------------------------------------------
Problem = tuple[int, str, str]


def _cost_centre(entry: dict[str, object], at: Callable[[str | None], int],
                 add: Callable[[Problem], None], line: int) -> CostCentre | None:
    before = _Counter(add)
    for key in entry:
        if key not in _CC_KEYS:
            before(at(key), f"unknown key {key!r} in [[cost_centre]]",
                   f"the known keys are {', '.join(_CC_KEYS)}")
    code = entry.get("code")
    if not isinstance(code, str) or not code.strip():
        before(at("code" if "code" in entry else None), "a cost centre needs a code",
               'add code = "CC-1001"')
    teams = _names(entry, "teams", at, before)
    projects: list[tuple[str, str]] = []
    for value in _names(entry, "projects", at, before):
        team, sep, project = value.partition("/")
        if not sep or not team or not project:
            before(at("projects"), f"project {value!r} does not name its team",
                   'write projects as "team/project", e.g. "search/ranker"')
        else:
            projects.append((team, project))
    if not teams and not projects and "teams" not in entry and "projects" not in entry:
        before(line, "the cost centre maps nothing",
               'add teams = ["search"] and/or projects = ["search/ranker"]')
    start, until = _period(entry, at, before, required=False)
    if before.count:
        return None
    return CostCentre(str(code).strip(), str(entry.get("name") or code), tuple(teams),
                      tuple(projects), start, until, line)


def _rule(entry: dict[str, object], at: Callable[[str | None], int],
          add: Callable[[Problem], None], line: int) -> SharedCostRule | None:
    bad = _Counter(add)
    for key in entry:
        if key not in _RULE_KEYS:
            bad(at(key), f"unknown key {key!r} in [[rule]]",
                f"the known keys are {', '.join(_RULE_KEYS)}")
    pool = entry.get("pool")
    if not isinstance(pool, str) or not pool.strip():
        bad(at("pool" if "pool" in entry else None), "a rule needs a pool",
            f'add pool = "{UNALLOCATED}" (events with no team) or pool = "platform" (a team)')
    method = entry.get("method")
    if method not in METHODS:
        bad(at("method" if "method" in entry else None),
            f"method = {method!r} is not a way to split" if "method" in entry
            else "a rule needs a method", f"use one of {', '.join(METHODS)}")
    targets = _names(entry, "targets", at, bad) if "targets" in entry else None
    if targets is not None and not targets:
        bad(at("targets"), "targets is empty", "name at least one team, or leave it out")
    if targets and isinstance(pool, str) and pool in targets:
        bad(at("targets"), f"the pool {pool!r} is also a target",
            "remove it from targets: a pool is spread over the other teams")
    shares: list[tuple[str, Decimal]] = []
    raw = entry.get("percentages")
    if method == "fixed":
        if not isinstance(raw, dict) or not raw:
            bad(at("percentages" if raw is not None else None),
                "a fixed split needs its percentages",
                'add percentages = { search = "60", ads = "40" } (they sum to 100)')
        else:
            for team, value in raw.items():
                try:
                    pct = Decimal(str(value).strip())
                except InvalidOperation:
                    pct = Decimal(-1)
                if isinstance(value, bool | float) or not pct.is_finite() or pct <= 0:
                    bad(at("percentages"), f"percentage {team} = {value!r} is not a positive "
                        "number", f'write it as text or an integer: {team} = "12.5"')
                else:
                    shares.append((str(team), pct))
            total = sum((p for _, p in shares), Decimal(0))
            if len(shares) == len(raw) and total != _HUNDRED:
                bad(at("percentages"), f"the percentages sum to {total}, not 100",
                    "change them so they add up to exactly 100")
            if isinstance(pool, str) and pool in raw:
                bad(at("percentages"), f"the pool {pool!r} has a percentage",
                    "a pool is spread over the other teams: remove it")
            if targets is not None:
                bad(at("targets"), "a fixed split takes its teams from percentages",
                    "remove targets")
    elif raw is not None:
        bad(at("percentages"), f"percentages are only used by method = \"fixed\", "
            f"not {method!r}", "remove them, or set method = \"fixed\"")
    start, until = _period(entry, at, bad, required=True)
    if bad.count:
        return None
    return SharedCostRule(str(entry.get("name") or f"rule at line {line}"), str(pool).strip(),
                          str(method), tuple(targets) if targets is not None else None,
                          tuple(shares), start, until, line)  # type: ignore[arg-type]


class _Counter:
    def __init__(self, add: Callable[[Problem], None]) -> None:
        self.add, self.count = add, 0

    def __call__(self, line: int, problem: str, fix: str) -> None:
        self.count += 1
        self.add((line, problem, fix))


def _names(entry: dict[str, object], key: str, at: Callable[[str | None], int],
           bad: _Counter) -> list[str]:
    value = entry.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip()
                                              for v in value):
        bad(at(key), f"{key} is not a list of names", f'write {key} = ["a", "b"]')
        return []
    return [v.strip() for v in value]


def _period(entry: dict[str, object], at: Callable[[str | None], int], bad: _Counter, *,
            required: bool) -> tuple[dt.date | None, dt.date | None]:
    start = entry.get("effective_from")
    until = entry.get("effective_until")
    if start is None and required:
        bad(at(None), "missing effective_from",
            "add effective_from = 2026-01-01 (the first day of the first month it covers)")
    if start is not None and not (_is_date(start) and start.day == 1):  # type: ignore[union-attr]
        bad(at("effective_from"), f"effective_from = {start} is not the first day of a month",
            "allocation is monthly: use a date such as 2026-04-01")
        start = None
    if until is not None:
        last = (_is_date(until) and (until + dt.timedelta(days=1)).day == 1)  # type: ignore[operator]
        if not last:
            bad(at("effective_until"), f"effective_until = {until} is not the last day of a "
                "month", "use a date such as 2026-06-30 (it covers that whole month)")
            until = None
        elif start is not None and until < start:  # type: ignore[operator]
            bad(at("effective_until"), f"effective_until {until} is before effective_from "
                f"{start}", "swap them")
    return start, until  # type: ignore[return-value]


def _is_date(value: object) -> bool:
    return isinstance(value, dt.date) and not isinstance(value, dt.datetime)


def _covers(start: dt.date | None, until: dt.date | None, month: dt.date) -> bool:
    return (start is None or start <= month) and (until is None or month <= until)


def _overlaps(centres: Sequence[CostCentre], problems: list[Problem]) -> None:
    seen: dict[object, CostCentre] = {}
    for cc in centres:
        for name in (*cc.teams, *cc.projects):
            other = seen.get(name)
            if other is not None and _periods_meet(other, cc):
                shown = "/".join(name) if isinstance(name, tuple) else name
                problems.append((cc.line, f"{shown!r} is mapped to {other.code} (line "
                                 f"{other.line}) and to {cc.code} for the same months",
                                 "map it once, or give the two entries effective dates that "
                                 "do not overlap"))
            seen[name] = cc


def _periods_meet(a: CostCentre, b: CostCentre) -> bool:
    lo = max(a.effective_from or dt.date.min, b.effective_from or dt.date.min)
    hi = min(a.effective_until or dt.date.max, b.effective_until or dt.date.max)
    return lo <= hi


def _unknown_names(config: AllocationConfig, teams: set[str], projects: set[tuple[str, str]],
                   problems: list[Problem]) -> None:
    shown_teams = ", ".join(sorted(t for t in teams if t)) or "none yet"
    for cc in config.cost_centres:
        for team in cc.teams:
            if team not in teams:
                problems.append((cc.line, f"team {team!r} has no recorded usage",
                                 f"check the spelling; known teams: {shown_teams}"))
        for team, project in cc.projects:
            if (team, project) not in projects:
                known = ", ".join(sorted(f"{t}/{p}" for t, p in projects if p)) or "none yet"
                problems.append((cc.line, f"project {team}/{project} has no recorded usage",
                                 f"check the spelling; known projects: {known}"))
    for rule in config.rules:
        named = [rule.pool] if rule.pool != UNALLOCATED else []
        named += [*(rule.targets or ()), *(t for t, _ in rule.percentages)]
        for team in named:
            if team not in teams:
                problems.append((rule.line, f"team {team!r} has no recorded usage",
                                 f"check the spelling; known teams: {shown_teams} (events "
                                 f"with no team are the pool {UNALLOCATED!r})"))


def _refused(file: str, problems: list[Problem]) -> AllocationFileError:
    problems = sorted(problems, key=lambda p: p[0])
    n = len(problems)
    error = AllocationFileError(
        f"{file}: refused, nothing was applied ({n} problem{'s' if n != 1 else ''}):\n"
        + "\n".join(f"{file}:{line}: {problem}; {fix}" for line, problem, fix in problems))
    error.problems = problems  # type: ignore[attr-defined]
    return error
