"""Costs: spend over a date range by day, week or month, grouped by model, team,
project, user, endpoint or service tier, with filters on each; tokens by kind and
what prompt caching saved; cost per 1,000 requests; a table and its CSV."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import ROUND_HALF_UP, Decimal

import dash
import dash_bootstrap_components as dbc
import pandas as pd
from dash import Dash, Input, Output, State, dcc, html

from dashboard.app import AppContext, current_context
from dashboard.breakdown import TOKEN_KINDS, Breakdown, period_label, spend_breakdown
from dashboard.components import (
    Figure,
    csv_text,
    data_notice,
    empty_figure,
    figure,
    filter_dropdown,
    guarded,
    guarded_layout,
    messages,
    stacked_figure,
    table,
    url_sync,
)
from dashboard.filters import (
    DIMENSIONS,
    FILTER_PARAMS,
    GRANULARITIES,
    View,
    as_list,
    parse_view,
)
from dashboard.formatting import format_count, format_money
from dashboard.queries import data_status, dimension_values

__all__ = ["CONTROLS", "csv_export", "layout", "register", "render_layout", "update"]

PATH = "/costs"
CHARTS = ("bar", "area")
_LABELS = {"model": "Model", "team": "Team", "project": "Project", "user": "User",
           "endpoint": "Endpoint", "tier": "Service tier"}
#: (query name, component id, property) of every control, in callback order.
CONTROLS: tuple[tuple[str, str, str], ...] = (
    ("start", "costs-dates", "start_date"), ("end", "costs-dates", "end_date"),
    ("granularity", "costs-granularity", "value"), ("by", "costs-by", "value"),
    ("chart", "costs-chart", "value"),
    *((p, f"costs-filter-{p}", "value") for p in FILTER_PARAMS),
)


def layout(**query: object) -> html.Div:
    return guarded_layout(render_layout, current_context(), query)


def _select(component_id: str, value: str, choices: Sequence[str]) -> dbc.Select:
    return dbc.Select(id=component_id, value=value,
                      options=[{"label": c, "value": c} for c in choices])


def render_layout(ctx: AppContext, query: dict[str, object]) -> html.Div:
    view = parse_view(query, today=ctx.today())
    chart, problem = _chart(query.get("chart"))
    if problem:
        view = View(view.start, view.end, view.by, view.granularity, view.filters,
                    (*view.problems, problem))
    options = dimension_values(ctx.engine)
    filters = [filter_dropdown(f"costs-filter-{p}", _LABELS[p], view.filters.get(p, ()),
                               options.get(p, [])) for p in FILTER_PARAMS]
    return html.Div([
        dcc.Store(id="costs-url"),
        html.H3("Costs"),
        html.Div(messages(view.problems), id="costs-url-messages"),
        html.Div(id="costs-messages"),
        dbc.Row([
            dbc.Col([html.Label("Dates", className="small mb-0 d-block"),
                     dcc.DatePickerRange(id="costs-dates", start_date=view.start.isoformat(),
                                         end_date=view.end.isoformat(),
                                         display_format="YYYY-MM-DD",
                                         first_day_of_week=1)], width="auto"),
            dbc.Col([html.Label("Granularity", htmlFor="costs-granularity",
                                className="small mb-0"),
                     _select("costs-granularity", view.granularity, GRANULARITIES)],
                    width="auto"),
            dbc.Col([html.Label("Group by", htmlFor="costs-by", className="small mb-0"),
                     _select("costs-by", view.by, tuple(DIMENSIONS))], width="auto"),
            dbc.Col([html.Label("Chart", htmlFor="costs-chart", className="small mb-0"),
                     _select("costs-chart", chart, CHARTS)], width="auto"),
        ], className="g-3 align-items-end mb-2"),
        dbc.Row(filters, className="g-2 mb-3"),
        html.Div(id="costs-summary", className="mb-2"),
        dcc.Loading(dcc.Graph(id="costs-graph", config={"displaylogo": False})),
        dcc.Graph(id="costs-tokens", config={"displaylogo": False}),
        dbc.Row([
            dbc.Col(html.H5("By group"), width="auto"),
            dbc.Col(dbc.Button("Download CSV", id="costs-csv-button", color="secondary",
                               outline=True, size="sm"), width="auto"),
            dcc.Download(id="costs-download"),
        ], className="align-items-center g-2"),
        html.Div(id="costs-table"),
    ])


def _chart(raw: object) -> tuple[str, str | None]:
    values = as_list(raw)
    if not values or values[-1] in CHARTS:
        return (values[-1] if values else CHARTS[0]), None
    return CHARTS[0], (f"chart {values[-1][:30]!r} is not one of {', '.join(CHARTS)}; "
                       f"showing bars.")


def _view(ctx: AppContext, values: Sequence[object]) -> tuple[View, list[str]]:
    """The controls' values as a checked view, with unknown filter values dropped."""
    query = {name: value for (name, _, _), value in zip(CONTROLS, values, strict=True)}
    view = parse_view(query, today=ctx.today())
    problems = list(view.problems)
    _, problem = _chart(query.get("chart"))
    problems += [problem] if problem else []
    known = dimension_values(ctx.engine)
    kept: dict[str, tuple[str, ...]] = {}
    for p, chosen in view.filters.items():
        unknown = [v for v in chosen if v not in known.get(p, [])]
        for v in unknown:
            problems.append(f"no usage is recorded for {p} {v[:60]!r}; that filter value "
                            f"is ignored.")
        if [v for v in chosen if v not in unknown]:
            kept[p] = tuple(v for v in chosen if v not in unknown)
    return View(view.start, view.end, view.by, view.granularity, kept), problems


