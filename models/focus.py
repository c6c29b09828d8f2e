"""The month as FOCUS 1.2 rows (FinOps Open Cost and Usage Specification).

One row per chargeback line (day x team x project x model x tier x endpoint) and meter
(uncached input, cached input, cache writes, output, audio in, audio out), with the
FOCUS 1.2 columns and ``x_`` columns of our own. Prices are per million tokens:
``PricingUnit`` is ``1M Tokens``, ``PricingQuantity`` = tokens / 1,000,000 and
``ListCost`` = ``ListUnitPrice`` x ``PricingQuantity`` exactly on every row (nothing is
rounded; sum and round where you need cents).

Unpriced models: the row carries its quantities, the cost and price columns are
empty (never 0) and ``x_CostSource`` is ``unpriced``.
Corrections of a closed month: ``ChargeClass`` = ``Correction``, the charge period is
the original day, the billing period is the month they were posted to, and
``x_CorrectionOf`` names the closed month.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterable
from decimal import Decimal
from zoneinfo import ZoneInfo

from models.costs import MILLION
from models.months import Line, next_month, price_json
from spendwatch.errors import SpendwatchError

__all__ = ["FOCUS_COLUMNS", "FOCUS_MANDATORY", "METERS", "X_COLUMNS", "FocusRow",
           "focus_rows"]

#: FOCUS 1.2 columns, in the specification's (alphabetical) order.
FOCUS_COLUMNS = (
    "AvailabilityZone", "BilledCost", "BillingAccountId", "BillingAccountName",
    "BillingAccountType", "BillingCurrency", "BillingPeriodEnd", "BillingPeriodStart",
    "CapacityReservationId", "CapacityReservationStatus", "ChargeCategory", "ChargeClass",
    "ChargeDescription", "ChargeFrequency", "ChargePeriodEnd", "ChargePeriodStart",
    "CommitmentDiscountCategory", "CommitmentDiscountId", "CommitmentDiscountName",
    "CommitmentDiscountQuantity", "CommitmentDiscountStatus", "CommitmentDiscountType",
    "CommitmentDiscountUnit", "ConsumedQuantity", "ConsumedUnit", "ContractedCost",
    "ContractedUnitPrice", "EffectiveCost", "InvoiceId", "InvoiceIssuerName", "ListCost",
    "ListUnitPrice", "PricingCategory", "PricingCurrency", "PricingCurrencyContractedUnitPrice",
    "PricingCurrencyEffectiveCost", "PricingCurrencyListUnitPrice", "PricingQuantity",
    "PricingUnit", "ProviderName", "PublisherName", "RegionId", "RegionName", "ResourceId",
    "ResourceName", "ResourceType", "ServiceCategory", "ServiceName", "ServiceSubcategory",
    "SkuId", "SkuMeter", "SkuPriceDetails", "SkuPriceId", "SubAccountId", "SubAccountName",
    "SubAccountType", "Tags",
)
#: Columns of our own.
X_COLUMNS = ("x_Team", "x_Project", "x_CostCenter", "x_Endpoint", "x_Model", "x_ServiceTier",
             "x_Batch", "x_Meter", "x_RequestCount", "x_ErrorCount", "x_CostSource",
             "x_PeriodStatus", "x_Correction", "x_CorrectionOf")
#: Columns that are never empty on a priced usage row.
FOCUS_MANDATORY = (
    "BilledCost", "BillingAccountId", "BillingCurrency", "BillingPeriodEnd",
    "BillingPeriodStart", "ChargeCategory", "ChargeDescription", "ChargeFrequency",
    "ChargePeriodEnd", "ChargePeriodStart", "ConsumedQuantity", "ConsumedUnit",
    "ContractedCost", "ContractedUnitPrice", "EffectiveCost", "InvoiceIssuerName", "ListCost",
    "ListUnitPrice", "PricingCategory", "PricingCurrency", "PricingQuantity", "PricingUnit",
    "ProviderName", "PublisherName", "ServiceCategory", "ServiceName", "ServiceSubcategory",
    "SkuId", "SkuPriceId", "SubAccountId", "Tags",
)
#: (meter, price column): how a line's tokens are billed.
METERS = (("input (uncached)", "input_per_mtok"), ("input (cached)", "cached_input_per_mtok"),
          ("input (cache write)", "cache_write_per_mtok"), ("output", "output_per_mtok"),
          ("audio input", "audio_input_per_mtok"), ("audio output", "audio_output_per_mtok"))
_ZERO = Decimal(0)
FocusRow = dict[str, object]


def focus_rows(lines: Iterable[Line], *, month: dt.date, closed: bool, timezone: str,
               cost_centre_of: Callable[[str, str, dt.date], str],
               prices: object | None = None,
               reconciled: set[tuple[dt.date, str]] | None = None) -> list[FocusRow]:
    """FOCUS rows of ``month``'s chargeback lines. ``prices`` (a PriceBook) is needed
    for lines of an open month (their unit prices are looked up); ``reconciled`` holds
    the (UTC day, project) pairs OpenAI's bill was compared for."""
    zone = ZoneInfo(timezone)
    billing = (_iso(dt.datetime.combine(month, dt.time(0), zone)),
               _iso(dt.datetime.combine(next_month(month), dt.time(0), zone)))
    rows: list[FocusRow] = []
    for line in lines:
        mine: list[FocusRow] = []
        unit = _unit_prices(line, prices)
        quantities = _quantities(line, unit)
        first = True
        status = "closed" if closed else "open"
        if line.correction_of is not None:
            start = dt.datetime.combine(line.price_date, dt.time(0), dt.UTC)
            period = (_iso(start), _iso(start + dt.timedelta(days=1)))
        else:
            period = (_iso(dt.datetime.combine(line.day, dt.time(0), zone)),
                      _iso(dt.datetime.combine(line.day + dt.timedelta(days=1), dt.time(0),
                                               zone)))
        cc = cost_centre_of(line.team, line.project, month)
        source = "unpriced" if unit is None else (
            "reconciled" if reconciled and (line.price_date, line.project) in reconciled
            else "estimated")
        if not any(quantities.values()) and line.counts.get("requests"):
            quantities["input_per_mtok"] = 0  # requests without tokens: keep their count
            force = True
        else:
            force = False
        for meter, column in METERS:
            tokens = quantities.get(column, 0)
            if not tokens and not (force and column == "input_per_mtok"):
                continue
            qty = Decimal(tokens) / MILLION
            list_price = contract_price = None
            if unit is not None:
                list_price = _price(unit["list"], column)
                contract_price = _price(unit["contract"], column)
                contract_price = contract_price if contract_price is not None else list_price
                if list_price is None:  # a contract for a model with no list price
                    list_price = contract_price
            list_cost = list_price * qty if list_price is not None else None
            contracted = contract_price * qty if contract_price is not None else None
            tier = line.service_tier or "default"
            sku = f"{line.model}:{'batch' if line.is_batch else tier}"
            if line.long_context:  # another unit price: the long-context rate
                sku += f":input-over-{line.long_context}"
            row: FocusRow = {
                "AvailabilityZone": None, "BilledCost": contracted,
                "BillingAccountId": "openai", "BillingAccountName": "OpenAI organization",
                "BillingAccountType": "Organization", "BillingCurrency": "USD",
                "BillingPeriodEnd": billing[1], "BillingPeriodStart": billing[0],
                "CapacityReservationId": None, "CapacityReservationStatus": None,
                "ChargeCategory": "Usage",
                "ChargeClass": "Correction" if line.correction_of else None,
                "ChargeDescription": f"{line.model} {meter} tokens ({line.endpoint})",
                "ChargeFrequency": "Usage-Based",
                "ChargePeriodEnd": period[1], "ChargePeriodStart": period[0],
                **dict.fromkeys(FOCUS_COLUMNS[16:23]),
                "ConsumedQuantity": Decimal(tokens), "ConsumedUnit": "Tokens",
                "ContractedCost": contracted, "ContractedUnitPrice": contract_price,
                "EffectiveCost": contracted, "InvoiceId": None, "InvoiceIssuerName": "OpenAI",
                "ListCost": list_cost, "ListUnitPrice": list_price,
                "PricingCategory": "Standard", "PricingCurrency": "USD",
                "PricingCurrencyContractedUnitPrice": contract_price,
                "PricingCurrencyEffectiveCost": contracted,
                "PricingCurrencyListUnitPrice": list_price,
                "PricingQuantity": qty, "PricingUnit": "1M Tokens",
                "ProviderName": "OpenAI", "PublisherName": "OpenAI",
                "RegionId": None, "RegionName": None,
                "ResourceId": f"{line.team or 'unallocated'}/{line.project}",
                "ResourceName": line.project or None, "ResourceType": "Project",
                "ServiceCategory": "AI and Machine Learning", "ServiceName": "OpenAI API",
                "ServiceSubcategory": "Generative AI", "SkuId": sku, "SkuMeter": meter,
                "SkuPriceDetails": None,
                "SkuPriceId": f"{sku}:{column}:{line.price_date.isoformat()}",
                "SubAccountId": line.project or "(none)", "SubAccountName": line.project or None,
                "SubAccountType": "Project",
                "Tags": json.dumps({"team": line.team, "project": line.project,
                                    "cost_centre": cc, "model": line.model}, sort_keys=True),
                "x_Team": line.team, "x_Project": line.project, "x_CostCenter": cc,
                "x_Endpoint": line.endpoint, "x_Model": line.model,
                "x_ServiceTier": tier, "x_Batch": line.is_batch, "x_Meter": meter,
                "x_RequestCount": line.counts.get("requests", 0) if first else 0,
                "x_ErrorCount": line.counts.get("errors", 0) if first else 0,
                "x_CostSource": source, "x_PeriodStatus": status,
                "x_Correction": line.correction_of is not None,
                "x_CorrectionOf": (f"{line.correction_of:%Y-%m}" if line.correction_of
                                   else None),
            }
            mine.append(row)
            first = False
        _check(line, mine)
        rows.extend(mine)
    return rows


