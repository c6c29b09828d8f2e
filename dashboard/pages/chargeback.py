"""Chargeback: a month's spend allocated team -> project with percentages, an
``unallocated`` line for usage recorded without a team, and a CSV download.

Below the table: the month's status (open/closed), the cost-centre view, corrections
of closed months, the reconciliation against OpenAI's Costs API, and XLSX and FOCUS
downloads (``models.chargeback``, ``models.exports``, ``models.reconciliation``)."""

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

__all__ = ["csv_export", "extras", "focus_export", "layout", "register", "render_layout",
           "share_text", "update", "xlsx_export"]

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
            dbc.Col(dbc.Button("Download XLSX", id="chargeback-xlsx-button", color="secondary",
                               outline=True, size="sm"), width="auto"),
            dbc.Col(dbc.Button("Download FOCUS", id="chargeback-focus-button",
                               color="secondary", outline=True, size="sm"), width="auto"),
            dcc.Download(id="chargeback-download-xlsx"),
            dcc.Download(id="chargeback-download-focus"),
        ], className="align-items-center g-2 mb-3"),
        html.Div(id="chargeback-export-messages"),
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


# -- month status, cost centres, reconciliation and XLSX/FOCUS downloads (chargeback issue)
def _status_badge(ctx: AppContext, month: dt.date) -> html.Div:
    from models.months import month_statuses

    found = next((s for s in month_statuses(ctx.engine) if s.month == month), None)
    if found is not None and found.closed:
        return html.Div([dbc.Badge("closed", color="secondary", id="chargeback-status"),
                         html.Span(f" on {found.closed_at:%Y-%m-%d} by {found.closed_by}: "
                                   "these numbers no longer change; later changes appear "
                                   "in the next open month as corrections.",
                                   className="small text-muted")], className="mb-2")
    return html.Div([dbc.Badge("open", color="success", id="chargeback-status"),
                     html.Span(f" close it with `spendwatch month close {month:%Y-%m}` once "
                               "the month has ended.", className="small text-muted")],
                    className="mb-2")


def _money_cell(amount: Decimal | None) -> str:
    return "" if amount is None else f"${amount:,.2f}"


def _cost_centres(report: object) -> html.Div | None:
    rows = report.rows  # type: ignore[attr-defined]
    if not report.config.cost_centres:  # type: ignore[attr-defined]
        return None
    head = html.Thead(html.Tr([html.Th(h) for h in (
        "Cost centre", "Name", "Direct", "Corrections", "Shared in", "Shared out",
        "Allocated", "Share")]))
    body = [html.Tr([html.Td(c) for c in (
        r.cost_centre, r.note, _money_cell(r.direct), _money_cell(r.corrections),
        _money_cell(r.shared_in), _money_cell(r.shared_out), _money_cell(r.allocated),
        f"{r.share_pct} %")]) for r in rows]
    return html.Div([html.H5("By cost centre", className="mt-3"),
                     dbc.Table([head, html.Tbody(body)], size="sm", className="small",
                               id="chargeback-cost-centres")])


def _reconciliation(ctx: AppContext, month: dt.date) -> html.Div:
    from models.reconciliation import parse_project_map, reconciliation

    rec = reconciliation(ctx.engine, month, parse_project_map(ctx.settings.openai_projects))
    billed = [r for r in rec.rows if r.billed is not None]
    title = html.H5("Reconciliation with OpenAI's bill", className="mt-3")
    if not billed:
        return html.Div([title, html.P(
            "No OpenAI bill has been read for this month: set SPENDWATCH_OPENAI_ADMIN_KEY "
            "and run `spendwatch reconcile` (the scheduler then reads it daily).",
            className="text-muted small", id="chargeback-reconciliation")])
    pct = "" if rec.drift_pct is None else f" ({rec.drift_pct:+.2f} %)"
    head = html.Thead(html.Tr([html.Th(h) for h in (
        "Day (UTC)", "Project", "Estimated", "Billed", "Difference", "%")]))
    body = [html.Tr([html.Td(c) for c in (
        r.day.isoformat(), r.project, _money_cell(r.estimated), _money_cell(r.billed),
        "" if r.difference is None else f"{r.difference:+,.2f}",
        "" if r.difference_pct is None else f"{r.difference_pct:+.1f} %")]) for r in billed]
    return html.Div([title, html.P([
        "Estimated ", html.Strong(_money_cell(rec.estimated)), ", billed ",
        html.Strong(_money_cell(rec.billed)), ", drift ",
        html.Strong(f"{rec.drift:+,.2f}{pct}", id="chargeback-drift"),
        " over the days OpenAI has billed"
        + (f" (read {rec.last_run:%Y-%m-%d %H:%M} UTC)." if rec.last_run else ".")],
        id="chargeback-reconciliation"),
        dbc.Table([head, html.Tbody(body)], size="sm", className="small")])


