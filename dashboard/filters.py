"""What a page shows, read from its URL query string (so a view can be shared) or
from its controls, checked the same way both times.

Nothing here trusts its input: a value that does not parse, an inverted range, a
dimension that does not exist or a value too long to be a tag becomes a message
for the page (and a sensible default), never an exception. Values are only ever
used as bind parameters by :mod:`dashboard.queries`."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

__all__ = ["DIMENSIONS", "FILTER_PARAMS", "GRANULARITIES", "MAX_DAYS", "NO_TAG", "View",
           "as_list", "option", "parse_month", "parse_view", "query_string"]

#: URL parameter -> rollup column, in the order the Costs page offers them.
DIMENSIONS: dict[str, str] = {"model": "model", "team": "team", "project": "project",
                              "user": "user", "endpoint": "endpoint", "tier": "service_tier"}
#: Filter parameters (repeatable: ``?model=a&model=b``).
FILTER_PARAMS = tuple(DIMENSIONS)
GRANULARITIES = ("day", "week", "month")
#: The longest range a page will read (about three years of daily rows).
MAX_DAYS = 1100
_MAX_VALUE = 200  # tag columns are String(200)
#: How a filter names "recorded without this tag" (stored as '' in the rollups).
NO_TAG = "(none)"


def option(value: str) -> dict[str, str]:
    """A dropdown option for a stored tag value ('' is shown and sent as NO_TAG)."""
    shown = value or NO_TAG
    return {"label": shown, "value": shown}


def as_list(value: object) -> list[str]:
    """A query value (one string, several, or none) as a list of strings."""
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, Sequence):
        return [str(v) for v in value if v is not None and v != ""]
    return [str(value)]


def _one(value: object) -> str | None:
    values = as_list(value)
    return values[-1] if values else None


def _shown(text: str) -> str:
    """A user-supplied value, shortened for a message (the page escapes it)."""
    return repr(text if len(text) <= 60 else text[:57] + "...")


def _parse_date(name: str, raw: str | None, problems: list[str]) -> dt.date | None:
    if raw is None:
        return None
    try:
        value = dt.date.fromisoformat(raw[:10]) if len(raw) >= 10 else None
        if value is None or raw[10:].strip("T0:Z ") != "":
            raise ValueError(raw)
    except ValueError:
        problems.append(f"{name} date {_shown(raw)} is not a date (use YYYY-MM-DD, e.g. "
                        f"2026-03-01); showing the default range instead.")
        return None
    if not dt.date(2000, 1, 1) <= value <= dt.date(2100, 1, 1):
        problems.append(f"{name} date {value} is out of range; showing the default range.")
        return None
    return value


@dataclass(frozen=True)
class View:
    """A checked view: local days ``start``..``end`` (inclusive, reporting timezone)."""

    start: dt.date
    end: dt.date
    by: str = "model"
    granularity: str = "day"
    filters: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    problems: tuple[str, ...] = ()

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def columns(self) -> dict[str, tuple[str, ...]]:
        """Filters keyed by rollup column."""
        return {DIMENSIONS[k]: v for k, v in self.filters.items() if v}


def parse_view(query: Mapping[str, object], *, today: dt.date, default_days: int = 30,
               by_choices: Sequence[str] = tuple(DIMENSIONS), default_by: str = "model"
               ) -> View:
    """Read ``start``, ``end``, ``by``, ``granularity`` and the filter parameters."""
    problems: list[str] = []
    start = _parse_date("start", _one(query.get("start")), problems)
    end = _parse_date("end", _one(query.get("end")), problems)
    if end is None:
        end = today
    if start is None:
        start = end - dt.timedelta(days=default_days - 1)
    if start > end:
        problems.append(f"the range starts ({start}) after it ends ({end}); the dates "
                        f"were swapped.")
        start, end = end, start
    if (end - start).days + 1 > MAX_DAYS:
        start = end - dt.timedelta(days=MAX_DAYS - 1)
        problems.append(f"ranges are limited to {MAX_DAYS} days; showing {start} to {end}.")

    by = _one(query.get("by")) or default_by
    if by not in by_choices:
        problems.append(f"cannot group by {_shown(by)}; choose one of "
                        f"{', '.join(by_choices)}. Grouping by {default_by}.")
        by = default_by
    granularity = _one(query.get("granularity")) or "day"
    if granularity not in GRANULARITIES:
        problems.append(f"granularity {_shown(granularity)} is not one of "
                        f"{', '.join(GRANULARITIES)}; showing days.")
        granularity = "day"

    filters: dict[str, tuple[str, ...]] = {}
    for name in FILTER_PARAMS:
        kept: list[str] = []
        for value in as_list(query.get(name)):
            if len(value) > _MAX_VALUE or not value.isprintable():
                problems.append(f"{name} filter {_shown(value)} is not a valid value "
                                f"(too long or with control characters); ignored.")
            elif value not in kept:
                kept.append("" if value == NO_TAG else value)
        if kept:
            filters[name] = tuple(kept)
    return View(start=start, end=end, by=by, granularity=granularity, filters=filters,
                problems=tuple(problems))


def parse_month(raw: object, *, today: dt.date) -> tuple[dt.date, str | None]:
    """``YYYY-MM`` (or a date in the month) -> the first day of the month; the
    current month and a message when it does not parse."""
    text = _one(raw)
    current = today.replace(day=1)
    if text is None:
        return current, None
    try:
        year, month = text[:7].split("-")
        value = dt.date(int(year), int(month), 1)
        if len(text) not in (7, 10) or not dt.date(2000, 1, 1) <= value <= dt.date(2100, 1, 1):
            raise ValueError(text)
    except ValueError:
        return current, (f"month {_shown(text)} is not a month (use YYYY-MM, e.g. "
                         f"{current:%Y-%m}); showing {current:%Y-%m}.")
    return value, None


def query_string(params: Mapping[str, object]) -> str:
    """The query string of a view (for links), empty values left out."""
    from urllib.parse import urlencode

    pairs = [(k, v) for k, value in params.items() for v in as_list(value)]
    return "?" + urlencode(pairs) if pairs else ""
