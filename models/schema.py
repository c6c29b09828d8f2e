"""The database schema (SQLAlchemy Core). Alembic migrations under
``models/migrations`` create and evolve it; this module is their reference."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Date,
    Float,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    Uuid,
)

from models.types import Money, UTCDateTime

__all__ = [
    "DAILY_KEYS",
    "EVENT_COLUMNS",
    "LATENCY_EDGES_MS",
    "MONTHLY_KEYS",
    "PRICE_COLUMNS",
    "ROLLUP_SUMS",
    "USER_ROLLUP_SUMS",
    "alert_notifications",
    "alert_rules",
    "alert_states",
    "budget_changes",
    "budgets",
    "leases",
    "metadata",
    "org_prices",
    "rollup_daily",
    "rollup_daily_user",
    "rollup_monthly",
    "rollup_state",
    "usage_events",
]

metadata = MetaData()

usage_events = Table(
    "usage_events",
    metadata,
    Column("id", Uuid(as_uuid=True), primary_key=True, comment="UUIDv7: time-ordered"),
    Column("ts", UTCDateTime(), nullable=False, comment="when the call started (UTC)"),
    Column("ingested_at", UTCDateTime(), nullable=False, comment="when it was written"),
    Column("provider", String(100), nullable=False),
    Column("endpoint", String(64), nullable=False),
    Column("model_requested", String(200)),
    Column("model", String(200), comment="the model the response names"),
    Column("service_tier", String(32)),
    Column("is_batch", Boolean, nullable=False, default=False),
    Column("streamed", Boolean, nullable=False, default=False),
    Column("usage_reported", Boolean, nullable=False,
           comment="false: the response carried no usage; token columns are NULL"),
    Column("input_tokens", BigInteger, comment="includes cached and cache-write tokens"),
    Column("cached_input_tokens", BigInteger),
    Column("cache_write_tokens", BigInteger),
    Column("output_tokens", BigInteger, comment="includes reasoning tokens"),
    Column("reasoning_tokens", BigInteger),
    Column("audio_input_tokens", BigInteger),
    Column("audio_output_tokens", BigInteger),
    Column("latency_ms", Float),
    Column("ttft_ms", Float),
    Column("status_code", Integer),
    Column("error_class", String(100)),
    Column("error_kind", String(16), comment="rate_limit|client|server|network|other"),
    Column("attempts", Integer, nullable=False, default=1),
    Column("request_id", String(128)),
    Column("team", String(200)),
    Column("project", String(200)),
    Column("user", String(200)),
    Column("feature", String(200)),
    Column("environment", String(200)),
    Column("tags", JSON),
    Column("rollup_key", SmallInteger,
           comment="the latency and TTFT buckets and the streamed, usage and batch flags "
                   "packed as the rollups group them (models.rollup_key); NULL: computed "
                   "when read"),
    Index("ix_usage_events_ts", "ts"),
    Index("ix_usage_events_ingested_at", "ingested_at"),
)

#: Column order used by the fast insert paths.
EVENT_COLUMNS: tuple[str, ...] = tuple(c.name for c in usage_events.columns)


#: Prices in USD per million tokens, one column per kind of token.
PRICE_COLUMNS = ("input_per_mtok", "cached_input_per_mtok", "cache_write_per_mtok",
                 "output_per_mtok", "audio_input_per_mtok", "audio_output_per_mtok")

#: The organisation's own price table (``spendwatch prices apply FILE``): negotiated
#: prices (``kind = contract``) and prices of models the list does not know
#: (``kind = list``: fine-tunes, self-hosted models), each from an effective date.
org_prices = Table(
    "org_prices",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model", String(200), nullable=False,
           comment="exact model name, or a prefix ending in '*'"),
    Column("service_tier", String(32), nullable=False,
           comment="default|flex|priority|batch, or * for every tier"),
    Column("kind", String(16), nullable=False, comment="contract|list"),
    Column("effective_from", Date, nullable=False, comment="first UTC day the row applies"),
    *(Column(name, Money()) for name in PRICE_COLUMNS),
    Column("note", Text),
    Column("source", String(500), comment="file and line it was applied from"),
    Column("applied_at", UTCDateTime(), nullable=False),
    UniqueConstraint("model", "service_tier", "kind", "effective_from",
                     name="uq_org_prices_row"),
)

#: Upper edges (ms) of the latency and time-to-first-token histogram buckets; the
#: last bucket is open. Counts per bucket add up across rows, so percentiles of any
#: group of rows come from the merged histogram.
LATENCY_EDGES_MS = (10, 25, 50, 100, 150, 250, 400, 600, 800, 1000, 1500, 2000, 3000,
                    5000, 8000, 12000, 20000, 30000, 60000)
LATENCY_BUCKETS = tuple(f"lat_{i:02d}" for i in range(len(LATENCY_EDGES_MS) + 1))
TTFT_BUCKETS = tuple(f"ttft_{i:02d}" for i in range(len(LATENCY_EDGES_MS) + 1))

#: Keys of a daily rollup row. ``day`` is the calendar day in the reporting timezone;
#: ``price_date`` the UTC day (prices change at 00:00 UTC, so a local day in another
#: timezone can span two). Missing tags are stored as ''. ``user`` is not a key: with
#: it, a day holds about as many rows as events (users x models x projects), and the
#: rollup would cost as much to read as the raw table.
#: ``long_context`` is the input-token threshold the requests exceeded (0: none), since a
#: long-context rate applies per request (``models.long_context``).
DAILY_KEYS = ("day", "price_date", "model", "service_tier", "is_batch", "long_context",
              "endpoint", "team", "project")
MONTHLY_KEYS = ("month", "model", "service_tier", "is_batch", "long_context", "endpoint",
                "team", "project")

#: Additive measures of a rollup row.
ROLLUP_SUMS = (
    "requests", "errors_rate_limit", "errors_client", "errors_server", "errors_network",
    "errors_other", "streamed", "retries", "usage_missing",
    "input_tokens", "cached_input_tokens", "cache_write_tokens", "output_tokens",
    "reasoning_tokens", "audio_input_tokens", "audio_output_tokens",
    "latency_count", "latency_sum_ms", "ttft_count", "ttft_sum_ms",
    *LATENCY_BUCKETS, *TTFT_BUCKETS,
)
_FLOAT_SUMS = {"latency_sum_ms", "ttft_sum_ms"}


def _measures() -> list[Column[object]]:
    cols: list[Column[object]] = [
        Column(name, Float if name in _FLOAT_SUMS else BigInteger, nullable=False, default=0)
        for name in ROLLUP_SUMS
    ]
    cols += [
        Column("cost_list", Money(), comment="NULL when the model is unpriced"),
        Column("cost_contract", Money(), comment="contracted price, else the list price"),
        Column("price_ref", String(300), comment="the list price row used"),
        Column("contract_ref", String(300), comment="the contract price row used"),
        Column("unpriced_tokens", BigInteger, nullable=False, default=0),
    ]
    return cols


def _tag_keys() -> list[Column[object]]:
    return [
        Column("model", String(200), nullable=False),
        Column("service_tier", String(32), nullable=False),
        Column("is_batch", Boolean, nullable=False),
        Column("long_context", BigInteger, nullable=False, default=0, server_default="0",
               comment="the input-token threshold its requests exceeded, 0 for none"),
        Column("endpoint", String(64), nullable=False),
        Column("team", String(200), nullable=False),
        Column("project", String(200), nullable=False),
    ]


rollup_daily = Table(
    "rollup_daily",
    metadata,
    Column("day", Date, nullable=False),
    Column("price_date", Date, nullable=False),
    *_tag_keys(),
    *_measures(),
    PrimaryKeyConstraint(*DAILY_KEYS, name="pk_rollup_daily"),
)

rollup_monthly = Table(
    "rollup_monthly",
    metadata,
    Column("month", Date, nullable=False, comment="first day of the month"),
    *_tag_keys(),
    *_measures(),
    PrimaryKeyConstraint(*MONTHLY_KEYS, name="pk_rollup_monthly"),
)

#: Daily spend per user (``user`` is not a key of ``rollup_daily``: see there). Kept
#: narrow: no tier, endpoint or histograms, so a row per active user x project x model a
#: day. The Costs page's "group by user" and the chargeback's user level read it.
USER_ROLLUP_SUMS = ("requests", "errors", "input_tokens", "cached_input_tokens",
                    "output_tokens", "reasoning_tokens", "unpriced_tokens")
rollup_daily_user = Table(
    "rollup_daily_user",
    metadata,
    Column("day", Date, nullable=False, comment="calendar day in the reporting timezone"),
    Column("user", String(200), nullable=False, comment="'' when the event had no user"),
    Column("team", String(200), nullable=False),
    Column("project", String(200), nullable=False),
    Column("model", String(200), nullable=False),
    *(Column(name, BigInteger, nullable=False, default=0) for name in USER_ROLLUP_SUMS[:-1]),
    Column("cost_list", Money(), comment="NULL when the model is unpriced"),
    Column("cost_contract", Money(), comment="contracted price, else the list price"),
    Column("unpriced_tokens", BigInteger, nullable=False, default=0),
    PrimaryKeyConstraint("day", "user", "team", "project", "model",
                         name="pk_rollup_daily_user"),
)

#: Small named values the rollup keeps between runs (watermark, timezone).
rollup_state = Table(
    "rollup_state",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("value", Text, nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
)

#: Who may run the scheduler's jobs: one holder per name until ``expires_at``.
leases = Table(
    "leases",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("holder", String(300), nullable=False, comment="host:pid:uuid of the holder"),
    Column("acquired_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
)


# -- alerts
#: Budgets as applied from a budget file (``spendwatch budgets apply FILE``); one row
#: per ``[[budget]]`` name. A budget removed from the file is kept with
#: ``active = false`` (its alert history still points at it).
budgets = Table(
    "budgets",
    metadata,
    Column("name", String(200), primary_key=True, comment="unique name from the file"),
    Column("scope", JSON, nullable=False,
           comment='{"team": ..., "project": ..., "model": ..., "user": ...}; {} = all'),
    Column("scope_key", String(500), nullable=False,
           comment="canonical text of the scope, e.g. team=search,project=ranker or *"),
    Column("period", String(16), nullable=False, comment="daily|weekly|monthly"),
    Column("amount", Money(), nullable=False, comment="USD per period"),
    Column("cost_basis", String(16), nullable=False, comment="list|contract"),
    Column("thresholds", JSON, nullable=False, comment="percentages, ascending"),
    Column("recipients", JSON, nullable=False, comment="email addresses"),
    Column("webhooks", JSON, nullable=False, comment="http(s) URLs (Slack-compatible)"),
    Column("mode", String(16), nullable=False, comment="notify|block|downgrade"),
    Column("downgrade", JSON, nullable=False, comment="model -> cheaper model"),
    Column("active", Boolean, nullable=False, default=True),
    Column("source", String(500), comment="file:line it was applied from"),
    Column("updated_at", UTCDateTime(), nullable=False),
)

#: Reliability and forecast rules from the same file (``[[rule]]``).
alert_rules = Table(
    "alert_rules",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("kind", String(32), nullable=False,
           comment="forecast|error_rate|latency_p95|spend_spike|unpriced"),
    Column("params", JSON, nullable=False, comment="the rule's settings as in the file"),
    Column("recipients", JSON, nullable=False),
    Column("webhooks", JSON, nullable=False),
    Column("active", Boolean, nullable=False, default=True),
    Column("source", String(500)),
    Column("updated_at", UTCDateTime(), nullable=False),
)

#: Every change to a budget or rule, for finance: who, when, before and after.
budget_changes = Table(
    "budget_changes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(16), nullable=False, comment="budget|rule"),
    Column("name", String(200), nullable=False),
    Column("action", String(16), nullable=False, comment="added|changed|removed"),
    Column("actor", String(200), nullable=False, comment="--actor, else the OS user"),
    Column("changed_at", UTCDateTime(), nullable=False),
    Column("before", JSON, comment="the row before (NULL when added)"),
    Column("after", JSON, comment="the row after (NULL when removed)"),
    Column("source", String(500)),
    Index("ix_budget_changes_name", "kind", "name"),
)

#: One row per alert: rule x scope x threshold x period. The UNIQUE constraint is
#: what makes an alert fire once: every evaluator inserts first and only the one whose
#: insert succeeded creates the notifications. ``rule`` is ``budget:<name>`` or
#: ``rule:<name>``; ``period`` is the budget period (2026-11, 2026-11-22, 2026-W47) or,
#: for reliability rules, the episode (``2026-11-22#1``).
alert_states = Table(
    "alert_states",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("rule", String(250), nullable=False),
    Column("scope", String(500), nullable=False),
    Column("threshold", String(32), nullable=False, comment="e.g. 80 (%), forecast, 429"),
    Column("period", String(32), nullable=False),
    Column("status", String(16), nullable=False, comment="triggered|resolved"),
    Column("severity", String(16), nullable=False, default="warning"),
    Column("summary", Text, nullable=False, comment="one line, as in the email subject"),
    Column("value", Money(), comment="spend (USD) or the measured value"),
    Column("limit_value", Money(), comment="budget amount or the rule's limit"),
    Column("details", JSON, comment="window, forecast, top contributors, ..."),
    Column("triggered_at", UTCDateTime(), nullable=False),
    Column("resolved_at", UTCDateTime()),
    UniqueConstraint("rule", "scope", "threshold", "period", name="uq_alert_states_key"),
    Index("ix_alert_states_triggered_at", "triggered_at"),
)

#: One message to send per alert, kind (triggered|resolved) and channel target. A
#: sender claims a row (``claimed_until``) before sending; a failure leaves it
#: ``failed`` with the error, and a later run retries it.
alert_notifications = Table(
    "alert_notifications",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("alert_id", Integer, nullable=False),
    Column("kind", String(16), nullable=False, comment="triggered|resolved"),
    Column("channel", String(16), nullable=False, comment="email|webhook|outbox"),
    Column("target", String(1000), nullable=False, comment="addresses or URL"),
    Column("status", String(16), nullable=False, comment="pending|sent|failed|skipped"),
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_error", Text),
    Column("claimed_by", String(300)),
    Column("claimed_until", UTCDateTime()),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("sent_at", UTCDateTime()),
    UniqueConstraint("alert_id", "kind", "channel", "target",
                     name="uq_alert_notifications_key"),
    Index("ix_alert_notifications_status", "status"),
)


# -- chargeback
#: Token and count columns a chargeback line carries (snapshot and correction rows).
CHARGEBACK_COUNTS = ("requests", "errors", "input_tokens", "cached_input_tokens",
                     "cache_write_tokens", "output_tokens", "reasoning_tokens",
                     "audio_input_tokens", "audio_output_tokens", "unpriced_tokens")


def _chargeback_measures() -> list[Column[object]]:
    return [
        *(Column(name, BigInteger, nullable=False, default=0) for name in CHARGEBACK_COUNTS),
        Column("cost_list", Money(), comment="NULL when the model is unpriced"),
        Column("cost_contract", Money(), comment="contracted price, else the list price"),
        Column("prices", Text, comment="JSON: the list and contract unit prices used"),
    ]


#: Months closed for chargeback: a row here means the month is closed; rollups and
#: reprices leave it unchanged and its reports read ``chargeback_snapshot``.
month_closes = Table(
    "month_closes",
    metadata,
    Column("month", Date, primary_key=True, comment="first day of the month"),
    Column("closed_at", UTCDateTime(), nullable=False),
    Column("closed_by", String(200), nullable=False),
    Column("checked_at", UTCDateTime(), comment="when corrections were last looked for"),
    Column("checked_prices", String(300), comment="the prices they were looked for with"),
)

#: Every close and reopen, with who and why (a reopen needs a reason).
month_close_log = Table(
    "month_close_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("month", Date, nullable=False),
    Column("action", String(16), nullable=False, comment="close|reopen"),
    Column("at", UTCDateTime(), nullable=False),
    Column("by", String(200), nullable=False),
    Column("reason", Text),
)

#: The daily rollup rows of a closed month as they were when it was closed.
chargeback_snapshot = Table(
    "chargeback_snapshot",
    metadata,
    Column("month", Date, nullable=False),
    Column("day", Date, nullable=False),
    Column("price_date", Date, nullable=False),
    *_tag_keys(),
    *_chargeback_measures(),
    PrimaryKeyConstraint("month", *DAILY_KEYS, name="pk_chargeback_snapshot"),
)

#: Differences found after a month closed (late events, reprices), posted to the
#: first open month after it. Deltas: counts and costs may be negative.
chargeback_corrections = Table(
    "chargeback_corrections",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("source_month", Date, nullable=False, comment="the closed month corrected"),
    Column("target_month", Date, nullable=False, comment="the open month it is posted in"),
    Column("price_date", Date, nullable=False, comment="UTC day of the usage"),
    *_tag_keys(),
    *_chargeback_measures(),
    Column("posted_at", UTCDateTime(), nullable=False),
    Index("ix_chargeback_corrections_target", "target_month"),
)

#: Allocation files (cost centres and shared-cost rules) as applied; the latest is
#: in force, and its effective dates say which months each entry covers.
allocation_files = Table(
    "allocation_files",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("source", String(500), nullable=False),
    Column("content", Text, nullable=False),
    Column("applied_at", UTCDateTime(), nullable=False),
)

#: What OpenAI billed (Costs API), per UTC day, OpenAI project and line item.
billed_costs = Table(
    "billed_costs",
    metadata,
    Column("day", Date, nullable=False),
    Column("openai_project_id", String(200), nullable=False),
    Column("line_item", String(300), nullable=False),
    Column("amount", Money(), nullable=False),
    Column("currency", String(8), nullable=False),
    Column("fetched_at", UTCDateTime(), nullable=False),
    PrimaryKeyConstraint("day", "openai_project_id", "line_item", name="pk_billed_costs"),
)

#: One row per reconciliation run (the daily job runs once a day).
reconcile_runs = Table(
    "reconcile_runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("started_at", UTCDateTime(), nullable=False),
    Column("since", Date, nullable=False),
    Column("until", Date, nullable=False),
    Column("status", String(16), nullable=False, comment="ok|failed"),
    Column("rows", Integer, nullable=False, default=0),
    Column("message", Text),
)

#: genai-prices data fetched by ``spendwatch prices update``: the raw provider JSON as
#: fetched. List prices come from the row ``in_use`` (at most one), else from the data
#: bundled with the library (``spendwatch prices update --bundled`` clears ``in_use``;
#: rows are kept so that a price ref naming ``price_library #ID`` can be traced).
price_library = Table(
    "price_library",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("fetched_at", UTCDateTime(), nullable=False),
    Column("source_url", String(2000), nullable=False),
    Column("content", Text, nullable=False, comment="the provider JSON array as fetched"),
    Column("sha256", String(64), nullable=False, comment="hex sha256 of content (UTF-8)"),
    Column("openai_models", Integer, nullable=False),
    Column("in_use", Boolean, nullable=False),
    UniqueConstraint("sha256", name="uq_price_library_sha256"),
)

__all__ += ["CHARGEBACK_COUNTS", "allocation_files", "billed_costs",
            "chargeback_corrections", "chargeback_snapshot", "month_close_log",
            "month_closes", "price_library", "reconcile_runs"]
