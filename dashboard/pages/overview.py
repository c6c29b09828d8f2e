"""Overview: the headline figures against the previous period, daily spend stacked
by model (or team, or project) and the top teams, projects and models this month."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import dash
import dash_bootstrap_components as dbc
import pandas as pd
from dash import Dash, Input, Output, dcc, html

from dashboard.app import AppContext, current_context
from dashboard.burn import alerts_ready, budget_statuses
from dashboard.components import (
    Figure,
    data_notice,
    empty_figure,
    guarded,
    guarded_layout,
    headline_card,
    messages,
    stacked_figure,
    table,
    url_sync,
)
from dashboard.filters import as_list
from dashboard.formatting import (
    format_change,
    format_count,
    format_money,
    format_ms,
    format_percent,
)
from dashboard.headlines import Headlines, headlines
from dashboard.queries import aggregate, data_status

__all__ = ["BY_CHOICES", "TREND_DAYS", "layout", "register", "render_layout", "update"]

PATH = "/"
BY_CHOICES = ("model", "team", "project")
TREND_DAYS = 30
TOP_N = 5
#: The overview reloads its figures this often (the scheduler's default rollup interval).
REFRESH_SECONDS = 300


def layout(**query: object) -> html.Div:
    """Dash pages calls this with the URL's query parameters."""
    return guarded_layout(render_layout, current_context(), query)


def render_layout(ctx: AppContext, query: dict[str, object]) -> html.Div:
    raw = (as_list(query.get("by")) or ["model"])[-1]
    notes = [] if raw in BY_CHOICES else [
        f"cannot split the trend by {raw[:60]!r}; choose model, team or project. "
        f"Showing models."]
    by = raw if raw in BY_CHOICES else "model"
    return html.Div([
        dcc.Store(id="overview-url"),
        dcc.Interval(id="overview-refresh", interval=REFRESH_SECONDS * 1000),
        html.H3("Overview", className="mb-1"),
        html.Div(f"as of {ctx.today():%A %d %B %Y} ({ctx.settings.timezone})",
                 className="text-muted mb-3", id="overview-asof"),
        html.Div(messages(notes), id="overview-url-messages"),
        html.Div(id="overview-messages"),
        dbc.Row(id="overview-headlines"),
        dbc.Row([
            dbc.Col(html.Label("Split daily spend by", htmlFor="overview-by"), width="auto"),
            dbc.Col(dbc.Select(id="overview-by", value=by,
                               options=[{"label": b, "value": b} for b in BY_CHOICES]),
                    width="auto"),
        ], className="align-items-center g-2"),
        dcc.Loading(dcc.Graph(id="overview-trend", config={"displaylogo": False})),
        html.H5("Top this month", className="mt-3"),
        dbc.Row(id="overview-top"),
    ])


def _budget_card(ctx: AppContext) -> dbc.Col:
    statuses = (budget_statuses(ctx.engine, ctx.settings, ctx.now())
                if alerts_ready(ctx.engine) else [])
    if not statuses:
        return headline_card("Budget burn", "no budgets", "",
                             "define them with `spendwatch budgets apply FILE`", "kpi-budget")
    worst = max(statuses, key=lambda s: s.percent)  # type: ignore[attr-defined]
    over = sum(1 for s in statuses if s.percent >= 100)  # type: ignore[attr-defined]
    return headline_card("Budget burn (highest)", f"{worst.percent} %",  # type: ignore[attr-defined]
                         f"{over} of {len(statuses)} over budget;",
                         f"{worst.name}, {worst.period.label}",  # type: ignore[attr-defined]
                         "kpi-budget")


