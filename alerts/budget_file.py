"""The budget file (TOML): budgets and alert rules, validated as a whole.

A file is refused as a whole: every problem is collected and reported together,
each as ``FILE:LINE: problem; fix``, and nothing is applied. The format is in the
README ("Budgets and alerts") and in ``spendwatch budgets apply --help``.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path

from alerts.reconciliation_drift import DRIFT_DEFAULTS, DRIFT_KIND, drift_params
from models.toml_files import FileProblem, key_line, refused
from spendwatch.errors import BudgetFileError

__all__ = ["DEFAULT_THRESHOLDS", "MODES", "PERIODS", "RULE_KINDS", "SCOPE_KEYS", "BudgetFile",
           "BudgetSpec", "RuleSpec", "load_budget_file", "money_text", "parse_budget_file",
           "scope_key"]

PERIODS = ("daily", "weekly", "monthly")
MODES = ("notify", "block", "downgrade")
SCOPE_KEYS = ("team", "project", "model", "user")
COST_BASES = ("contract", "list")
DEFAULT_THRESHOLDS = (50, 80, 90, 100)
ERROR_CLASSES = ("rate_limit", "client", "server", "network")
#: Each rule kind and its settings with their defaults.
RULE_KINDS: dict[str, dict[str, object]] = {
    "forecast": {"budgets": [], "min_elapsed": 25},
    "error_rate": {"by": "model", "classes": list(ERROR_CLASSES), "threshold": 5,
                   "min_requests": 20, "window_minutes": 15},
    "latency_p95": {"by": "model", "threshold_ms": 5000, "min_requests": 20,
                    "window_minutes": 15},
    "spend_spike": {"by": "team", "factor": 3, "weeks": 4, "min_spend": "1"},
    "unpriced": {},
    DRIFT_KIND: DRIFT_DEFAULTS,
}
_BY = ("model", "project", "team")
_EMAIL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
_URL = re.compile(r"^https?://[^\s/$.?#][^\s]*$", re.IGNORECASE)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.:-]{0,99}$")
_BUDGET_KEYS = ("name", "scope", "period", "amount", "cost", "thresholds", "recipients",
                "webhooks", "mode", "downgrade")
_RULE_COMMON = ("name", "kind", "recipients", "webhooks")


def money_text(amount: Decimal) -> str:
    """An amount as text without trailing zeros (PostgreSQL stores 18 places)."""
    text = format(amount, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def scope_key(scope: dict[str, str]) -> str:
    """Canonical text of a scope: ``team=search,project=ranker``, ``*`` for everything."""
    return ",".join(f"{k}={scope[k]}" for k in SCOPE_KEYS if k in scope) or "*"


@dataclass(frozen=True)
class BudgetSpec:
    name: str
    scope: dict[str, str]
    period: str
    amount: Decimal
    cost_basis: str = "contract"
    thresholds: tuple[int, ...] = DEFAULT_THRESHOLDS
    recipients: tuple[str, ...] = ()
    webhooks: tuple[str, ...] = ()
    mode: str = "notify"
    downgrade: dict[str, str] = field(default_factory=dict)
    line: int = 0

    @property
    def scope_key(self) -> str:
        return scope_key(self.scope)

    def as_json(self) -> dict[str, object]:
        """What is stored and compared (and kept in the change history)."""
        return {"scope": dict(self.scope), "period": self.period,
                "amount": money_text(self.amount), "cost_basis": self.cost_basis,
                "thresholds": list(self.thresholds), "recipients": list(self.recipients),
                "webhooks": list(self.webhooks), "mode": self.mode,
                "downgrade": dict(self.downgrade)}


@dataclass(frozen=True)
class RuleSpec:
    name: str
    kind: str
    params: dict[str, object]
    recipients: tuple[str, ...] = ()
    webhooks: tuple[str, ...] = ()
    line: int = 0

    def as_json(self) -> dict[str, object]:
        return {"kind": self.kind, "params": dict(self.params),
                "recipients": list(self.recipients), "webhooks": list(self.webhooks)}


@dataclass(frozen=True)
class BudgetFile:
    budgets: list[BudgetSpec]
    rules: list[RuleSpec]
    source: str


def load_budget_file(path: str | Path) -> BudgetFile:
    """Read and validate a budget file; :class:`BudgetFileError` lists every problem."""
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BudgetFileError(f"{name}: no such file; check the path given to "
                              f"`spendwatch budgets apply`") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BudgetFileError(f"{name}: cannot be read ({exc}); save it as UTF-8 text "
                              f"and check its permissions") from None
    return parse_budget_file(text, name)


def parse_budget_file(text: str, file: str = "budgets.toml") -> BudgetFile:
    try:
        data = tomllib.loads(text, parse_float=Decimal)
    except tomllib.TOMLDecodeError as exc:
        found = re.search(r"at line (\d+)", str(exc))
        line = int(found.group(1)) if found else 1
        raise refused(BudgetFileError, file, [FileProblem(file, line, f"not valid TOML: {exc}",
                                       'fix the syntax (text needs quotes: period = "monthly")'
                                       )]) from None
    lines = text.splitlines()
    v = _Validator(file, lines)
    for key in data:
        if key not in ("defaults", "budget", "rule"):
            v.add(v.line_of(key), f"unknown top-level key {key!r}",
                  "use [defaults], [[budget]] and [[rule]] tables only")
    defaults = data.get("defaults", {})
    if not isinstance(defaults, dict):
        v.add(v.line_of("defaults"), "'defaults' is not a table", "write it as [defaults]")
        defaults = {}
    for key in defaults:
        if key not in ("recipients", "webhooks"):
            v.add(v.line_of(key), f"unknown key {key!r} in [defaults]",
                  "[defaults] takes recipients and webhooks")
    d_recipients = v.targets(defaults.get("recipients", []), v.line_of("recipients"), "email")
    d_webhooks = v.targets(defaults.get("webhooks", []), v.line_of("webhooks"), "url")
    budgets = [v.budget(e, i, d_recipients, d_webhooks) for i, e in enumerate(v.entries(
        data, "budget"))]
    rules = [v.rule(e, i, d_recipients, d_webhooks) for i, e in enumerate(v.entries(
        data, "rule"))]
    seen: dict[tuple[str, str], int] = {}
    for spec in [*budgets, *rules]:
        if spec is None:
            continue
        kind = "budget" if isinstance(spec, BudgetSpec) else "rule"
        if (kind, spec.name) in seen:
            v.add(spec.line, f"{kind} name {spec.name!r} is used twice (first on line "
                  f"{seen[(kind, spec.name)]})", "give every budget and rule its own name")
        seen.setdefault((kind, spec.name), spec.line)
    known = {b.name for b in budgets if b is not None}
    for rule in rules:
        if rule is not None and rule.kind == "forecast":
            for name in rule.params.get("budgets", []):  # type: ignore[union-attr]
                if name not in known:
                    v.add(rule.line, f"rule {rule.name!r} names budget {name!r}, which the file "
                          f"does not define", f"use one of: {', '.join(sorted(known)) or '-'}")
    if v.problems:
        raise refused(BudgetFileError, file, v.problems)
    return BudgetFile([b for b in budgets if b is not None], [r for r in rules if r is not None],
                      file)


class _Validator:
    def __init__(self, file: str, lines: Sequence[str]) -> None:
        self.file = file
        self.lines = lines
        self.problems: list[FileProblem] = []
        self.start, self.end = 0, len(lines)

    def add(self, line: int, problem: str, fix: str) -> None:
        self.problems.append(FileProblem(self.file, line, problem, fix))

    def line_of(self, key: str) -> int:
        return key_line(self.lines, key, self.start, self.end, self.start + 1)

    def entries(self, data: dict[str, object], table: str) -> list[tuple[dict[str, object], int,
                                                                         int]]:
        entries = data.get(table, [])
        header = re.compile(rf"^\s*\[\[\s*{table}\s*\]\]")
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            self.start, self.end = 0, len(self.lines)
            self.add(self.line_of(table), f"'{table}' is not a list of tables",
                     f"start each one with a [[{table}]] line (double brackets)")
            return []
        starts = [i for i, text in enumerate(self.lines) if header.match(text)]
        out = []
        for index, entry in enumerate(entries):
            start = starts[index] if index < len(starts) else 0
            end = next((i for i in range(start + 1, len(self.lines))
                        if re.match(r"^\s*\[\[", self.lines[i])), len(self.lines))
            out.append((entry, start, end))
        return out  # type: ignore[return-value]

    def _enter(self, item: tuple[dict[str, object], int, int]) -> dict[str, object]:
        entry, self.start, self.end = item
        return entry

    def targets(self, value: object, line: int, kind: str) -> tuple[str, ...]:
        """``recipients`` (kind "email") or ``webhooks`` (kind "url"), checked."""
        what, example = (("email addresses", '["owner@example.com"]') if kind == "email"
                         else ("URLs", '["https://hooks.slack.com/services/..."]'))
        key = "recipients" if kind == "email" else "webhooks"
        value = [value] if isinstance(value, str) else value
        if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
            self.add(line, f"{key} must be a list of {what}", f"write {key} = {example}")
            return ()
        for item in value:
            if kind == "email" and not _EMAIL.fullmatch(item):
                self.add(line, f"{item!r} is not a valid email address",
                         "write a plain address such as owner@example.com (no name, no "
                         "spaces or line breaks)")
            elif kind == "url" and not _URL.fullmatch(item):
                self.add(line, f"webhook {item!r} is not an http(s) URL",
                         "use an https://... (or http://...) address")
        return tuple(value)

    def channels(self, entry: dict[str, object], defaults: tuple[tuple[str, ...], ...]
                 ) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The entry's recipients and webhooks, else those of [defaults]."""
        return tuple(  # type: ignore[return-value]
            self.targets(entry[key], self.line_of(key), kind) if key in entry else default
            for key, kind, default in (("recipients", "email", defaults[0]),
                                       ("webhooks", "url", defaults[1])))

    def _name(self, entry: dict[str, object], what: str, index: int) -> str:
        name = entry.get("name")
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            self.add(self.line_of("name") if "name" in entry else self.start + 1,
                     f"{what} #{index + 1} has no valid name ({name!r})",
                     'add name = "search-monthly" (letters, digits, space, _ . : -)')
            return f"#{index + 1}"
        return name

    def budget(self, item: tuple[dict[str, object], int, int], index: int,
               d_recipients: tuple[str, ...], d_webhooks: tuple[str, ...]) -> BudgetSpec | None:
        entry = self._enter(item)
        before = len(self.problems)
        name = self._name(entry, "budget", index)
        for key in entry:
            if key not in _BUDGET_KEYS:
                self.add(self.line_of(key), f"unknown key {key!r} in budget {name!r}",
                         f"use only {', '.join(_BUDGET_KEYS)}")
        scope: dict[str, str] = {}
        raw_scope = entry.get("scope", {})
        if not isinstance(raw_scope, dict):
            self.add(self.line_of("scope"), f"scope of budget {name!r} is not a table",
                     'write scope = { team = "search" } (omit it for all spend)')
            raw_scope = {}
        for key, value in raw_scope.items():
            if key not in SCOPE_KEYS:
                self.add(self.line_of("scope"), f"unknown scope key {key!r} in budget {name!r}",
                         f"a scope combines {', '.join(SCOPE_KEYS)}")
            elif not isinstance(value, str) or not value:
                self.add(self.line_of("scope"), f"scope {key} of budget {name!r} must be a "
                         f"non-empty string", f'write {key} = "search"')
            else:
                scope[key] = value
        period = entry.get("period")
        if period not in PERIODS:
            self.add(self.line_of("period"), f"period {period!r} of budget {name!r} does not "
                     f"exist", f"use one of {', '.join(PERIODS)}")
        amount = self._amount(entry.get("amount"), name)
        basis = entry.get("cost", "contract")
        if basis not in COST_BASES:
            self.add(self.line_of("cost"), f"cost {basis!r} of budget {name!r} is unknown",
                     'use cost = "contract" (negotiated, else list price) or "list"')
        thresholds = self._thresholds(entry.get("thresholds", list(DEFAULT_THRESHOLDS)), name)
        mode = entry.get("mode", "notify")
        if mode not in MODES:
            self.add(self.line_of("mode"), f"mode {mode!r} of budget {name!r} is unknown",
                     f"use one of {', '.join(MODES)}")
        downgrade = entry.get("downgrade", {})
        if not isinstance(downgrade, dict) or not all(
                isinstance(k, str) and isinstance(x, str) and x for k, x in downgrade.items()):
            self.add(self.line_of("downgrade"), f"downgrade of budget {name!r} is not a map "
                     f"of model names", 'write downgrade = { "gpt-4o" = "gpt-4o-mini" }')
            downgrade = {}
        if mode == "downgrade" and not downgrade:
            self.add(self.line_of("mode"), f"budget {name!r} has mode downgrade but no "
                     f"downgrade map", 'add downgrade = { "gpt-4o" = "gpt-4o-mini" }')
        recipients, webhooks = self.channels(entry, (d_recipients, d_webhooks))
        if len(self.problems) > before:
            return None
        return BudgetSpec(name, scope, str(period), amount, str(basis), thresholds, recipients,
                          webhooks, str(mode), dict(downgrade), self.start + 1)

    def _amount(self, value: object, name: str) -> Decimal:
        line = self.line_of("amount")
        if value is None or isinstance(value, bool):
            self.add(line, f"budget {name!r} has no amount", 'add amount = "500.00" (USD)')
            return Decimal(0)
        try:
            amount = Decimal(str(value))
        except InvalidOperation:
            self.add(line, f"amount {value!r} of budget {name!r} is not a number",
                     'write amount = "500.00" (USD)')
            return Decimal(0)
        if not amount.is_finite() or amount <= 0:
            self.add(line, f"amount {value} of budget {name!r} is not above zero",
                     "give a positive amount in USD, e.g. 500")
        return amount

    def _thresholds(self, value: object, name: str) -> tuple[int, ...]:
        line = self.line_of("thresholds")
        if not isinstance(value, list) or not value or not all(
                isinstance(t, int) and not isinstance(t, bool) for t in value):
            self.add(line, f"thresholds of budget {name!r} must be a list of whole "
                     f"percentages", "write thresholds = [50, 80, 90, 100]")
            return DEFAULT_THRESHOLDS
        if any(t <= 0 or t > 100 for t in value):
            self.add(line, f"thresholds {value} of budget {name!r} are not all within 1..100",
                     "give percentages of the budget from 1 to 100, e.g. [50, 80, 90, 100]")
        if value != sorted(set(value)):
            self.add(line, f"thresholds {value} of budget {name!r} are not in ascending order "
                     f"without repeats", f"write thresholds = "
                     f"{sorted({t for t in value if 0 < t <= 100})}")
        return tuple(value)

    def rule(self, item: tuple[dict[str, object], int, int], index: int,
             d_recipients: tuple[str, ...], d_webhooks: tuple[str, ...]) -> RuleSpec | None:
        entry = self._enter(item)
        before = len(self.problems)
        name = self._name(entry, "rule", index)
        kind = entry.get("kind")
        if kind not in RULE_KINDS:
            self.add(self.line_of("kind"), f"rule {name!r} has unknown kind {kind!r}",
                     f"use one of {', '.join(RULE_KINDS)}")
            return None
        defaults = RULE_KINDS[str(kind)]
        params: dict[str, object] = dict(defaults)
        for key, value in entry.items():
            if key in _RULE_COMMON or kind == DRIFT_KIND:
                continue
            if key not in defaults:
                self.add(self.line_of(key), f"unknown key {key!r} in {kind} rule {name!r}",
                         f"a {kind} rule takes {', '.join(defaults) or 'no settings'}")
                continue
            params[key] = self._param(key, value, defaults[key], name)
        if kind == DRIFT_KIND:
            params = drift_params({k: x for k, x in entry.items() if k not in _RULE_COMMON},
                                  name, self.add, self.line_of)
        recipients, webhooks = self.channels(entry, (d_recipients, d_webhooks))
        if len(self.problems) > before:
            return None
        return RuleSpec(name, str(kind), params, recipients, webhooks, self.start + 1)

    def _param(self, key: str, value: object, default: object, name: str) -> object:
        line = self.line_of(key)
        if key == "by":
            if value not in _BY:
                self.add(line, f"by {value!r} of rule {name!r} is unknown",
                         f"use one of {', '.join(_BY)}")
            return value
        if key == "classes":
            if not isinstance(value, list) or not value or any(
                    c not in ERROR_CLASSES for c in value):
                self.add(line, f"classes {value!r} of rule {name!r} are not error classes",
                         f"use a list of {', '.join(ERROR_CLASSES)}")
            return value
        if key == "budgets":
            if not isinstance(value, list) or not all(isinstance(b, str) for b in value):
                self.add(line, f"budgets of rule {name!r} must be a list of budget names",
                         'write budgets = ["search-monthly"]')
            return value
        try:
            number = Decimal(str(value))
        except InvalidOperation:
            number = Decimal(-1)
        if isinstance(value, bool) or not number.is_finite() or number <= 0:
            self.add(line, f"{key} = {value!r} of rule {name!r} is not a positive number",
                     f"give a number above zero, e.g. {key} = {default!r}")
            return default
        if key in ("min_elapsed", "threshold") and number > 100:
            self.add(line, f"{key} = {value} of rule {name!r} is over 100 %",
                     "give a percentage from 1 to 100")
        return str(number) if isinstance(default, str) else (
            int(number) if number == number.to_integral_value() else str(number))
