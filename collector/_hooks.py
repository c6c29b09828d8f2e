"""Counting HTTP attempts and reading status and ``x-request-id`` of each one.

The SDK retries by itself (429, 5xx, connection errors), sending each attempt with
its HTTP client's ``send``. The collector wraps that ``send`` on the client
instance: the wrapper counts every attempt (one that never got a response too) and
keeps the last response's status and headers. The logical call an attempt belongs to
is the one the wrapper of the API method registered for the duration of the call,
as a list ``sent``: ``[attempts, last status, last headers, an earlier attempt's
request id]`` (a list, built in one step: the wrapper builds its :class:`Call` only
after the call, and none at all for a complete result, see ``PlainCall``):

* a sync client sends on the thread that made the call, so the call is found by
  thread id in :data:`SYNC_CALLS` (``_thread.get_ident()``, looked up on every call:
  gevent's monkey-patching makes it the greenlet's id, tests/collector/test_gevent.py).
  A plain dict, where a context variable's ``set`` and ``reset`` (a new context
  mapping and a token per call, and every context variable's cache invalidated) cost
  2.7-6.1 us more per call, measured A/B over an in-memory transport, eight clients
  a side, three hash seeds;
* an async client's concurrent calls share one thread, so their calls are found
  through the context variable :data:`CURRENT_CALL` (each asyncio task has its own
  context). A dict by asyncio task instead (``asyncio.current_task()``, with the
  context variable kept for other event loops) measured no faster: +1.2 us on average
  over six A/B runs, within their spread.

One wrapper frame per attempt, where httpx's request and response event hooks took
two (and httpx's loops over the hook lists): ~1.5-2 us less per call on the local
server, measured A/B with cold caches. Redirects followed inside ``send`` are one
attempt, as they are one try of the SDK's.
"""

from __future__ import annotations

import _thread
import contextlib
import contextvars
import logging
import weakref
from collections.abc import Awaitable, Callable, Iterator

import httpx2

from ._recorder import request_id_of

__all__ = ["CURRENT_CALL", "SYNC_CALLS", "Sent", "calling", "install_hooks", "new_sent"]

log = logging.getLogger("spendwatch.collector")

#: ``[attempts, last status, last headers, an earlier attempt's request id]``
Sent = list[object]
#: What each thread's call with a sync client sent, by ``_thread.get_ident()``.
SYNC_CALLS: dict[int, Sent] = {}
#: What the current asyncio task's (or context's) call with an async client sent.
CURRENT_CALL: contextvars.ContextVar[Sent | None] = contextvars.ContextVar(
    "spendwatch_call", default=None)


def new_sent() -> Sent:
    """What a call has sent before its first attempt (the wrappers build it inline)."""
    return [0, None, None, None]


@contextlib.contextmanager
def calling(sent: Sent, is_async: bool) -> Iterator[None]:
    """Count the HTTP attempts made meanwhile in ``sent``: what the API method
    wrappers do inline (a frame less per call), for code off the hot path."""
    if is_async:
        token = CURRENT_CALL.set(sent)
        try:
            yield
        finally:
            CURRENT_CALL.reset(token)
        return
    me = _thread.get_ident()
    outer = SYNC_CALLS.get(me)
    SYNC_CALLS[me] = sent
    try:
        yield
    finally:
        if outer is None:
            SYNC_CALLS.pop(me, None)
        else:
            SYNC_CALLS[me] = outer

_MARK = "_spendwatch_send"


def _sync_send(http_client: object) -> Callable[..., object]:
    """``http_client.send``, counting the attempts of the current call. The client is
    referred to weakly: the wrapper is stored on it."""
    ref = weakref.ref(http_client)
    own = vars(http_client).get("send")  # somebody's wrapper already: keep it
    plain: Callable[..., object] = (type(http_client).send  # type: ignore[attr-defined]
                                    if own is None else
                                    lambda _client, request, **kwargs: own(request, **kwargs))

    def send(request: httpx2.Request, **kwargs: object) -> object:
        sent = SYNC_CALLS.get(_thread.get_ident())
        if sent is None:
            return plain(ref(), request, **kwargs)
        sent[0] += 1  # type: ignore[operator]
        response = plain(ref(), request, **kwargs)
        try:  # the status, and the headers, read for the request id only when the
            # call ends and neither its result nor its exception carries one (~0.7 us)
            sent[1] = response.status_code  # type: ignore[attr-defined]
            if sent[2] is not None:  # a retry: the earlier attempt's id, if any
                sent[3] = request_id_of(sent[2]) or sent[3]
            sent[2] = response.headers  # type: ignore[attr-defined]
        except Exception:
            log.exception("spendwatch: could not read an HTTP response")
        return response

    setattr(send, _MARK, True)
    return send


def _async_send(http_client: object) -> Callable[..., Awaitable[object]]:
    """:func:`_sync_send` for an async HTTP client."""
    ref = weakref.ref(http_client)
    own = vars(http_client).get("send")
    plain: Callable[..., Awaitable[object]] = (
        type(http_client).send if own is None  # type: ignore[attr-defined]
        else lambda _client, request, **kwargs: own(request, **kwargs))

    async def send(request: httpx2.Request, **kwargs: object) -> object:
        sent = CURRENT_CALL.get()
        if sent is None:
            return await plain(ref(), request, **kwargs)
        sent[0] += 1  # type: ignore[operator]
        response = await plain(ref(), request, **kwargs)
        try:  # as in _sync_send (inline in both: a frame less per call)
            sent[1] = response.status_code  # type: ignore[attr-defined]
            if sent[2] is not None:
                sent[3] = request_id_of(sent[2]) or sent[3]
            sent[2] = response.headers  # type: ignore[attr-defined]
        except Exception:
            log.exception("spendwatch: could not read an HTTP response")
        return response

    setattr(send, _MARK, True)
    return send


def install_hooks(http_client: object, is_async: bool) -> bool:
    """Wrap the ``send`` of an HTTP client once (clients made by ``with_options()``
    share it). Returns whether attempts can be counted."""
    send = getattr(http_client, "send", None)
    if not callable(send) or not hasattr(http_client, "__dict__"):
        return False
    if getattr(send, _MARK, False):
        return True
    try:
        http_client.send = (_async_send if is_async  # type: ignore[attr-defined]
                            else _sync_send)(http_client)
    except Exception:  # pragma: no cover - an exotic http client
        log.debug("spendwatch: cannot wrap the send of %r", http_client, exc_info=True)
        return False
    return True
