"""Watching a stream without changing what the caller gets.

The ``Stream`` / ``AsyncStream`` object is returned as it is (``isinstance``,
``with`` and ``async with`` keep working); only its private iterator is replaced by
an observer, and its HTTP response's ``close`` / ``aclose`` is wrapped. Every way a
stream can end goes through one of those: read to the end, ``close()``, a ``with``
block, the SDK's stream helpers (which close the HTTP response directly), or garbage
collection of an unfinished stream (the SDK's generator closes the response; the
observer's own finalisation is the backstop, even for a stream never read). The
sync observer is a generator; the async one is a class, not an async generator, so
no async-generator finalisation by the event loop is involved.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import AsyncIterator, Callable, Iterator

from openai import AsyncStream, Stream

from ._recorder import _LIVE, Call, _perf_ns
from .usage import field_map, read_usage

__all__ = ["hook_close", "observe_stream"]

log = logging.getLogger("spendwatch.collector")


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


def _chat_chunks(it: Iterator[object], call: Call) -> Iterator[object]:
    """``stream._iterator`` of a Chat Completions (or legacy Completions) stream: what
    :meth:`Call.observe` does for its chunks, inline. The first chunk with choices is
    the first token, the one with ``usage`` carries the counts (and is hidden when
    the collector asked for it); the model and tier are read from both.

    On a real connection the thread waits for the network between two chunks, so
    each chunk is handled with cold CPU caches: a chunk that says nothing new costs
    one attribute read here (``usage`` is a declared field of the SDK's chunk
    models, so it is in the instance ``__dict__``); two calls of ``observe`` per
    stream measured ~3 us each. See :func:`_primed` for how it starts and ends."""
    try:
        yield None  # parked here by _primed
        first = call.first_token_ns is None
        for item in it:
            try:
                usage = item.usage  # type: ignore[attr-defined]
            except AttributeError:  # not an SDK chunk model: the full look
                if call.observe(item):
                    yield item
                continue
            if first or usage is not None:
                hide = False
                try:
                    fields = field_map(item)
                    if first and fields.get("choices"):
                        first = False
                        call.first_token_ns = _perf_ns()
                        call.take_model(fields)
                    if usage is not None:
                        # decided first: hidden even if reading the counts fails
                        hide = call.hide_usage_chunk and not fields.get("choices")
                        call.usage = read_usage(usage) or call.usage
                        call.take_model(fields)
                except Exception:
                    log.exception("spendwatch: could not read a stream chunk")
                if hide:
                    continue
            yield item
    except GeneratorExit:  # closed: the stream was abandoned (or closed) unfinished
        if id(call) in _LIVE:
            call.finish_stream()
        raise
    except BaseException as exc:
        call.finish_stream(exc)
        raise
    if id(call) in _LIVE:  # usually recorded already, by the response's close hook
        call.finish_stream()


def _chunks(it: Iterator[object], call: Call) -> Iterator[object]:
    """``stream._iterator`` of any other stream (Responses events, images, audio):
    each item through :func:`_keep`."""
    try:
        yield None  # parked here by _primed
        for item in it:
            if _keep(call, item):
                yield item
    except GeneratorExit:
        if id(call) in _LIVE:
            call.finish_stream()
        raise
    except BaseException as exc:
        call.finish_stream(exc)
        raise
    if id(call) in _LIVE:
        call.finish_stream()


def _primed(chunks: Iterator[object]) -> Iterator[object]:
    """``chunks`` run to their first ``yield``, which reads nothing from the network.

    The generator itself replaces the stream's iterator (``Stream.__next__`` and
    ``Stream.__iter__`` both use ``_iterator``): no observer object, no extra frame
    per stream. Started, it is closed (``GeneratorExit``) when the stream is
    garbage-collected unfinished, even one never read, and records the call then; a
    ``for`` loop the caller leaves early does not close it (the stream may go on).
    This replaced an observer class with ``__del__`` (and before it a
    ``weakref.finalize`` per stream)."""
    next(chunks)
    return chunks


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


def hook_close(response: object, on_close: Callable[[], None], is_async: bool) -> None:
    """Call ``on_close`` after ``response.close()`` / ``aclose()``.

    The hook is stored on the response itself, so it refers to the response only
    weakly: a strong reference would make a cycle that keeps every finished response
    (headers, buffers) alive until the cyclic garbage collector runs, which measurably
    slows the whole application down."""
    ref = weakref.ref(response)
    if is_async:
        original_aclose = type(response).aclose  # type: ignore[attr-defined]

        async def aclose() -> None:
            try:
                target = ref()
                if target is not None:
                    await original_aclose(target)
            finally:
                on_close()

        response.aclose = aclose  # type: ignore[attr-defined]
    else:
        original_close = type(response).close  # type: ignore[attr-defined]

        def close() -> None:
            try:
                target = ref()
                if target is not None:
                    original_close(target)
            finally:
                on_close()

        response.close = close  # type: ignore[attr-defined]


def observe_stream(call: Call, stream: Stream[object] | AsyncStream[object]) -> None:
    """Instrument ``stream`` in place for ``call``."""
    call.start_stream()
    if type(stream) is Stream:  # the common case inline: a stream costs its frames
        chunks = (_chat_chunks if call.target.stream_usage_opt_in else _chunks)(
            stream._iterator, call)
        next(chunks)  # see _primed
        stream._iterator = chunks  # type: ignore[assignment]
        hook_close(stream.response, call.finish_stream, False)
        return
    is_async = isinstance(stream, AsyncStream)
    if is_async:
        stream._iterator = _AsyncChunks(stream._iterator, call)  # type: ignore[assignment]
    else:
        stream._iterator = _primed(  # type: ignore[assignment]
            (_chat_chunks if call.target.stream_usage_opt_in else _chunks)(
                stream._iterator, call))
    # An unfinished stream that is garbage-collected is recorded when its iterator is
    # (the observer's __del__, or the generator's GeneratorExit).
    hook_close(stream.response, call.finish_stream, is_async)