def _headline_cards(h: Headlines, budget: dbc.Col) -> list[dbc.Col]:
    mtd, prev = h.month_to_date, h.previous_month_to_date
    return [
        headline_card("Spend today", format_money(h.day.cost,
                                                  unpriced_tokens=h.day.unpriced_tokens),
                      format_change(h.day.cost, h.yesterday.cost),
                      "vs all of yesterday (today is not over)", "kpi-today"),
        headline_card("Month to date", format_money(mtd.cost,
                                                    unpriced_tokens=mtd.unpriced_tokens),
                      format_change(mtd.cost, prev.cost), "vs same days last month",
                      "kpi-mtd"),
        headline_card("Forecast for the month", format_money(h.forecast),
                      format_change(h.forecast, h.previous_month.cost),
                      "vs last month's total", "kpi-forecast"),
        budget,
        headline_card("Requests this month", format_count(mtd.requests),
                      format_change(mtd.requests, prev.requests), "vs same days last month",
                      "kpi-requests"),
        headline_card("Error rate this month", format_percent(mtd.error_rate, 2),
                      format_change(mtd.error_rate, prev.error_rate, points=True),
                      "vs same days last month", "kpi-errors"),
        headline_card("p95 latency this month", format_ms(mtd.p95_ms),
                      format_change(mtd.p95_ms, prev.p95_ms), "vs same days last month",
                      "kpi-p95"),
    ]


def _top_tables(ctx: AppContext, today: dt.date) -> list[dbc.Col]:
    cols = []
    for dim in ("team", "project", "model"):
        frame = aggregate(ctx.engine, keys=[dim], start=today.replace(day=1), end=today,
                          counts=("requests", "unpriced_tokens"), money=("cost",))
        frame["sort"] = [v if v is not None else Decimal(-1) for v in frame["cost"]]
        frame = frame.sort_values("sort", ascending=False).head(TOP_N)
        shown = pd.DataFrame({
            dim: [v or "(none)" for v in frame[dim]],
            "spend": [format_money(c, unpriced_tokens=u)
                      for c, u in zip(frame["cost"], frame["unpriced_tokens"], strict=True)],
            "requests": [format_count(r) for r in frame["requests"]],
        })
        body = table(shown, f"overview-top-{dim}") if len(shown) else html.P(
            "nothing this month yet", className="text-muted")
        cols.append(dbc.Col([html.H6(f"{dim.capitalize()}s"), body], md=4))
    return cols


def update(ctx: AppContext, by: str | None) -> tuple[list[object], list[dbc.Col], Figure,
                                                     list[dbc.Col]]:
    """The overview's one callback: (messages, headline cards, trend, top tables)."""
    status = data_status(ctx.engine)
    notes: list[object] = list(data_notice(status, ctx.settings.timezone))
    if by not in BY_CHOICES:
        notes += messages([f"cannot split by {str(by)[:60]!r}; showing models."])
        by = "model"
    today = ctx.today()
    start = today - dt.timedelta(days=TREND_DAYS - 1)
    cards = _headline_cards(headlines(ctx.engine, today), _budget_card(ctx))
    frame = aggregate(ctx.engine, keys=["day", by], start=start, end=today,
                      counts=("requests", "unpriced_tokens"), money=("cost",))
    if len(frame):
        fig = stacked_figure(frame, x="day", key=by, y="cost",
                             title=f"Daily spend by {by}, last {TREND_DAYS} days (USD)",
                             y_title="USD")
        if frame["unpriced_tokens"].sum():
            models = aggregate(ctx.engine, keys=["model"], start=start, end=today,
                               counts=("unpriced_tokens",), money=())
            names = ", ".join(m for m, n in zip(models["model"], models["unpriced_tokens"],
                                                strict=True) if n)
            notes += messages([f"Unpriced usage is not in the spend figures (model: {names}); "
                               f"add its price with `spendwatch prices apply FILE`."], "info")
    else:
        fig = empty_figure(f"No spend in the last {TREND_DAYS} days")
    return notes, cards, fig, _top_tables(ctx, today)


def register(app: Dash, ctx: AppContext) -> None:
    dash.register_page(__name__, path=PATH, name="Overview", title="spendwatch: overview",
                       order=0, layout=layout)
    app.callback(
        Output("overview-messages", "children"),
        Output("overview-headlines", "children"),
        Output("overview-trend", "figure"),
        Output("overview-top", "children"),
        Input("overview-by", "value"), Input("overview-refresh", "n_intervals"),
    )(guarded(lambda by, _ticks: update(ctx, by), 4))
    url_sync(app, "overview-url", [("by", "overview-by", "value")])
