"""Reliability: request volume, error rate by class (429, other 4xx, 5xx, network)
over time by model or endpoint, latency p50/p95/p99 and time to first token,
retries, and the most recent failed requests."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape as html_escape

import dash
import dash_bootstrap_components as dbc
import pandas as pd
from dash import Dash, Input, Output, dcc, html

from dashboard.app import AppContext, current_context
from dashboard.breakdown import period_label
from dashboard.components import (
    Figure,
    data_notice,
    empty_figure,
    figure,
    filter_dropdown,
    guarded,
    guarded_layout,
    messages,
    stacked_figure,
    table,
)
from dashboard.components import url_sync as _url_sync
from dashboard.filters import GRANULARITIES, View, as_list, parse_view
from dashboard.formatting import format_count, format_ms, format_percent
from dashboard.queries import ERROR_CLASSES, data_status, dimension_values
from dashboard.reliability import BY_CHOICES, by_key, over_time, recent_failures

__all__ = ["CONTROLS", "ERROR_VIEWS", "LIMITS", "layout", "register", "render_layout",
           "update"]

PATH = "/reliability"
LIMITS = (20, 50, 100, 200)
#: The error-rate chart: one line per class over everything shown ("class"), or one
#: line per model / endpoint for all errors or for one class.
ERROR_VIEWS = {"class": "by class", "all": "all errors, per {by}",
               "rate_limit": "429s, per {by}", "client": "other 4xx, per {by}",
               "server": "5xx, per {by}", "network": "network, per {by}"}
_FILTERS = ("model", "team", "project", "endpoint", "tier")
_LABELS = {"model": "Model", "team": "Team", "project": "Project", "endpoint": "Endpoint",
           "tier": "Service tier"}
CONTROLS: tuple[tuple[str, str, str], ...] = (
    ("start", "rel-dates", "start_date"), ("end", "rel-dates", "end_date"),
    ("granularity", "rel-granularity", "value"), ("by", "rel-by", "value"),
    ("limit", "rel-limit", "value"), ("errors", "rel-errors-view", "value"),
    *((p, f"rel-filter-{p}", "value") for p in _FILTERS),
)


def layout(**query: object) -> html.Div:
    return guarded_layout(render_layout, current_context(), query)


def _limit(raw: object) -> tuple[int, list[str]]:
    values = as_list(raw)
    if not values:
        return LIMITS[0], []
    try:
        value = int(values[-1])
    except ValueError:
        value = -1
    if value not in LIMITS:
        return LIMITS[0], [f"limit {values[-1][:20]!r} is not one of "
                           f"{', '.join(map(str, LIMITS))}; showing {LIMITS[0]}."]
    return value, []


def _errors_view(raw: object) -> tuple[str, list[str]]:
    values = as_list(raw)
    if not values or values[-1] in ERROR_VIEWS:
        return (values[-1] if values else "class"), []
    return "class", [f"error view {values[-1][:30]!r} is not one of "
                     f"{', '.join(ERROR_VIEWS)}; showing the rate by class."]


def render_layout(ctx: AppContext, query: dict[str, object]) -> html.Div:
    view = parse_view(query, today=ctx.today(), default_days=14, by_choices=BY_CHOICES)
    limit, problems = _limit(query.get("limit"))
    errors_view, more = _errors_view(query.get("errors"))
    problems += more
    options = dimension_values(ctx.engine)
    filters = [filter_dropdown(f"rel-filter-{p}", _LABELS[p], view.filters.get(p, ()),
                               options.get(p, [])) for p in _FILTERS]

    def select(component_id: str, value: object, choices: Sequence[object]) -> dbc.Select:
        return dbc.Select(id=component_id, value=str(value),
                          options=[{"label": str(c), "value": str(c)} for c in choices])

    def labelled(text: str, component: object, component_id: str) -> dbc.Col:
        return dbc.Col([html.Label(text, htmlFor=component_id, className="small mb-0 d-block"),
                        component], width="auto")

    return html.Div([
        dcc.Store(id="rel-url"),
        html.H3("Reliability"),
        html.Div(messages([*view.problems, *problems]), id="rel-url-messages"),
        html.Div(id="rel-messages"),
        dbc.Row([
            labelled("Dates", dcc.DatePickerRange(
                id="rel-dates", start_date=view.start.isoformat(), end_date=view.end.isoformat(),
                display_format="YYYY-MM-DD", first_day_of_week=1), "rel-dates"),
            labelled("Granularity", select("rel-granularity", view.granularity, GRANULARITIES),
                     "rel-granularity"),
            labelled("By", select("rel-by", view.by, BY_CHOICES), "rel-by"),
            labelled("Failed requests shown", select("rel-limit", limit, LIMITS), "rel-limit"),
            labelled("Error rate", dbc.Select(
                id="rel-errors-view", value=errors_view,
                options=[{"label": label.format(by="model or endpoint"), "value": v}
                         for v, label in ERROR_VIEWS.items()]), "rel-errors-view"),
        ], className="g-3 align-items-end mb-2"),
        dbc.Row(filters, className="g-2 mb-3"),
        html.Div(id="rel-summary", className="mb-2"),
        dcc.Loading(dcc.Graph(id="rel-volume", config={"displaylogo": False})),
        dbc.Row([dbc.Col(dcc.Graph(id="rel-errors", config={"displaylogo": False}), lg=6),
                 dbc.Col(dcc.Graph(id="rel-latency", config={"displaylogo": False}), lg=6)]),
        html.H5("By model or endpoint"),
        html.Div(id="rel-table"),
        html.H5("Most recent failed requests", className="mt-3"),
        html.Div(id="rel-failures"),
    ])


def _view(ctx: AppContext, values: Sequence[object]) -> tuple[View, int, list[str]]:
    query = {name: value for (name, _, _), value in zip(CONTROLS, values, strict=True)}
    view = parse_view(query, today=ctx.today(), default_days=14, by_choices=BY_CHOICES)
    limit, problems = _limit(query.get("limit"))
    problems = [*view.problems, *problems, *_errors_view(query.get("errors"))[1]]
    known = dimension_values(ctx.engine)
    kept: dict[str, tuple[str, ...]] = {}
    for p, chosen in view.filters.items():
        if p not in _FILTERS:
            continue
        good = tuple(v for v in chosen if v in known.get(p, []))
        problems += [f"no usage is recorded for {p} {v[:60]!r}; that filter value is ignored."
                     for v in chosen if v not in good]
        if good:
            kept[p] = good
    return View(view.start, view.end, view.by, view.granularity, kept), limit, problems


def _lines(frame: pd.DataFrame, columns: dict[str, str], title: str, y_title: str,
           granularity: str, percent: bool = False) -> Figure:
    x = [period_label(p, granularity) for p in frame["period"]]
    traces: list[dict[str, object]] = []
    for column, name in columns.items():
        ys = [None if pd.isna(v) else float(v) for v in frame[column]]
        if any(v is not None for v in ys):
            traces.append({"type": "scatter", "x": x, "y": ys, "name": name,
                           "mode": "lines+markers"})
    yaxis: dict[str, object] = {"title": {"text": y_title}}
    if percent:
        yaxis["tickformat"] = ".1%"
    return figure(traces, {"title": {"text": title}, "height": 340, "yaxis": yaxis,
                           "legend": {"orientation": "h", "y": -0.25}})


def _key_lines(keyed: pd.DataFrame, column: str, title: str) -> Figure:
    """One line per model (or endpoint): ``column`` (a rate) over time."""
    series: dict[str, tuple[list[str], list[float | None]]] = {}
    for key, label, value in zip(keyed["key"], keyed["label"], keyed[column], strict=True):
        xs, ys = series.setdefault(key, ([], []))
        xs.append(label)
        ys.append(None if pd.isna(value) else float(value))
    traces: list[dict[str, object]] = [
        {"type": "scatter", "x": xs, "y": ys, "name": html_escape(key) or "(none)",
         "mode": "lines+markers"} for key, (xs, ys) in sorted(series.items())]
    return figure(traces, {"title": {"text": title}, "height": 340,
                           "yaxis": {"title": {"text": "share of requests"},
                                     "tickformat": ".1%"},
                           "legend": {"orientation": "h", "y": -0.25}})


def _key_table(frame: pd.DataFrame, by: str) -> pd.DataFrame:
    return pd.DataFrame({
        by.capitalize(): [k or "(none)" for k in frame["key"]],
        "Requests": [format_count(v) for v in frame["requests"]],
        **{label: [format_percent(None if pd.isna(v) else v, 2)
                   for v in frame[f"rate_{column}"]] for column, label in ERROR_CLASSES.items()},
        "Retries": [format_count(v) for v in frame["retries"]],
        **{f"Latency {q}": [format_ms(None if pd.isna(v) else v)
                            for v in frame[f"latency_{q}"]] for q in ("p50", "p95", "p99")},
        **{f"TTFT {q}": [format_ms(None if pd.isna(v) else v) for v in frame[f"ttft_{q}"]]
           for q in ("p50", "p95")},
    })


def _failures_table(ctx: AppContext, view: View, limit: int) -> object:
    failures = recent_failures(ctx.engine, view, ctx.settings.timezone, limit)
    if not len(failures):
        return html.P("No failed requests in this range.", className="text-muted")
    shown = pd.DataFrame({
        "Time": [t.strftime("%Y-%m-%d %H:%M:%S") for t in failures["time"]],
        "Model": failures["model"], "Endpoint": failures["endpoint"],
        "Team": [v or "" for v in failures["team"]],
        "Project": [v or "" for v in failures["project"]],
        "Status": [str(int(s)) if pd.notna(s) else "no response" for s in failures["status"]],
        "Error": failures["error"], "Class": [v or "" for v in failures["error_class"]],
        "Attempts": failures["attempts"],
        "Latency": [format_ms(None if pd.isna(v) else v) for v in failures["latency_ms"]],
        "Request id": [v or "" for v in failures["request_id"]],
    })
    return table(shown, "rel-failures-rows")


def update(ctx: AppContext, *values: object) -> tuple[object, ...]:
    """(messages, summary, volume, error rates, latency, table, failures)."""
    view, limit, problems = _view(ctx, values)
    notes: list[object] = [*data_notice(data_status(ctx.engine), ctx.settings.timezone),
                           *messages(problems)]
    keyed, overall = over_time(ctx.engine, view, view.by)
    if not len(overall):
        empty = empty_figure(f"No requests between {view.start} and {view.end}")
        return (notes, [], empty, empty_figure(""), empty_figure(""),
                html.P("Nothing to show.", className="text-muted"),
                _failures_table(ctx, view, limit))
    keyed = keyed.assign(label=[period_label(p, view.granularity) for p in keyed["period"]])
    volume = stacked_figure(keyed, x="label", key="key", y="requests",
                            title=f"Requests per {view.granularity} by {view.by}",
                            y_title="requests")
    errors_view, _ = _errors_view(values[[n for n, _, _ in CONTROLS].index("errors")])
    if errors_view == "class":
        errors = _lines(overall, {f"rate_{c}": label for c, label in ERROR_CLASSES.items()},
                        "Error rate by class", "share of requests", view.granularity,
                        percent=True)
    else:
        errors = _key_lines(keyed, "error_rate" if errors_view == "all"
                            else f"rate_errors_{errors_view}",
                            f"Error rate ({ERROR_VIEWS[errors_view].format(by=view.by)})")
    latency = _lines(overall, {"latency_p50": "latency p50", "latency_p95": "latency p95",
                               "latency_p99": "latency p99", "ttft_p50": "TTFT p50",
                               "ttft_p95": "TTFT p95"}, "Latency and time to first token",
                     "ms", view.granularity)
    requests = int(overall["requests"].sum())
    failed = int(overall["errors"].sum())
    summary = [html.Span([html.Strong(format_count(requests), id="rel-requests"),
                          " requests, ", html.Strong(format_count(failed)), " failed (",
                          html.Strong(format_percent(failed / requests if requests else None,
                                                     2), id="rel-error-rate"),
                          "), ", html.Strong(format_count(int(overall["retries"].sum()))),
                          " retries by the SDK."])]
    return (notes, summary, volume, errors, latency,
            table(_key_table(by_key(ctx.engine, view, view.by), view.by), "rel-rows"),
            _failures_table(ctx, view, limit))


def register(app: Dash, ctx: AppContext) -> None:
    dash.register_page(__name__, path=PATH, name="Reliability",
                       title="spendwatch: reliability", order=2, layout=layout)
    app.callback(
        Output("rel-messages", "children"), Output("rel-summary", "children"),
        Output("rel-volume", "figure"), Output("rel-errors", "figure"),
        Output("rel-latency", "figure"), Output("rel-table", "children"),
        Output("rel-failures", "children"),
        *[Input(component, prop) for _, component, prop in CONTROLS],
    )(guarded(lambda *values: update(ctx, *values), 7))
    _url_sync(app, "rel-url", CONTROLS)
