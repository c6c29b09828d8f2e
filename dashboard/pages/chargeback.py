"""Chargeback: a month's spend allocated team -> project with percentages, an
``unallocated`` line for usage recorded without a team, and a CSV download.

(The chargeback issue adds XLSX and FOCUS exports, month close and the
reconciliation against OpenAI's Costs API to this page.)"""

from __future__ import annotations

import datetime as dt
from decimal import ROUND_HALF_UP, Decimal

import dash
import dash_bootstrap_components as dbc
import pandas as pd
from dash import Dash, Input, Output, State, dcc, html

from dashboard.allocation import UNALLOCATED, allocation
from dashboard.app import AppContext, current_context
from dashboard.components import csv_text, data_notice, guarded, guarded_layout, messages, url_sync
from dashboard.filters import parse_month
from dashboard.formatting import format_count, format_money
from dashboard.queries import data_status, months_with_data

__all__ = ["csv_export", "layout", "register", "render_layout", "share_text", "update"]

PATH = "/chargeback"


def layout(**query: object) -> html.Div:
    return guarded_layout(render_layout, current_context(), query)


def month_options(ctx: AppContext, chosen: dt.date) -> list[dict[str, str]]:
    months = set(months_with_data(ctx.engine)) | {ctx.today().replace(day=1), chosen}
    return [{"label": f"{m:%B %Y}", "value": f"{m:%Y-%m}"} for m in sorted(months,
                                                                          reverse=True)]


def render_layout(ctx: AppContext, query: dict[str, object]) -> html.Div:
    month, problem = parse_month(query.get("month"), today=ctx.today())
    return html.Div([
        dcc.Store(id="chargeback-url"),
        html.H3("Chargeback"),
        html.P("Spend per team and project for a calendar month in the reporting timezone "
               f"({ctx.settings.timezone}), at contracted prices where there is a contract. "
               "Usage recorded without a team is the unallocated line.",
               className="text-muted"),
        html.Div(messages([problem] if problem else []), id="chargeback-url-messages"),
        html.Div(id="chargeback-messages"),
        dbc.Row([
            dbc.Col(html.Label("Month", htmlFor="chargeback-month"), width="auto"),
            dbc.Col(dbc.Select(id="chargeback-month", value=f"{month:%Y-%m}",
                               options=month_options(ctx, month)), width="auto"),
            dbc.Col(dbc.Button("Download CSV", id="chargeback-csv-button", color="secondary",
                               outline=True, size="sm"), width="auto"),
            dcc.Download(id="chargeback-download"),
        ], className="align-items-center g-2 mb-3"),
        html.Div(id="chargeback-summary", className="mb-2"),
        dcc.Loading(html.Div(id="chargeback-table")),
        html.Div(id="chargeback-extra"),
    ])


def share_text(share: Decimal | None) -> str:
    if share is None:
        return "n/a"
    return f"{(share * 100).quantize(Decimal('0.1'), ROUND_HALF_UP)} %"


def _rows(frame: pd.DataFrame) -> html.Table:
    head = html.Thead(html.Tr([html.Th(h) for h in (
        "Team", "Project", "Requests", "Input tokens", "Output tokens", "Cost", "Share")]))
    body = []
    for r in frame.to_dict("records"):
        level = r["level"]
        strong = level in ("team", "total", UNALLOCATED)
        cells = [r["team"] if level != "project" else "", r["project"],
                 format_count(r["requests"]), format_count(r["input_tokens"]),
                 format_count(r["output_tokens"]),
                 format_money(r["cost"], unpriced_tokens=r["unpriced_tokens"]),
                 share_text(r["share"])]
        body.append(html.Tr([html.Td(c) for c in cells],
                            className=f"chargeback-{level}" + (" fw-bold" if strong else ""),
                            **{"data-level": level}))
    return dbc.Table([head, html.Tbody(body)], size="sm", hover=True, id="chargeback-rows",
                     className="small")


def update(ctx: AppContext, month_text: str | None) -> tuple[list[object], list[object],
                                                            object]:
    """(messages, summary, table) for the month picked."""
    month, problem = parse_month(month_text, today=ctx.today())
    notes: list[object] = list(data_notice(data_status(ctx.engine), ctx.settings.timezone))
    if problem:
        notes += messages([problem])
    frame = allocation(ctx.engine, month)
    if not len(frame):
        return notes, [], html.P(f"No usage was recorded in {month:%B %Y}.",
                                 className="text-muted empty-state")
    total = frame[frame["level"] == "total"].iloc[0]
    unallocated = frame[frame["level"] == UNALLOCATED]
    summary: list[object] = [html.Span([
        f"{month:%B %Y}: ", html.Strong(format_money(total["cost"],
                                                     unpriced_tokens=total["unpriced_tokens"]),
                                        id="chargeback-total"),
        f" over {format_count(total['requests'])} requests."])]
    if len(unallocated):
        summary.append(html.Span(
            f" Unallocated (no team tag): {format_money(unallocated.iloc[0]['cost'])}, "
            f"{share_text(unallocated.iloc[0]['share'])}. Tag calls with "
            f"collector.instrument(client, team=...) to allocate them.", className="ms-1"))
    if int(total["unpriced_tokens"]):
        summary.append(html.Div("Some usage is unpriced: its cost is not included; "
                                "`spendwatch prices check` lists the models.",
                                className="text-warning small"))
    return notes, summary, _rows(frame)


def csv_export(ctx: AppContext, month_text: str | None) -> dict[str, object]:
    """The dcc.Download payload: every line of the table with exact decimals."""
    month, _ = parse_month(month_text, today=ctx.today())
    frame = allocation(ctx.engine, month)
    frame = frame.assign(
        month=f"{month:%Y-%m}",
        share_percent=[None if s is None else (s * 100).quantize(Decimal("0.0001"),
                                                                 ROUND_HALF_UP)
                       for s in frame["share"]],
    ).rename(columns={"cost": "cost_usd", "cost_list": "cost_list_usd"})
    frame["share_percent"] = frame["share_percent"].astype(object)
    columns = ["month", "level", "team", "project", "requests", "input_tokens",
               "cached_input_tokens", "output_tokens", "unpriced_tokens", "cost_usd",
               "cost_list_usd", "share_percent"]
    return {"content": csv_text(frame[columns]), "filename": f"chargeback-{month:%Y-%m}.csv",
            "type": "text/csv"}


def register(app: Dash, ctx: AppContext) -> None:
    dash.register_page(__name__, path=PATH, name="Chargeback", title="spendwatch: chargeback",
                       order=4, layout=layout)
    app.callback(
        Output("chargeback-messages", "children"),
        Output("chargeback-summary", "children"),
        Output("chargeback-table", "children"),
        Input("chargeback-month", "value"),
    )(guarded(lambda month: update(ctx, month), 3))
    app.callback(
        Output("chargeback-download", "data"),
        Input("chargeback-csv-button", "n_clicks"),
        State("chargeback-month", "value"),
        prevent_initial_call=True,
    )(guarded(lambda _clicks, month: csv_export(ctx, month), 0))
    url_sync(app, "chargeback-url", [("month", "chargeback-month", "value")])
