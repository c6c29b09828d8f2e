"""Watching a stream without changing what the caller gets.

The ``Stream`` / ``AsyncStream`` object is returned as it is (``isinstance``,
``with`` and ``async with`` keep working); only its private iterator is replaced by
an observer, and its HTTP response's ``close`` / ``aclose`` is wrapped. Every way a
stream can end goes through one of those: read to the end, ``close()``, a ``with``
block, the SDK's stream helpers (which close the HTTP response directly), or garbage
collection of an unfinished stream (the SDK's generator closes the response; a
``weakref.finalize`` is the backstop). The observers are classes, not generators,
so no async-generator finalisation is involved.
"""

from __future__ import annotations

import weakref
from collections.abc import AsyncIterator, Callable, Iterator

from openai import AsyncStream, Stream

from ._recorder import Call

__all__ = ["hook_close", "observe_stream"]


class _SyncChunks:
    __slots__ = ("_call", "_it")

    def __init__(self, it: Iterator[object], call: Call) -> None:
        self._it = it
        self._call = call

    def __iter__(self) -> _SyncChunks:
        return self

    def __next__(self) -> object:
        call = self._call
        while True:
            try:
                item = next(self._it)
            except StopIteration:
                call.finish_stream()
                raise
            except BaseException as exc:
                call.finish_stream(exc)
                raise
            if call.observe(item):
                return item

    def close(self) -> None:
        close = getattr(self._it, "close", None)
        if close is not None:
            close()


class _AsyncChunks:
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
            if call.observe(item):
                return item

    async def aclose(self) -> None:
        aclose = getattr(self._it, "aclose", None)
        if aclose is not None:
            await aclose()


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
    is_async = isinstance(stream, AsyncStream)
    if is_async:
        stream._iterator = _AsyncChunks(stream._iterator, call)  # type: ignore[assignment]
    else:
        stream._iterator = _SyncChunks(stream._iterator, call)  # type: ignore[assignment]
    hook_close(stream.response, call.finish_stream, is_async)
    weakref.finalize(stream, call.finish_stream)