def extras(ctx: AppContext, month_text: str | None) -> list[object]:
    """Month status, the cost-centre view, corrections and the reconciliation."""
    from models.chargeback import chargeback_report

    month, _ = parse_month(month_text, today=ctx.today())
    report = chargeback_report(ctx.engine, month, by="cost-centre")
    out: list[object] = [_status_badge(ctx, month)]
    if report.corrections:
        out.append(html.P(f"Corrections of closed months posted to this month (late events, "
                          f"price changes): {_money_cell(report.corrections)}; the XLSX and "
                          f"FOCUS downloads include them.", className="small",
                          id="chargeback-corrections"))
    centres = _cost_centres(report)
    if centres is not None:
        out.append(centres)
    out.append(_reconciliation(ctx, month))
    return out


def xlsx_export(ctx: AppContext, month_text: str | None) -> dict[str, object]:
    """The dcc.Download payload of the month's workbook (summary, detail, splits)."""
    import base64

    from models.chargeback import chargeback_report
    from models.exports import chargeback_xlsx

    month, _ = parse_month(month_text, today=ctx.today())
    summary = chargeback_report(ctx.engine, month, by="team")
    detail = chargeback_report(ctx.engine, month, by="project", config=summary.config)
    return {"content": base64.b64encode(chargeback_xlsx(summary, detail)).decode(),
            "filename": f"chargeback-{month:%Y-%m}.xlsx", "base64": True,
            "type": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}


def focus_export(ctx: AppContext, month_text: str | None) -> tuple[list[object], object]:
    """(messages, the dcc.Download payload of the month's FOCUS CSV)."""
    import io

    from models.chargeback import chargeback_report
    from models.exports import focus_csv, month_focus_rows
    from models.reconciliation import parse_project_map
    from spendwatch.errors import SpendwatchError

    month, _ = parse_month(month_text, today=ctx.today())
    report = chargeback_report(ctx.engine, month)
    try:
        rows = month_focus_rows(ctx.engine, report, timezone=ctx.settings.timezone,
                                project_map=parse_project_map(ctx.settings.openai_projects))
    except SpendwatchError as exc:
        return messages([str(exc)]), dash.no_update
    buffer = io.StringIO()
    focus_csv(rows, buffer)
    return [], {"content": buffer.getvalue(), "filename": f"focus-{month:%Y-%m}.csv",
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
    app.callback(
        Output("chargeback-extra", "children"),
        Input("chargeback-month", "value"),
    )(guarded(lambda month: extras(ctx, month), 1))
    app.callback(
        Output("chargeback-download-xlsx", "data"),
        Input("chargeback-xlsx-button", "n_clicks"),
        State("chargeback-month", "value"),
        prevent_initial_call=True,
    )(guarded(lambda _clicks, month: xlsx_export(ctx, month), 0))
    app.callback(
        Output("chargeback-export-messages", "children"),
        Output("chargeback-download-focus", "data"),
        Input("chargeback-focus-button", "n_clicks"),
        State("chargeback-month", "value"),
        prevent_initial_call=True,
    )(guarded(lambda _clicks, month: focus_export(ctx, month), 2))
    url_sync(app, "chargeback-url", [("month", "chargeback-month", "value")])
