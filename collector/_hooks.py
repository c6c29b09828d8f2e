"""Counting HTTP attempts and reading status and ``x-request-id`` of each one.

The SDK retries by itself (429, 5xx, connection errors). A request event hook on
the client's HTTP client sees every attempt, including ones that never got a
response; the logical call it belongs to is found through a context variable set
by the wrapper for the duration of the call.
"""

from __future__ import annotations

import contextvars
import logging

from ._recorder import Call

__all__ = ["CURRENT_CALL", "install_hooks"]

log = logging.getLogger("spendwatch.collector")

CURRENT_CALL: contextvars.ContextVar[Call | None] = contextvars.ContextVar(
    "spendwatch_call", default=None)


def _on_request(request: object) -> None:
    call = CURRENT_CALL.get()
    if call is not None:
        call.attempts += 1


def _on_response(response: object) -> None:
    call = CURRENT_CALL.get()
    if call is not None:
        call.status = getattr(response, "status_code", None)
        if call.headers is not None:  # a retry: the earlier attempt's id, if it had one
            call.take_request_id()
        # Looked up when the call ends, and only if the result or the error does not
        # carry the id (the SDK's parsed results do): a header lookup costs ~0.7 us.
        call.headers = getattr(response, "headers", None)


async def _on_request_async(request: object) -> None:
    _on_request(request)


async def _on_response_async(response: object) -> None:
    _on_response(response)


def install_hooks(http_client: object, is_async: bool) -> bool:
    """Add the hooks to an httpx client once (clients made by ``with_options()``
    share it). Returns whether attempts can be counted."""
    hooks = getattr(http_client, "event_hooks", None)
    if not isinstance(hooks, dict):
        return False
    req_hook, resp_hook = ((_on_request_async, _on_response_async) if is_async
                           else (_on_request, _on_response))
    request_hooks = list(hooks.get("request", []))
    response_hooks = list(hooks.get("response", []))
    if req_hook in request_hooks:
        return True
    try:
        http_client.event_hooks = {  # type: ignore[attr-defined]
            "request": [*request_hooks, req_hook],
            "response": [*response_hooks, resp_hook],
        }
    except Exception:  # pragma: no cover - an exotic http client
        log.debug("spendwatch: cannot add HTTP hooks to %r", http_client, exc_info=True)
        return False
    return True
