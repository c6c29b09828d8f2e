"""Tags: who and what a call is for.

``tags()`` is a context manager over a :class:`contextvars.ContextVar`, so blocks
nest (the innermost value wins) and follow asyncio tasks. Threads do not inherit
context variables in Python, so the collector carries its tags (and only its tags)
into threads *started* inside a ``tags()`` block and into functions *submitted* to
a ``concurrent.futures`` executor inside one (which also covers
``loop.run_in_executor``; ``asyncio.to_thread`` copies the context itself).
"""

from __future__ import annotations

import contextvars
import functools
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from concurrent.futures.thread import _worker as _pool_worker
from contextlib import contextmanager
from types import MappingProxyType
from typing import ParamSpec, TypeVar

from spendwatch.errors import TagError

__all__ = ["COLUMN_TAGS", "MAX_TAG_LENGTH", "current_tags", "tags", "validate_tags"]

#: Tags stored in their own columns; any other tag goes to the ``tags`` JSON column.
COLUMN_TAGS = ("team", "project", "user", "feature", "environment")
MAX_TAG_LENGTH = 200
MAX_TAG_NAME_LENGTH = 64
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")
_EMPTY: Mapping[str, str] = MappingProxyType({})

_TAGS: contextvars.ContextVar[Mapping[str, str]] = contextvars.ContextVar(
    "spendwatch_tags", default=_EMPTY)

P = ParamSpec("P")
R = TypeVar("R")


def validate_tags(values: Mapping[str, object]) -> dict[str, str | None]:
    """Check tag names and values; ``None`` means "unset in this block"."""
    out: dict[str, str | None] = {}
    for name, value in values.items():
        if not isinstance(name, str) or not _NAME.fullmatch(name) or len(name) > \
                MAX_TAG_NAME_LENGTH:
            raise TagError(f"tag name {name!r} is not valid; use letters, digits, '_', "
                           f"'.' or '-', starting with a letter, at most "
                           f"{MAX_TAG_NAME_LENGTH} characters")
        if value is None:
            out[name] = None
            continue
        if not isinstance(value, str):
            raise TagError(f"tag {name}={value!r} is a {type(value).__name__}; tag values "
                           f"must be strings, e.g. {name}={str(value)!r}")
        if len(value) > MAX_TAG_LENGTH:
            raise TagError(f"tag {name}={value[:40]!r}... is {len(value)} characters long; "
                           f"the limit is {MAX_TAG_LENGTH}")
        if not value.isprintable():  # control characters (C0, C1), line separators
            raise TagError(f"tag {name}={value!r} contains a control character; remove it")
        out[name] = value
    return out


def current_tags() -> Mapping[str, str]:
    """The tags in effect here (innermost ``tags()`` block first)."""
    return _TAGS.get()


@contextmanager
def tags(**values: str | None) -> Iterator[Mapping[str, str]]:
    """Tag every call made inside the block (and in tasks and threads it starts).

    >>> with tags(user="u-42", feature="summaries"):
    ...     client.chat.completions.create(...)
    """
    checked = validate_tags(values)
    merged = dict(_TAGS.get())
    for name, value in checked.items():
        if value is None:
            merged.pop(name, None)
        else:
            merged[name] = value
    _install_thread_propagation()
    token = _TAGS.set(MappingProxyType(merged))
    try:
        yield _TAGS.get()
    finally:
        _TAGS.reset(token)


# -- carrying tags into threads ------------------------------------------------
_installed = False
_install_lock = threading.Lock()


def _with_tags(captured: Mapping[str, str], fn: Callable[P, R]) -> Callable[P, R]:
    @functools.wraps(fn)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        token = _TAGS.set(captured)
        try:
            return fn(*args, **kwargs)
        finally:
            _TAGS.reset(token)

    return run


def _install_thread_propagation() -> None:
    global _installed
    if _installed:
        return
    with _install_lock:
        if _installed:
            return
        original_start = threading.Thread.start
        original_submit = ThreadPoolExecutor.submit

        def start(self: threading.Thread) -> None:
            captured = _TAGS.get()
            # An executor's worker outlives the block that happened to start it: its
            # jobs get their tags from submit() instead.
            if captured and getattr(self, "_target", None) is not _pool_worker:
                self.run = _with_tags(captured, self.run)  # type: ignore[method-assign]
            original_start(self)

        def submit(self: Executor, fn: Callable[..., R], /, *args: object,
                   **kwargs: object) -> Future[R]:
            captured = _TAGS.get()
            if captured:
                fn = _with_tags(captured, fn)
            return original_submit(self, fn, *args, **kwargs)  # type: ignore[arg-type]

        threading.Thread.start = start  # type: ignore[method-assign]
        ThreadPoolExecutor.submit = submit  # type: ignore[method-assign,assignment]
        _installed = True
