"""Which price applies to a model on a day: the organisation's own rows first, then
the ``genai-prices`` list prices: the data ``spendwatch prices update`` stored in the
database (``models.price_library``) when there is some, else the data bundled with the
library (offline).

A :class:`PriceRow` is what a cost is computed from; its ``ref`` is recorded beside
the cost and its ``why`` explains the choice in one sentence.

Matching rules (the same for ``list`` and ``contract`` org rows):

* an exact model name beats a prefix pattern (``"ft:gpt-4o-mini*"``), and the
  longest matching prefix beats a shorter one;
* a row for the exact tier beats one for ``"*"``;
* then the row with the latest ``effective_from`` on or before the day applies.

Tiers: ``None``, ``""``, ``"auto"`` and ``"default"`` are ``default``; a batch call
is priced at the ``batch`` rate whatever its tier. Days are UTC calendar days.
A model nobody knows has no price (``None``): never a default price, never $0. The
same holds for a rate nobody knows: a flex, priority or batch call of a model whose
list price has no such rate (on that day), or a service tier spendwatch does not know,
is unpriced rather than priced at the standard rate (an org row can price it);
``PriceBook.why_unpriced`` says which.

Long-context rates (``models.long_context``): ``long_context`` is the threshold a
request's input exceeded (0: none); the library's rate above that threshold then
applies to every token of the request. An org row has one rate whatever the length.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from genai_prices import __version__ as _LIBRARY_VERSION
from genai_prices import types as gp
from sqlalchemy import Engine

from models._library_prices import all_prices as _all_prices
from models._library_prices import base_price as _base_price
from models._library_prices import clean as _clean
from models._library_prices import describe_match as _describe_match
from models._library_prices import openai_provider as _openai_provider
from models._library_prices import variants as _variants
from models.long_context import rate as _rate
from models.long_context import thresholds_of
from models.org_prices import KINDS, ORG_TIERS, REF_MAX, OrgPrice, read_org_prices
from models.schema import PRICE_COLUMNS

__all__ = [
    "KINDS",
    "LIBRARY_LABEL",
    "ORG_TIERS",
    "OrgPrice",
    "PriceBook",
    "PriceRow",
    "format_price",
    "normalise_tier",
    "read_org_prices",
]

#: How the bundled list prices are named in ``PriceRow.ref``.
LIBRARY_LABEL = f"genai-prices {_LIBRARY_VERSION}"

_DEFAULT_ALIASES = ("", "auto", "default")
_KNOWN_TIERS = ("default", "flex", "priority")
# the genai-prices ModelPrice attribute of each of our price columns
_LIBRARY_KEYS = dict(zip(PRICE_COLUMNS, ("input_mtok", "cache_read_mtok", "cache_write_mtok",
                                         "output_mtok", "input_audio_mtok", "output_audio_mtok"),
                         strict=True))


@dataclass(frozen=True)
class PriceRow:
    """USD per million tokens for one model, tier and day, and where it came from."""

    ref: str
    source: str
    kind: str
    model: str
    service_tier: str
    effective_from: dt.date | None
    input_per_mtok: Decimal
    cached_input_per_mtok: Decimal | None
    cache_write_per_mtok: Decimal | None
    output_per_mtok: Decimal
    audio_input_per_mtok: Decimal | None
    audio_output_per_mtok: Decimal | None
    why: str


def normalise_tier(service_tier: str | None, is_batch: bool) -> tuple[str, bool]:
    """(tier, known): the tier a call is priced at; ``known`` is False for a tier
    spendwatch does not know (only a price that names it, or an org row for every
    tier, prices it)."""
    if is_batch:
        return "batch", True
    tier = (service_tier or "").strip().lower()
    if tier in _DEFAULT_ALIASES:
        return "default", True
    return tier, tier in _KNOWN_TIERS


def format_price(value: Decimal | None) -> str:
    """A price for display: no exponent, no trailing zeros; '' for None."""
    if value is None:
        return ""
    return format(_clean(value), "f")


class PriceBook:
    """Every price spendwatch knows: org rows plus the bundled genai-prices data."""

    def __init__(self, org_rows: Sequence[OrgPrice] = (), *,
                 library: Sequence[gp.Provider] | None = None,
                 library_label: str = LIBRARY_LABEL) -> None:
        if library is None:
            from genai_prices.data import providers as library
        self.org_rows: tuple[OrgPrice, ...] = tuple(org_rows)
        self.library_label = library_label
        self._openai = _openai_provider(library)
        self._by_kind = {kind: [r for r in self.org_rows if r.kind == kind] for kind in KINDS}
        self._models: dict[str, gp.ModelInfo | None] = {}
        self._cache: dict[tuple[str, str, str | None, bool, dt.date, int], PriceRow | None] = {}
        self._unpriced: dict[tuple[str, str | None, bool, dt.date], str] = {}
        self._thresholds: tuple[int, ...] | None = None

    @classmethod
    def load(cls, engine: Engine) -> PriceBook:
        """The org rows stored in ``engine`` plus the genai-prices data in use: the data
        stored by ``spendwatch prices update`` (``price_library``), else the bundled data.
        ``library_label`` names which."""
        from models.price_library import library_in_use

        with engine.connect() as conn:
            rows = read_org_prices(conn)
            stored = library_in_use(conn)
        if stored is None:
            return cls(rows)
        snapshot, providers = stored
        return cls(rows, library=providers, library_label=snapshot.label)

    @classmethod
    def from_rows(cls, org_rows: Sequence[OrgPrice]) -> PriceBook:
        """A price book without a database (tests, dry runs)."""
        return cls(org_rows)

    # -- lookups --------------------------------------------------------------------
    def list_price(self, model: str, service_tier: str | None, is_batch: bool,
                   on: dt.date, long_context: int = 0) -> PriceRow | None:
        """The list price of ``model`` on UTC day ``on`` for requests whose input
        exceeded ``long_context`` tokens (a threshold, see ``context_thresholds``; 0
        for none): an org ``list`` row, else genai-prices; None when it is unpriced."""
        return self._cached("list", model, service_tier, is_batch, on, long_context)

    def contract_price(self, model: str, service_tier: str | None, is_batch: bool,
                       on: dt.date, long_context: int = 0) -> PriceRow | None:
        """The contracted price (org ``contract`` rows only); None without a contract."""
        return self._cached("contract", model, service_tier, is_batch, on, long_context)

    @property
    def context_thresholds(self) -> tuple[int, ...]:
        """The input-token thresholds above which some OpenAI model of the list-price
        data has a long-context rate, ascending (``models.long_context``)."""
        if self._thresholds is None:
            values = [getattr(price, key, None)
                      for info in (self._openai.models if self._openai else ())
                      for price in _all_prices(info) for key in _LIBRARY_KEYS.values()]
            self._thresholds = thresholds_of(values)
        return self._thresholds

    def why_unpriced(self, model: str, service_tier: str | None, is_batch: bool,
                     on: dt.date) -> str:
        """Why ``list_price`` is None for these arguments, in one sentence."""
        if self.list_price(model, service_tier, is_batch, on) is not None:
            return f"{model} has a list price"
        found = self._unpriced.get((model, service_tier, bool(is_batch), _utc_day(on)))
        return found or (f"neither org_prices nor {self.library_label} has a price for "
                         f"{model}")

    def models_without_price(self, seen: Iterable[tuple[str, str | None, bool]],
                             on: dt.date) -> list[tuple[str, str | None, bool]]:
        """The (model, service_tier, is_batch) of ``seen`` that have no list price on
        ``on``, each once, in the order first seen."""
        out: list[tuple[str, str | None, bool]] = []
        for item in dict.fromkeys(seen):
            if self.list_price(*item, on) is None:
                out.append(item)
        return out

    # -- internals --------------------------------------------------------------------
    def _cached(self, kind: str, model: str, service_tier: str | None, is_batch: bool,
                on: dt.date, long_context: int) -> PriceRow | None:
        on = _utc_day(on)
        key = (kind, model, service_tier, bool(is_batch), on, long_context)
        if key not in self._cache:
            tier, known = normalise_tier(service_tier, is_batch)
            row = self._org_row(kind, model, service_tier, tier, known, on, long_context)
            if row is None and kind == "list":
                row = self._library_row(model, service_tier, tier, known, is_batch, on,
                                        long_context)
            self._cache[key] = row
        return self._cache[key]

    def _org_row(self, kind: str, model: str, raw_tier: str | None, tier: str, known: bool,
                 on: dt.date, long_context: int) -> PriceRow | None:
        tier_for_org = tier if known else "*"  # an unknown tier: only a row for every tier
        # Responses name dated snapshots (gpt-4o-2024-08-06): a row for the model the
        # price library maps the snapshot to (gpt-4o) covers it too.
        canonical = None
        if self._by_kind[kind]:
            info = self._find_model(model)
            canonical = info.id if info is not None and info.id != model else None
        best: tuple[tuple[int, int, int, dt.date], OrgPrice] | None = None
        for row in self._by_kind[kind]:
            if row.effective_from > on or row.service_tier not in (tier_for_org, "*"):
                continue
            if row.model == model:
                model_rank = (2, len(model))
            elif row.model.endswith("*") and model.startswith(row.model[:-1]):
                model_rank = (1, len(row.model) - 1)
            elif canonical is not None and row.model == canonical:
                model_rank = (0, 0)
            else:
                continue
            rank = (*model_rank, int(row.service_tier != "*"), row.effective_from)
            if best is None or rank > best[0]:
                best = (rank, row)
        if best is None:
            return None
        row = best[1]
        if row.model == model:
            how = f"exact model {model}"
        elif row.model.endswith("*") and model.startswith(row.model[:-1]):
            how = f"{model} matches the prefix {row.model!r} (the longest that matches)"
        else:
            how = f"{model} is a snapshot of {row.model} (per {self.library_label})"
        tier_text = (f"tier {row.service_tier}" if row.service_tier != "*"
                     else f"tier * (no {tier_for_org} row in effect)")
        note = "" if known else f"; the service tier {raw_tier!r} is not one spendwatch knows"
        if long_context:
            note += (f"; the request's input exceeded {long_context:,} tokens, and an org row "
                     f"has one rate whatever the length")
        why = (f"org {kind} row: {how}, {tier_text}, effective from "
               f"{row.effective_from.isoformat()} (the latest on or before {on.isoformat()})"
               f"{note}" + (f"; note: {row.note}" if row.note else ""))
        return PriceRow(ref=row.ref, source="org", kind=kind, model=row.model,
                        service_tier=row.service_tier, effective_from=row.effective_from,
                        **{name: getattr(row, name) for name in PRICE_COLUMNS}, why=why + ".")

    def _find_model(self, model: str) -> gp.ModelInfo | None:
        if model not in self._models:
            found = self._openai.find_model(model) if self._openai and model else None
            self._models[model] = found
        return self._models[model]

    def _library_row(self, model: str, raw_tier: str | None, tier: str, known: bool,
                     is_batch: bool, on: dt.date, long_context: int) -> PriceRow | None:
        info = self._find_model(model)
        if info is None:
            return None
        base, base_start, base_text = _base_price(info, on)
        variant_tiers = {v.when.get("service_tier") for v in info.price_variants or ()}
        notes: list[str] = []
        unpriced = (model, raw_tier, is_batch, on)
        if not known and tier not in variant_tiers:
            self._unpriced[unpriced] = (
                f"the service tier {raw_tier!r} is neither one spendwatch knows (default, "
                f"flex, priority, batch) nor one {self.library_label} prices for {info.id}, "
                f"so its rate is unknown; an org row with service_tier = \"*\" would price it")
            return None
        context = {"processing": "batch"} if is_batch else {"service_tier": tier}
        active, later = _variants(info, context, on)
        if tier != "default" and not active:
            starts = (f" (its {tier} rate starts {min(later).isoformat()})" if later else "")
            self._unpriced[unpriced] = (
                f"{self.library_label} has no {tier} rate for {info.id} on {on.isoformat()}"
                f"{starts}, and the standard rate is not what a {tier} call costs; add an "
                f"org row for tier {tier!r} to price it")
            return None
        values: dict[str, Decimal | None] = {}
        tiered: list[str] = []
        threshold = 1 << 62
        above = 0  # the tier start of the long-context rate applied, 0 for none
        used_variant: set[dt.date | None] = set()
        for ours, theirs in _LIBRARY_KEYS.items():
            value: Decimal | gp.TieredPrices | None = None
            for start, prices in active:
                value = getattr(prices, theirs, None)
                if value is not None:
                    used_variant.add(start)
                    break
            if value is None:
                value = getattr(base, theirs, None)
            if isinstance(value, gp.TieredPrices):
                tiered.append(ours.removesuffix("_per_mtok").replace("_", " "))
                threshold = min([threshold, *(t.start for t in value.tiers)])
                value, start = _rate(value, long_context)
                above = max(above, start)
            values[ours] = _clean(value) if isinstance(value, Decimal) else None
        if values["input_per_mtok"] is None:
            return None  # priced per request, second or character: not by the token
        if values["output_per_mtok"] is None:
            values["output_per_mtok"] = Decimal(0)
            notes.append("the library lists no output price (an input-only model such as "
                         "embeddings), so output tokens are priced at 0")
        if above:
            notes.append(f"long context: the request's input exceeded {above:,} tokens, so "
                         f"the library's rate above {above:,} applies to {', '.join(tiered)}")
        elif tiered:
            notes.append(f"long context: the base rate, for requests of at most "
                         f"{threshold:,} input tokens (the library charges more above that "
                         f"for {', '.join(tiered)})")
        variant_starts = [d for d in used_variant if d is not None]
        starts = [d for d in (base_start, *variant_starts) if d is not None]
        effective = max(starts) if starts else None
        row_tier = tier if used_variant else "default"
        ref = f"{self.library_label}: openai/{info.id} {row_tier}"
        if effective is not None:
            ref += f" from {effective.isoformat()}"
        if above:
            ref += f", input over {above:,} tokens"
        variant_text = ""
        if used_variant:
            variant_text = f", overlaid with its {tier} rate" + (
                f" from {max(variant_starts).isoformat()}" if variant_starts else "")
        why = (f"{self.library_label} list price: {model} is openai/{info.id} "
               f"({_describe_match(info, model)}); {base_text}{variant_text}"
               + "".join(f"; {n}" for n in notes) + ".")
        return PriceRow(ref=ref[:REF_MAX], source="genai-prices", kind="list", model=info.id,
                        service_tier=row_tier, effective_from=effective, **values,  # type: ignore[arg-type]
                        why=why)


def _utc_day(on: dt.date) -> dt.date:
    if isinstance(on, dt.datetime):
        return (on if on.tzinfo is None else on.astimezone(dt.UTC)).date()
    return on
