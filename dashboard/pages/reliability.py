"""Reliability (being built)."""

from __future__ import annotations

import dash
from dash import Dash, html

from dashboard.app import AppContext

__all__ = ["layout", "register"]


def layout(**query: object) -> html.Div:
    return html.Div([html.H3("Reliability"), html.P("This page is being built.")])


def register(app: Dash, ctx: AppContext) -> None:
    dash.register_page(__name__, path="/reliability", name="Reliability", order=2, layout=layout)