def _unit_prices(line: Line, prices: object | None) -> dict[str, dict[str, Decimal] | None] | None:
    text = line.prices
    if text is None and (line.cost_list is not None or line.cost_contract is not None):
        if prices is None:
            raise SpendwatchError("the FOCUS export of an open month needs the price book")
        key = (line.model, line.service_tier, line.is_batch, line.price_date,
               line.long_context)
        text = price_json(prices.list_price(*key),  # type: ignore[attr-defined]
                          prices.contract_price(*key))  # type: ignore[attr-defined]
    if text is None:
        return None
    raw = json.loads(text)
    return {kind: ({k: Decimal(v) for k, v in raw[kind].items()} if raw.get(kind) else None)
            for kind in ("list", "contract")}


def _quantities(line: Line, unit: dict[str, dict[str, Decimal] | None] | None) -> dict[str, int]:
    """Tokens per price column, split as ``models.costs.cost_of`` splits them."""
    c = line.counts
    row = (unit or {}).get("list") or (unit or {}).get("contract") or {}
    audio_in = c["audio_input_tokens"] if "audio_input_per_mtok" in row else 0
    audio_out = c["audio_output_tokens"] if "audio_output_per_mtok" in row else 0
    return {
        "input_per_mtok": c["input_tokens"] - c["cached_input_tokens"]
        - c["cache_write_tokens"] - audio_in,
        "cached_input_per_mtok": c["cached_input_tokens"],
        "cache_write_per_mtok": c["cache_write_tokens"],
        "output_per_mtok": c["output_tokens"] - audio_out,
        "audio_input_per_mtok": audio_in, "audio_output_per_mtok": audio_out,
    }


def _price(row: dict[str, Decimal] | None, column: str) -> Decimal | None:
    """The unit price of a meter; cached input and cache writes fall back to the input
    price, as ``models.costs.cost_of`` does."""
    if row is None:
        return None
    found = row.get(column)
    if found is None and column in ("cached_input_per_mtok", "cache_write_per_mtok"):
        found = row.get("input_per_mtok")
    return found


def _check(line: Line, rows: list[FocusRow]) -> None:
    """The meters of a line add up to the cost stored for it; they do not when the
    rollup was priced with other prices than the price book holds now."""
    for column, stored in (("ListCost", line.cost_list), ("ContractedCost", line.cost_contract)):
        if stored is None:
            continue
        total = sum((r[column] for r in rows if r[column] is not None), _ZERO)
        if total != stored:
            raise SpendwatchError(
                f"the rollup of {line.model} on {line.day} ({line.team}/{line.project}) costs "
                f"{stored} but today's prices give {total}: prices changed since it was rolled "
                f"up; run `spendwatch reprice --since {line.day.replace(day=1)}` and export "
                f"again")


def _iso(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
