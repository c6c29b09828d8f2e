"""Watching a stream without changing what the caller gets.

The ``Stream`` / ``AsyncStream`` object is returned as it is (``isinstance``,
``with`` and ``async with`` keep working). A Chat Completions (or legacy
Completions) stream whose usage the collector asked for is watched through its
server-sent events, before the SDK parses them (:class:`_Events` takes the place of
``stream._decoder``); any other stream through the SDK's parsed chunks
(``stream._iterator`` is replaced by an observer).
The HTTP response's ``close`` / ``aclose`` is wrapped. Every way a stream can end
goes through one of those: read to the end, ``close()``, a ``with`` block, the SDK's
stream helpers (which close the HTTP response directly), or garbage collection of an
unfinished stream (the SDK's generator closes the response; the observer's
``__del__`` is the backstop, even for a stream never read). The async observers are
classes, not async generators, so no async-generator finalisation by the event loop
is involved.
"""

from __future__ import annotations

import json
import logging
import sys
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from functools import partial
from types import FrameType

from openai import AsyncStream, Stream

from ._recorder import _LIVE, Call, _perf_ns
from .usage import read_usage

__all__ = ["hook_close", "observe_stream"]

log = logging.getLogger("spendwatch.collector")
_new = object.__new__


def _keep(call: Call, item: object) -> bool:
    """Whether to pass ``item`` on to the caller, looking into it only when it can
    say something new: before the first token, and when it carries usage or a
    Responses-API ``response`` (the model and tier are read from those too). The
    other chunks cost two dict lookups: ~6 chunks per stream through the full
    :meth:`Call.observe` measured ~2 us each with cold CPU caches."""
    try:
        fields = item.__dict__  # a pydantic model (the SDK's chunks and events)
        extra = item.__pydantic_extra__  # type: ignore[attr-defined]
    except AttributeError:  # anything else (a dict): the full look
        return call.observe(item)
    if (call.first_token_ns is None or fields.get("usage") is not None
            or fields.get("response") is not None
            or (extra and ("usage" in extra or "response" in extra))):
        return call.observe(item)
    return True


def _keep_event(call: Call, sse: object) -> bool:
    """Whether to pass a Chat Completions (or legacy Completions) server-sent event
    on to the SDK, which turns it into a chunk; False for the usage-only chunk the
    collector asked for on the caller's behalf, which the SDK then never parses.

    Looks at the event's text, not at a parsed chunk: the first event with choices
    is the first token (its text is kept, and parsed for the model and tier on the
    writer's thread only if no usage chunk names them), and only an event whose
    ``usage`` is not null is parsed here (:func:`_usage_event`). Every other event
    costs three substring searches."""
    try:
        data = sse._data  # type: ignore[attr-defined]  # the SDK's ServerSentEvent
    except AttributeError:
        data = getattr(sse, "data", None)
        if not isinstance(data, str):
            return True
    if (call.first_token_ns is None and '"choices"' in data
            and '"choices":[]' not in data and '"choices": []' not in data):
        call.first_token_ns = _perf_ns()
        call.first_data = data
    if '"usage"' not in data or '"usage":null' in data or '"usage": null' in data:
        return True
    return _usage_event(call, data)


def _usage_event(call: Call, data: str) -> bool:
    """An event that may carry usage: parse it, take its counts, model and tier;
    False (hide it) when it is the usage-only chunk the collector asked for: no
    choices, no error (an error event always reaches the SDK, which raises it)."""
    try:
        chunk = json.loads(data)
    except ValueError:  # not JSON: the SDK's to judge
        return True
    if type(chunk) is not dict or chunk.get("usage") is None:
        return True
    hide = call.hide_usage_chunk and not chunk.get("choices") and not chunk.get("error")
    try:  # decided first: hidden even if reading the counts fails
        call.usage = read_usage(chunk["usage"]) or call.usage
        model = chunk.get("model")  # Call.take_model, inline
        if isinstance(model, str) and model:
            call.model = model
        tier = chunk.get("service_tier")
        if isinstance(tier, str) and tier:
            call.service_tier = tier
    except Exception:
        log.exception("spendwatch: could not read a stream chunk")
    return not hide


