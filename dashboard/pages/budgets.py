"""Budgets and alerts: each budget's burn through its current period against its
thresholds, with the forecast for the period's end, and the alert history."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import dash
import dash_bootstrap_components as dbc
import pandas as pd
from dash import Dash, Input, Output, dcc, html

from dashboard.app import AppContext, current_context
from dashboard.burn import alerts_ready, budget_statuses, cumulative_spend, history
from dashboard.components import Figure, data_notice, figure, guarded, table
from dashboard.formatting import format_money, to_float
from dashboard.queries import data_status

__all__ = ["layout", "register", "update"]

PATH = "/budgets"
_HOW = ["Budgets are defined in a TOML file and stored in the database with ",
        html.Code("spendwatch budgets apply budgets.toml"), " (see the README's \"Budgets "
        "and alerts\"; ", html.Code("spendwatch budgets apply --dry-run"), " shows what would "
        "change). The scheduler then checks them after every rollup and sends an email or "
        "webhook when a threshold is crossed."]


def layout(**query: object) -> html.Div:
    current_context()  # only valid inside a request to this app
    return html.Div([
        html.H3("Budgets and alerts"),
        dcc.Store(id="budgets-load"),
        html.Div(id="budgets-messages"),
        dcc.Loading(html.Div(id="budgets-content")),
        html.H5("Alert history", className="mt-4"),
        html.Div(id="budgets-history"),
    ])


def _burn_figure(status: object, burn: pd.DataFrame) -> Figure:
    budget, period = status.budget, status.period  # type: ignore[attr-defined]
    amount = budget.amount
    last_day = period.end - dt.timedelta(days=1)
    traces: list[dict[str, object]] = [{
        "type": "scatter", "x": [str(d) for d in burn["day"]], "name": "spent",
        "y": [to_float(v) for v in burn["cumulative"]], "mode": "lines+markers",
        "line": {"width": 3}}]
    forecast = status.forecast  # type: ignore[attr-defined]
    if forecast is not None and len(burn):
        traces.append({"type": "scatter", "x": [str(burn["day"].iloc[-1]), str(last_day)],
                       "y": [to_float(burn["cumulative"].iloc[-1]), to_float(forecast)],
                       "mode": "lines", "name": "forecast", "line": {"dash": "dot"}})
    for threshold in budget.thresholds:
        level = to_float(amount * Decimal(threshold) / 100)
        traces.append({"type": "scatter", "x": [str(period.start), str(last_day)],
                       "y": [level, level], "mode": "lines", "name": f"{threshold} %",
                       "line": {"dash": "dash", "width": 1}, "hoverinfo": "name+y"})
    return figure(traces, {"height": 260, "showlegend": False,
                           "margin": {"l": 40, "r": 10, "t": 10, "b": 10},
                           "yaxis": {"title": {"text": "USD"}},
                           "xaxis": {"range": [str(period.start), str(last_day)]}})


def _card(ctx: AppContext, status: object) -> dbc.Col:
    budget, period, spend = (status.budget, status.period,  # type: ignore[attr-defined]
                             status.spend)  # type: ignore[attr-defined]
    percent = status.percent  # type: ignore[attr-defined]
    forecast = status.forecast  # type: ignore[attr-defined]
    colour = "danger" if percent >= 100 else "warning" if percent >= min(
        budget.thresholds or (80,)) else "success"
    scope = ", ".join(f"{k} {v}" for k, v in budget.scope.items()) or "whole organisation"
    lines: list[object] = [
        html.Div([html.Strong(format_money(spend.cost)), f" of {format_money(budget.amount)} ",
                  html.Strong(f"({percent} %)", className=f"text-{colour}")],
                 className="budget-spend"),
        dbc.Progress(value=float(min(percent, 100)), color=colour, className="my-2",
                     style={"height": "10px"}),
        html.Div(f"forecast for the period's end: {format_money(forecast)}"
                 if forecast is not None else "forecast: too early in the period to say",
                 className="small text-muted"),
    ]
    if spend.unpriced_tokens:
        lines.append(html.Div(f"{spend.unpriced_tokens:,} unpriced tokens not counted "
                              f"({', '.join(spend.unpriced_models)})",
                              className="small text-warning"))
    if budget.period != "daily":
        burn = cumulative_spend(ctx.engine, status, ctx.today())
        lines.append(dcc.Graph(figure=_burn_figure(status, burn), config={"displaylogo": False},
                               id={"type": "budget-burn", "name": budget.name}))
    header = html.Div([html.Strong(budget.name), html.Span(
        f" · {scope} · {budget.period} · {period.window_text()} · {budget.mode}",
        className="text-muted small")])
    return dbc.Col(dbc.Card([dbc.CardHeader(header), dbc.CardBody(lines)],
                            className="mb-3 budget-card"), lg=6)


def _when(value: dt.datetime | None, ctx: AppContext) -> str:
    return value.astimezone(ctx.timezone).strftime("%Y-%m-%d %H:%M") if value else ""


def update(ctx: AppContext, _load: object = None) -> tuple[list[object], object, object]:
    """(messages, budget cards, alert history)."""
    notes: list[object] = list(data_notice(data_status(ctx.engine), ctx.settings.timezone))
    if not alerts_ready(ctx.engine):
        notes.append(dbc.Alert(["This database has no budget tables yet: run ",
                                html.Code("spendwatch db upgrade"), ". ", *_HOW], color="info",
                               className="empty-state"))
        return notes, [], html.P("No alerts yet.", className="text-muted")
    statuses = budget_statuses(ctx.engine, ctx.settings, ctx.now())
    if statuses:
        cards: object = dbc.Row([_card(ctx, s) for s in statuses])
    else:
        cards = dbc.Alert(["No budgets are defined. ", *_HOW], color="info",
                          className="empty-state")
    alerts = history(ctx.engine)
    if not len(alerts):
        return notes, cards, html.P("No alert has fired yet.", className="text-muted")
    shown = pd.DataFrame({
        "Triggered": [_when(t, ctx) for t in alerts["triggered_at"]],
        "Rule": alerts["rule"], "Scope": alerts["scope"], "Threshold": alerts["threshold"],
        "Period": alerts["period"], "Status": alerts["status"], "Summary": alerts["summary"],
        "Resolved": [_when(t if pd.notna(t) else None, ctx) for t in alerts["resolved_at"]],
        "Notifications": alerts["notified"],
    })
    return notes, cards, table(shown, "budgets-history-rows")


def register(app: Dash, ctx: AppContext) -> None:
    dash.register_page(__name__, path=PATH, name="Budgets and alerts",
                       title="spendwatch: budgets and alerts", order=3, layout=layout)
    app.callback(
        Output("budgets-messages", "children"), Output("budgets-content", "children"),
        Output("budgets-history", "children"), Input("budgets-load", "data"),
    )(guarded(lambda load: update(ctx, load), 3))
