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
from collections.abc import AsyncIterator, Iterator

from openai import AsyncStream, Stream

from ._recorder import Call

__all__ = ["observe_stream"]


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


def observe_stream(call: Call, stream: Stream[object] | AsyncStream[object]) -> None:
    """Instrument ``stream`` in place for ``call``."""
    call.start_stream()
    response = stream.response
    if isinstance(stream, AsyncStream):
        stream._iterator = _AsyncChunks(stream._iterator, call)  # type: ignore[assignment]
        original_aclose = response.aclose

        async def aclose() -> None:
            try:
                await original_aclose()
            finally:
                call.finish_stream()

        response.aclose = aclose  # type: ignore[method-assign]
    else:
        stream._iterator = _SyncChunks(stream._iterator, call)  # type: ignore[assignment]
        original_close = response.close

        def close() -> None:
            try:
                original_close()
            finally:
                call.finish_stream()

        response.close = close  # type: ignore[method-assign]
    weakref.finalize(stream, call.finish_stream)