class _Events:
    """``stream._decoder`` of a Chat Completions stream: the SDK's own decoder, whose
    events pass :func:`_keep_event` before the SDK parses them.

    Watching the text instead of the SDK's chunks means no layer of ours between
    the SDK's iterator and the caller's loop, and the usage-only chunk the collector
    asks for is never turned into a pydantic model: the SDK spends longer building
    that one chunk than the collector spends on the whole stream (README,
    Benchmarks).

    Made by :func:`observe_stream` without ``__init__`` (a frame less per stream).
    Dropped unfinished (even never read), :meth:`__del__` records the call."""

    __slots__ = ("_call", "_inner")

    _call: Call
    _inner: object  # the SDK's SSEDecoder

    def iter_bytes(self, iterator: Iterator[bytes]) -> Iterator[object]:
        return filter(partial(_keep_event, self._call),
                      self._inner.iter_bytes(iterator))  # type: ignore[attr-defined]

    def aiter_bytes(self, iterator: AsyncIterator[bytes]) -> AsyncIterator[object]:
        return _AsyncEvents(self._inner.aiter_bytes(iterator),  # type: ignore[attr-defined]
                            self._call)

    def __getattr__(self, name: str) -> object:
        if name in _Events.__slots__:  # not set yet: no recursion through _inner
            raise AttributeError(name)
        return getattr(self._inner, name)

    def __del__(self) -> None:
        call = self._call
        if id(call) in _LIVE:  # finish_stream never raises
            call.finish_stream()


class _AsyncEvents:
    """:meth:`_Events.aiter_bytes`: the async decoder's events through
    :func:`_keep_event`."""

    __slots__ = ("_call", "_it")

    def __init__(self, it: AsyncIterator[object], call: Call) -> None:
        self._it = it
        self._call = call

    def __aiter__(self) -> _AsyncEvents:
        return self

    async def __anext__(self) -> object:
        while True:
            sse = await self._it.__anext__()
            if _keep_event(self._call, sse):
                return sse

    async def aclose(self) -> None:
        aclose = getattr(self._it, "aclose", None)
        if aclose is not None:
            await aclose()


class _Chunks(filter):  # type: ignore[type-arg]
    """``stream._iterator`` of a sync stream other than a chat stream whose usage the
    collector asked for (those are watched by :class:`_Events`): the SDK's chunks,
    filtered by :func:`_keep`
    (``Stream.__next__`` and ``Stream.__iter__`` both read ``_iterator``).

    A ``filter`` and not a generator: on a real connection each chunk arrives after
    a wait, so the code that looks at it runs with cold CPU caches, and in Python
    3.11 every generator level a chunk passes through is another run of the
    interpreter loop. Measured on a six-chunk stream from a local server (caller CPU,
    medians of 3,000): +25 us added with a generator, +22 us with this.

    How a stream ends: read to the end or closed, the SDK closes the HTTP response,
    whose close hook records the call; garbage-collected unfinished (even never
    read), :meth:`__del__` records it."""

    __slots__ = ("call",)

    def __del__(self) -> None:
        call = self.call
        if id(call) in _LIVE:  # finish_stream never raises
            call.finish_stream()


class _AsyncChunks:
    """``stream._iterator`` of an ``AsyncStream``: a class, not an async generator, so
    that no async-generator finalisation by the event loop is involved."""

    __slots__ = ("_call", "_it")

    def __init__(self, it: AsyncIterator[object], call: Call) -> None:
        self._it = it
        self._call = call

    def __aiter__(self) -> _AsyncChunks:
        return self

    async def __anext__(self) -> object:
        call = self._call
        while True:
            try:
                item = await self._it.__anext__()
            except StopAsyncIteration:
                call.finish_stream()
                raise
            except BaseException as exc:
                call.finish_stream(exc)
                raise
            if _keep(call, item):
                return item

    async def aclose(self) -> None:
        aclose = getattr(self._it, "aclose", None)
        if aclose is not None:
            await aclose()

    def __del__(self) -> None:
        if id(self._call) in _LIVE:
            self._call.finish_stream()


