"""Pieces every page uses: headline cards, messages and empty states, tables,
stacked charts, CSV downloads and the clientside callback that keeps a page's
filters in its URL."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal
from html import escape as html_escape

import dash_bootstrap_components as dbc
import pandas as pd
from dash import Dash, Input, Output, dcc, html, no_update

from dashboard.filters import option
from dashboard.formatting import to_float
from dashboard.queries import DataStatus

__all__ = ["Figure", "csv_text", "data_notice", "empty_figure", "figure", "filter_dropdown",
           "guarded", "guarded_layout", "headline_card", "messages", "stacked_figure", "table",
           "url_sync"]

log = logging.getLogger("spendwatch.dashboard")

_RECORD_HINT = [
    "No usage has been recorded in this database yet. Wrap your application's client: ",
    html.Code("client = collector.instrument(OpenAI(), team=\"search\", project=\"ranker\")"),
    ", make a call, then run ", html.Code("spendwatch rollup"), " (or keep ",
    html.Code("spendwatch scheduler"), " running). To see the dashboard with realistic "
    "data first, run ", html.Code("spendwatch demo"), ".",
]


def data_notice(status: DataStatus, timezone: str) -> list[dbc.Alert]:
    """Empty-state explanations and warnings about the data as a whole."""
    out: list[dbc.Alert] = []
    if not status.has_events:
        out.append(dbc.Alert(_RECORD_HINT, color="info", className="empty-state"))
    elif not status.has_rollups:
        out.append(dbc.Alert([
            "Events are recorded but not rolled up yet. Run ", html.Code("spendwatch rollup"),
            " once, or keep ", html.Code("spendwatch scheduler"), " running (it rolls up "
            "every few minutes)."], color="info", className="empty-state"))
    if status.rollup_timezone and status.rollup_timezone != timezone:
        out.append(dbc.Alert([
            f"The rollups were built in timezone {status.rollup_timezone}, but the reporting "
            f"timezone is {timezone}: days shown are {status.rollup_timezone} days. Run ",
            html.Code("spendwatch rollup --rebuild"), " to rebuild them."], color="warning"))
    return out


def guarded(update: Callable[..., object], outputs: int) -> Callable[..., object]:
    """A callback that turns an unexpected failure (the database unreachable, say)
    into a message in its first output, never a stack trace in the browser; the
    other outputs keep what they showed. ``outputs`` 0: a single output that cannot
    show a message (a download) keeps its value; 1: a single output that shows the
    message itself."""

    def callback(*values: object) -> object:
        try:
            return update(*values)
        except Exception as exc:
            log.exception("dashboard callback failed")
            text = (f"Could not read the data: {type(exc).__name__}: "
                    f"{str(exc).splitlines()[0][:300] if str(exc) else ''}. Check that the "
                    f"database is reachable (spendwatch db current), then reload the page.")
            if outputs == 0:
                return no_update
            if outputs == 1:
                return messages([text], "danger")
            return (messages([text], "danger"), *([no_update] * (outputs - 1)))

    return callback


def guarded_layout(render: Callable[[object, dict[str, object]], html.Div], ctx: object,
                   query: dict[str, object]) -> html.Div:
    """A page layout that, when it cannot read what it needs (the database down),
    says so on the page instead of failing the route."""
    try:
        return render(ctx, query)
    except Exception as exc:
        log.exception("dashboard page failed")
        return html.Div(messages([f"Could not open this page: {type(exc).__name__}: "
                                  f"{str(exc).splitlines()[0][:300] if str(exc) else ''}. "
                                  f"Check that the database is reachable (spendwatch db "
                                  f"current), then reload."], "danger"))


def messages(texts: Iterable[str], color: str = "warning") -> list[dbc.Alert]:
    """One alert per message (Dash escapes the text: a value from a URL stays text)."""
    return [dbc.Alert(t, color=color, className="py-2 mb-2 page-message") for t in texts]


def headline_card(title: str, value: str, change: str, note: str, card_id: str) -> dbc.Col:
    return dbc.Col(dbc.Card(dbc.CardBody([
        html.Div(title, className="text-muted small"),
        html.H4(value, className="mb-0 headline-value", id=f"{card_id}-value"),
        html.Div([html.Span(change, className="fw-semibold"), " ", note],
                 className="small text-muted", id=f"{card_id}-change"),
    ])), xs=12, sm=6, lg=3, className="mb-3")


def filter_dropdown(component_id: str, label: str, chosen: Sequence[str],
                    known: Sequence[str]) -> dbc.Col:
    """A multi-select filter: every recorded value, plus any chosen one the database
    does not know (so a shared URL shows what it asked for; the callback says it is
    unknown)."""
    values = [*known, *(v for v in chosen if v not in known)]
    return dbc.Col([
        html.Label(label, htmlFor=component_id, className="small mb-0"),
        dcc.Dropdown(id=component_id, multi=True, value=[option(v)["value"] for v in chosen],
                     placeholder="all", options=[option(v) for v in values])], md=4, lg=2)


def table(frame: pd.DataFrame, table_id: str) -> dbc.Table:
    """A plain HTML table of already formatted text."""
    return dbc.Table.from_dataframe(frame, striped=True, bordered=False, hover=True,
                                    size="sm", id=table_id, className="small")


#: A Plotly figure as the plain dict dcc.Graph accepts (building graph_objects
#: validates every property, which cost more than the queries behind a page).
Figure = dict[str, object]


def figure(traces: list[dict[str, object]], layout: dict[str, object]) -> Figure:
    base: dict[str, object] = {"margin": {"l": 50, "r": 10, "t": 50, "b": 10},
                               "legend": {"orientation": "h", "y": -0.2}}
    return {"data": traces, "layout": {**base, **layout}}


def empty_figure(text: str) -> Figure:
    return figure([], {"xaxis": {"visible": False}, "yaxis": {"visible": False},
                       "height": 320, "annotations": [{"text": text, "showarrow": False,
                                                       "font": {"size": 14}}]})


def stacked_figure(frame: pd.DataFrame, *, x: str, key: str, y: str, title: str,
                   y_title: str, kind: str = "bar") -> Figure:
    """One trace per value of ``key`` (largest total first), stacked. Money columns
    (Decimal or None) become floats here and only here; None stays a gap; a key with
    no value at all (unpriced spend) gets no trace."""
    series: dict[str, tuple[list[str], list[float | None]]] = {}
    for xv, name, value in zip(frame[x], frame[key], frame[y], strict=True):
        xs, ys = series.setdefault(name, ([], []))
        xs.append(str(xv))
        ys.append(to_float(value) if isinstance(value, Decimal) or value is None
                  else float(value))
    traces: list[dict[str, object]] = []
    for name in _keys_by_total(frame, key, y):
        xs, ys = series[name]
        if all(v is None for v in ys):
            continue
        # tag values are user data: plotly renders a subset of HTML in names
        label = html_escape(name) if name != "" else "(none)"
        if kind == "area":
            traces.append({"type": "scatter", "x": xs, "y": ys, "name": label,
                           "stackgroup": "one", "mode": "lines"})
        else:
            traces.append({"type": "bar", "x": xs, "y": ys, "name": label})
        if y_title == "USD":
            traces[-1]["hovertemplate"] = f"{label}: $%{{y:,.4f}}<extra>%{{x}}</extra>"
    yaxis: dict[str, object] = {"title": {"text": y_title}}
    if y_title == "USD":
        yaxis["tickprefix"] = "$"
    return figure(traces, {"title": {"text": title}, "barmode": "stack", "height": 380,
                           "yaxis": yaxis})


def _keys_by_total(frame: pd.DataFrame, key: str, y: str) -> list[str]:
    totals: dict[str, float] = {}
    for name, value in zip(frame[key], frame[y], strict=True):
        totals[name] = totals.get(name, 0.0) + (float(value) if value is not None else 0.0)
    return sorted(totals, key=lambda k: (-totals[k], k))


def csv_text(frame: pd.DataFrame) -> str:
    """CSV with exact decimals (Decimal's own text, never a float's)."""
    out = frame.copy()
    for column in out.columns:
        if out[column].dtype == object:
            out[column] = [_csv_value(v) for v in out[column]]
    return str(out.to_csv(index=False))


def _csv_value(value: object) -> object:
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    return "" if value is None else value


def url_sync(app: Dash, store_id: str, params: Sequence[tuple[str, str, str]]) -> None:
    """Keep the page's URL query string equal to its controls, without reloading the
    page: ``params`` is (query name, component id, property). ``history.replaceState``
    does not notify Dash's router, so the page is not rendered again."""
    names = json.dumps([p[0] for p in params])
    app.clientside_callback(
        f"""
        function() {{
            const names = {names};
            const query = new URLSearchParams();
            const args = arguments;
            names.forEach(function(name, i) {{
                const value = args[i];
                if (value === null || value === undefined || value === "") return;
                (Array.isArray(value) ? value : [value]).forEach(function(v) {{
                    if (v !== null && v !== "") query.append(name, String(v));
                }});
            }});
            const text = query.toString();
            const url = window.location.pathname + (text ? "?" + text : "");
            if (url !== window.location.pathname + window.location.search) {{
                window.history.replaceState(window.history.state, "", url);
            }}
            return text;
        }}
        """,
        Output(store_id, "data"),
        [Input(component, prop) for _, component, prop in params],
    )