def _totals_table(result: Breakdown) -> pd.DataFrame:
    t = result.totals
    return pd.DataFrame({
        _LABELS[result.by]: [k or "(none)" for k in t["key"]],
        "Requests": [format_count(v) for v in t["requests"]],
        "Input tokens": [format_count(v) for v in t["input_tokens"]],
        "Cached": [format_count(v) for v in t["cached_input_tokens"]],
        "Output tokens": [format_count(v) for v in t["output_tokens"]],
        "Cost": [format_money(c, unpriced_tokens=u)
                 for c, u in zip(t["cost"], t["unpriced_tokens"], strict=True)],
        # with unpriced usage the priced cost is spread over every request: a floor
        "Per 1k requests": [format_money(c, unpriced_tokens=u) if c is not None else "n/a"
                            for c, u in zip(t["cost_per_1k_requests"], t["unpriced_tokens"],
                                            strict=True)],
    })


def _tokens_figure(result: Breakdown, granularity: str) -> Figure:
    traces: list[dict[str, object]] = []
    for kind in TOKEN_KINDS:
        part = result.tokens[result.tokens["kind"] == kind]
        if part["tokens"].sum():
            traces.append({"type": "bar", "name": kind, "y": [int(v) for v in part["tokens"]],
                           "x": [period_label(p, granularity) for p in part["period"]]})
    return figure(traces, {"title": {"text": "Tokens by kind"}, "barmode": "stack",
                           "height": 320, "legend": {"orientation": "h", "y": -0.25}})


def update(ctx: AppContext, *values: object) -> tuple[list[object], list[object], Figure,
                                                      Figure, object]:
    """(messages, summary, spend chart, tokens chart, table) for the controls."""
    view, problems = _view(ctx, values)
    notes: list[object] = list(data_notice(data_status(ctx.engine), ctx.settings.timezone))
    result = spend_breakdown(ctx.engine, view, ctx.price_book())
    notes += messages([*problems, *result.notes])
    if not len(result.series):
        empty = empty_figure(f"No usage between {view.start} and {view.end}")
        return notes, [], empty, empty_figure(""), html.P(
            "Nothing to show for this range and these filters.", className="text-muted")
    series = result.series.assign(label=[period_label(p, view.granularity)
                                         for p in result.series["period"]])
    chart, _ = _chart(values[[n for n, _, _ in CONTROLS].index("chart")])
    fig = stacked_figure(series, x="label", key="key", y="cost",
                         title=f"Spend per {view.granularity} by {result.by} (USD)",
                         y_title="USD", kind=chart)
    total: Decimal | None = None
    for value in result.totals["cost"]:
        total = value if total is None else (total + value if value is not None else total)
    requests = int(result.totals["requests"].sum())
    unpriced = int(result.totals["unpriced_tokens"].sum())
    summary = [
        html.Span(["Total ", html.Strong(format_money(total, unpriced_tokens=unpriced),
                                         id="costs-total"),
                   f" for {format_count(requests)} requests ("]),
        html.Strong(format_money(total * 1000 / requests, unpriced_tokens=unpriced)
                    if total is not None and requests else "n/a", id="costs-per-1k"),
        " per 1,000 requests). Prompt caching saved ",
        html.Strong(format_money(result.savings) if result.savings is not None else "$0.00",
                    id="costs-savings"), ".",
    ]
    if unpriced:
        summary.append(html.Div(f"{format_count(unpriced)} tokens are unpriced: not "
                                f"included in the cost (`spendwatch prices check`).",
                                className="text-warning small"))
    return (notes, summary, fig, _tokens_figure(result, view.granularity),
            table(_totals_table(result), "costs-rows"))


def csv_export(ctx: AppContext, *values: object) -> dict[str, object]:
    view, _ = _view(ctx, values)
    result = spend_breakdown(ctx.engine, view, ctx.price_book())
    frame = result.totals.rename(columns={"key": result.by, "cost": "cost_usd",
                                          "cost_per_1k_requests": "cost_per_1k_requests_usd"})
    frame["cost_per_1k_requests_usd"] = [
        None if v is None else v.quantize(Decimal("0.000001"), ROUND_HALF_UP)
        for v in frame["cost_per_1k_requests_usd"]]
    frame["cost_per_1k_requests_usd"] = frame["cost_per_1k_requests_usd"].astype(object)
    frame.insert(0, "end", view.end.isoformat())
    frame.insert(0, "start", view.start.isoformat())
    return {"content": csv_text(frame),
            "filename": f"spend-by-{result.by}-{view.start}-{view.end}.csv",
            "type": "text/csv"}


def register(app: Dash, ctx: AppContext) -> None:
    dash.register_page(__name__, path=PATH, name="Costs", title="spendwatch: costs", order=1,
                       layout=layout)
    inputs = [Input(component, prop) for _, component, prop in CONTROLS]
    app.callback(
        Output("costs-messages", "children"), Output("costs-summary", "children"),
        Output("costs-graph", "figure"), Output("costs-tokens", "figure"),
        Output("costs-table", "children"), *inputs,
    )(guarded(lambda *values: update(ctx, *values), 5))
    app.callback(
        Output("costs-download", "data"), Input("costs-csv-button", "n_clicks"),
        *[State(component, prop) for _, component, prop in CONTROLS],
        prevent_initial_call=True,
    )(guarded(lambda _clicks, *values: csv_export(ctx, *values), 0))
    url_sync(app, "costs-url", CONTROLS)