def hook_close(response: object, on_close: Callable[[BaseException | None], None],
               is_async: bool) -> None:
    """Call ``on_close`` after the first ``response.close()`` / ``aclose()``, with the
    error the stream failed with, if it did (see :func:`_failure`).

    A stream read to the end is closed twice (by httpx when the body ends, then by
    the SDK's generator): the second close is passed straight on.

    The hook is stored on the response itself, so it refers to the response only
    weakly: a strong reference would make a cycle that keeps every finished response
    (headers, buffers) alive until the cyclic garbage collector runs, which measurably
    slows the whole application down."""
    ref = weakref.ref(response)
    hooked = True
    if is_async:
        original_aclose = type(response).aclose  # type: ignore[attr-defined]

        async def aclose() -> None:
            nonlocal hooked
            target = ref()
            if not hooked:  # closed before: nothing new to record
                if target is not None:
                    await original_aclose(target)
                return
            hooked = False
            error = sys.exc_info()[1]
            if error is not None:
                error = _failure(error, sys._getframe(1))
            try:
                if target is not None:
                    await original_aclose(target)
            finally:
                on_close(error)

        response.aclose = aclose  # type: ignore[attr-defined]
    else:
        original_close = type(response).close  # type: ignore[attr-defined]

        def close() -> None:
            nonlocal hooked
            target = ref()
            if not hooked:  # closed before: nothing new to record
                if target is not None:
                    original_close(target)
                return
            hooked = False
            error = sys.exc_info()[1]
            if error is not None:
                error = _failure(error, sys._getframe(1))
            try:
                if target is not None:
                    original_close(target)
            finally:
                on_close(error)

        response.close = close  # type: ignore[attr-defined]


def _failure(error: BaseException, closer: FrameType) -> BaseException | None:
    """The exception a stream failed with: ``error`` (the one being handled while its
    response is closed) when the code closing the response (``closer``) is the SDK's
    stream generator on its way out with it.

    An error event inside a stream (the SDK raises ``APIError``), a connection lost
    mid-way or a cancelled task unwinds through the generator's ``finally``, which
    closes the response before the exception reaches the caller (or the observer):
    without this the close hook recorded the call as a success. The exception must be
    unwinding through ``closer`` itself (its traceback starts there): an exception
    the caller is handling while a stream ends normally or is closed is not the
    stream's, and a stream closed early (``GeneratorExit``) did not fail."""
    if isinstance(error, GeneratorExit):
        return None
    tb = error.__traceback__
    return error if tb is not None and tb.tb_frame is closer else None


def observe_stream(call: Call, stream: Stream[object] | AsyncStream[object]) -> None:
    """Instrument ``stream`` in place for ``call``: a Chat Completions stream whose
    usage the collector asked for through its server-sent events (:class:`_Events`:
    the usage-only chunk is dropped before the SDK builds it); any other stream,
    including a chat stream whose caller set ``stream_options`` (nothing to hide, and
    the SDK builds every chunk anyway), through its chunks (:func:`_keep`). Measured
    A/B for the latter: +29-30 us through the chunks against +38-40 us through the
    events, which parse the usage event a second time."""
    call.start_stream()
    is_async = isinstance(stream, AsyncStream)
    if call.hide_usage_chunk and hasattr(stream, "_decoder"):  # a chat stream, usage ours
        events = _new(_Events)
        events._call = call
        events._inner = stream._decoder
        stream._decoder = events  # type: ignore[assignment]
    elif is_async:
        stream._iterator = _AsyncChunks(stream._iterator, call)  # type: ignore[assignment]
    else:
        chunks = _Chunks(partial(_keep, call), stream._iterator)
        chunks.call = call
        stream._iterator = chunks  # type: ignore[assignment]
    hook_close(stream.response, call.finish_stream, is_async)
