"""Costs (being built)."""

from __future__ import annotations

import dash
from dash import Dash, html

from dashboard.app import AppContext

__all__ = ["layout", "register"]


def layout(**query: object) -> html.Div:
    return html.Div([html.H3("Costs"), html.P("This page is being built.")])


def register(app: Dash, ctx: AppContext) -> None:
    dash.register_page(__name__, path="/costs", name="Costs", order=1, layout=layout)
