"""One logical API call from start to event: the wrapper's state while the call
runs, what its result or exception says, and the event built from both.

Everything here runs on the caller's thread and must never raise into it: the
public methods catch their own errors and log them.
"""

from __future__ import annotations

import atexit
import datetime as dt
import json
import logging
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field

from models.events import UsageEvent, classify_error
from models.ids import uuid7

from .tagging import _TAGS, COLUMN_TAGS
from .targets import Target
from .usage import Usage, field_map, read_usage, result_fields

__all__ = ["Call", "ClientInfo", "PlainCall", "request_id_of"]

log = logging.getLogger("spendwatch.collector")
UTC = dt.UTC

_FAILED_CODE_KIND = {"rate_limit_exceeded": "rate_limit", "server_error": "server"}


_NO_USAGE = (None,) * 7
_perf_ns = time.perf_counter_ns
#: The last (defaults, tags) split into column tags and the others: calls of one
#: client in one ``tags()`` block share both mappings (neither is ever mutated).
_split: tuple[object, object, tuple[str | None, str | None, str | None, str | None,
                                    str | None, dict[str, str] | None]] = (None, None, (
                                        None, None, None, None, None, None))


def _clip(value: object, limit: int) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    return value if len(value) <= limit else value[:limit]


def _tag_columns(defaults: Mapping[str, str], tags: Mapping[str, str]) -> tuple[
        str | None, str | None, str | None, str | None, str | None, dict[str, str] | None]:
    """(team, project, user, feature, environment, other tags or None): the tags in
    effect (``tags`` over ``defaults``) as the event stores them."""
    global _split
    last = _split
    if last[0] is defaults and last[1] is tags:
        return last[2]
    merged = {**defaults, **tags} if tags else defaults
    extra = {k: v for k, v in merged.items() if k not in COLUMN_TAGS} or None
    columns = (merged.get("team"), merged.get("project"), merged.get("user"),
               merged.get("feature"), merged.get("environment"), extra)
    _split = (defaults, tags, columns)  # holding both keeps their ids from being reused
    return columns


@dataclass(eq=False)  # one per client, kept in a WeakSet (instrument._CLIENTS)
class ClientInfo:
    """What the collector knows about one instrumented client."""

    provider: str
    defaults: dict[str, str]
    is_async: bool
    counts_attempts: bool
    sink_put: object = field(repr=False, default=None)  # EventSink.put
    environment: str | None = None


class Call:
    """A logical call: one ``create()`` (however many HTTP attempts it took) that
    raised, streamed, or returned anything but a complete SDK result (those are queued
    as a :class:`PlainCall`, which becomes a ``Call`` on the writer's thread). Built
    by :meth:`after` once the method has returned or raised.

    On the caller's thread it only gathers facts (timings, attempts, token counts,
    the error's class and status) and is queued as it is; the sink's writer thread
    turns it into a row (:meth:`event_values`, or :meth:`to_event` for a
    :class:`UsageEvent`).

    What a queued call holds matters to the whole application: it waits in the queue
    for the writer (up to ``flush_interval``), and every GC-tracked object it keeps
    alive makes the cyclic garbage collector run more often, and promotes objects to
    its older generations, whose collections are long (a full one takes ~0.1 s with
    the SDK loaded). So the token counts are read here, into a tuple of ints, and the
    call keeps no SDK object (two tracked objects per queued call: itself and its
    :class:`Usage`). Keeping the SDK's usage object for the writer to read (~13
    tracked objects per queued call) made the collector run ~9 times per 1,000 calls
    instead of ~1.3 (bench/collector.py, in-memory transport) and spend 21-23 us per
    call on average instead of 6-10; the median call meets no collection, so the
    benchmark's medians do not show it (README, Benchmarks)."""

    __slots__ = ("_id", "_values", "attempts", "client", "defaults", "done",
                 "end_perf", "error_class", "error_kind", "first_data", "first_token_ns",
                 "headers", "hide_usage_chunk", "model", "model_requested", "request_id",
                 "service_tier", "start_ns", "start_perf", "status", "stream_error",
                 "streamed", "tags", "target", "usage")

    def __init__(self, target: Target, client: ClientInfo, kwargs: dict[str, object]) -> None:
        # Every slot is set here: with class-level defaults instead (fewer stores),
        # attributes set later in varying orders made each call materialise a
        # __dict__, one more GC-tracked object per queued call, and measured slower.
        self.start_perf = time.perf_counter_ns()
        self.start_ns = time.time_ns()
        self.target = target
        self.client = client
        self.defaults = client.defaults
        model = kwargs.get("model")
        self.model_requested = model if isinstance(model, str) else None
        self.tags: Mapping[str, str] = _TAGS.get()  # captured now, not at stream end
        self.attempts = 0
        self.status: int | None = None
        self.request_id: str | None = None
        self.headers: Mapping[str, str] | None = None  # the last HTTP response's
        self.streamed = False
        self.hide_usage_chunk = False
        self.first_token_ns: int | None = None
        self.first_data: str | None = None  # a chat stream's first-token event, as text
        self.usage: Usage | None = None
        self.model: str | None = None
        self.service_tier: str | None = None
        self.stream_error: tuple[str, str] | None = None
        self.error_class: str | None = None
        self.error_kind: str | None = None
        self.end_perf = 0
        self.done = False
        self._id: uuid.UUID | None = None
        self._values: tuple[object, ...] | None = None

    @classmethod
    def after(cls, target: Target, client: ClientInfo, kwargs: dict[str, object],
              start_perf: int, start_ns: int, sent: list[object]) -> Call:
        """The call of a method that has returned or raised: begun at ``start_perf`` /
        ``start_ns``, its HTTP attempts as :mod:`collector._hooks` counted them in
        ``sent`` (attempts, last status, last headers, an earlier attempt's request
        id)."""
        call = cls(target, client, kwargs)
        call.start_perf = start_perf
        call.start_ns = start_ns
        call.attempts, call.status, call.headers, call.request_id = sent  # type: ignore[assignment]
        return call

    def take_request_id(self) -> None:
        """Read ``x-request-id`` from the last response's headers (if it has one) and
        let go of them."""
        headers, self.headers = self.headers, None
        if headers is not None:
            self.request_id = request_id_of(headers) or self.request_id

    def _emit(self, error: BaseException | None) -> None:
        """Close the call and queue it (the caller's thread does no more than this)."""
        self.end_perf = _perf_ns()
        if self.headers is not None:  # a queued call keeps no object of the SDK's
            self.take_request_id()
        if error is not None:
            self.error_class = type(error).__name__
            self.status, self.error_kind = _classify(error, self.status)
            rid = getattr(error, "request_id", None)
            if isinstance(rid, str):
                self.request_id = rid
        elif self.stream_error is not None:
            self.error_class, self.error_kind = self.stream_error
        self.client.sink_put(self)  # type: ignore[operator]

    def to_event(self) -> UsageEvent:
        """The usage event of this call (for budget enforcement and the spool)."""
        return UsageEvent(*self.event_values())

    def event_values(self) -> tuple[object, ...]:
        """The values of this call's event in ``EVENT_FIELDS`` order: what the sink's
        writer thread inserts, without building a :class:`UsageEvent`. The id is drawn
        once, so every build of a call's event (a retry, the spool) has the same id;
        the values are built once, so with budget enforcement on the guard's event and
        the writer's row come from one build."""
        if self._values is not None:
            return self._values
        if self.first_data is not None and self.model is None:
            self._take_first_chunk()
        client = self.client
        ident = self._id
        if ident is None:
            ident = self._id = uuid7(self.start_ns)
        team, project, user, feature, environment, extra = _tag_columns(self.defaults,
                                                                        self.tags)
        usage = self.usage
        start = self.start_perf
        first = self.first_token_ns
        self._values = values = (
            ident, dt.datetime.fromtimestamp(self.start_ns / 1e9, UTC), client.provider,
            self.target.endpoint, _clip(self.model_requested, 200), _clip(self.model, 200),
            _clip(self.service_tier, 32), False, self.streamed, usage is not None,
            *(_NO_USAGE if usage is None else usage),
            (self.end_perf - start) / 1e6, None if first is None else (first - start) / 1e6,
            self.status, _clip(self.error_class, 100), self.error_kind,
            self.attempts if client.counts_attempts else max(self.attempts, 1),
            _clip(self.request_id, 128), team, project, user, feature,
            environment or client.environment, None if extra is None else dict(extra),
        )
        return values

    def _take_first_chunk(self) -> None:
        """The model and tier of a chat stream that ended without a usage chunk (left
        early, or the caller turned usage off), from its first-token event's text:
        parsed here, on the writer's thread, rather than for every stream on the
        caller's."""
        data, self.first_data = self.first_data, None
        try:
            chunk = json.loads(data)  # type: ignore[arg-type]
            if isinstance(chunk, dict):
                self.take_model(chunk)
        except Exception:
            log.debug("spendwatch: no model in a stream's first chunk", exc_info=True)

    # -- outcomes ----------------------------------------------------------------------
    def fail(self, error: BaseException) -> None:
        """The call raised ``error`` (which the wrapper re-raises unchanged)."""
        try:
            if self.client.counts_attempts and self.attempts == 0 and not hasattr(
                    error, "request"):
                return  # refused before any HTTP request: nothing happened to record
            self.done = True
            self._emit(error)
        except Exception:
            log.exception("spendwatch: could not record a failed call")

    def succeed_plain(self, result: object) -> None:
        """A complete (non-streamed) result: read its token counts, model and tier
        (no reference to the result or its usage object is kept).

        ``field_map`` and :meth:`take_model` inline for the common case (an SDK
        model with no extra fields and no ``response`` inside): every Python frame a
        call runs costs several times its hot-loop time, as the SDK's work between two
        calls evicts our code from the CPU caches."""
        self.end_perf = _perf_ns()  # the call's end: before the reading, not after
        try:
            fields = (field_map(result) if getattr(result, "__pydantic_extra__", 1)
                      else result.__dict__)
            outer = fields
            if fields.get("response") is not None:  # a Responses-API event
                fields, outer = result_fields(result)
            usage = fields.get("usage")
            if usage is not None:
                self.usage = read_usage(usage)
            model = fields.get("model")
            if isinstance(model, str) and model:
                self.model = model
            tier = fields.get("service_tier")
            if isinstance(tier, str) and tier:
                self.service_tier = tier
            rid = outer.get("_request_id")  # in the model's __dict__: no __getattr__
            if isinstance(rid, str):  # the SDK read it from the last response
                self.request_id = rid
                self.headers = None
            elif self.headers is not None:  # a queued call keeps no object of the SDK's
                self.take_request_id()
            self.done = True
            self.client.sink_put(self)  # type: ignore[operator]  # _emit(None), inline
        except Exception:
            log.exception("spendwatch: could not record a call")

    # -- streams -------------------------------------------------------------------------
    def start_stream(self) -> None:
        """From now on the call is recorded by :meth:`finish_stream` (whichever of the
        stream's ends comes first), or at interpreter exit if it is still open then."""
        self.streamed = True
        if not _exit_registered:
            _register_exit()
        _LIVE[id(self)] = self

    def observe(self, item: object) -> bool:
        """Look at one stream item; False means "hide it from the caller" (the
        usage-only chunk the collector asked for on the caller's behalf)."""
        try:
            fields = field_map(item)
            typ = fields.get("type")
            if self.first_token_ns is None and self._is_first_token(fields, typ):
                self.first_token_ns = time.perf_counter_ns()
            src = fields
            if isinstance(typ, str) and typ.startswith("response."):
                response = fields.get("response")
                if response is None:
                    return True
                src = field_map(response)
                if typ == "response.failed":
                    code = field_map(src.get("error")).get("code") or "response_failed"
                    self.stream_error = ("ResponseFailed",
                                         _FAILED_CODE_KIND.get(str(code), "client"))
            self.take_model(src)
            usage = src.get("usage")
            if usage is not None:
                parsed = read_usage(usage)
                if parsed is not None:
                    self.usage = parsed
                if self.hide_usage_chunk and src is fields and not fields.get("choices"):
                    return False
        except Exception:
            log.exception("spendwatch: could not read a stream chunk")
        return True

    def take_model(self, fields: Mapping[str, object]) -> None:
        """The model and service tier a chunk names, if it names them."""
        model = fields.get("model")
        if isinstance(model, str) and model:
            self.model = model
        tier = fields.get("service_tier")
        if isinstance(tier, str) and tier:
            self.service_tier = tier

    def _is_first_token(self, fields: Mapping[str, object], typ: object) -> bool:
        wanted = self.target.first_token_events
        if wanted:
            return typ in wanted
        if self.target.stream_usage_opt_in:  # chat/completions chunks
            return bool(fields.get("choices"))
        return True

    def finish_stream(self, error: BaseException | None = None) -> None:
        """The stream ended, was closed, failed or was garbage-collected: record it
        (once, whichever comes first: the first to take the call out of ``_LIVE``,
        an atomic ``dict.pop``, records it; a lock per stream cost more)."""
        try:
            if _LIVE.pop(id(self), None) is None:
                return
            self.done = True
            if error is None and self.stream_error is None:  # _emit(None), inline
                self.end_perf = _perf_ns()
                if self.headers is not None:
                    self.take_request_id()
                self.client.sink_put(self)  # type: ignore[operator]
            else:
                self._emit(error)
        except Exception:
            log.exception("spendwatch: could not record a stream")


def request_id_of(headers: object) -> str | None:
    """The ``x-request-id`` of an HTTP response's headers, if it has one."""
    raw = getattr(headers, "_list", None)  # httpx2.Headers: (raw, lowercase, value)
    if type(raw) is list:
        # A scan of the raw list: ~0.1 us, against ~0.6 us for Headers.get() (a
        # Mapping.get, __getitem__, the encoding property and a list comprehension).
        # Streams pay it on every call (their chunks carry no _request_id).
        try:
            for item in raw:
                if item[1] == b"x-request-id":
                    return item[2].decode("latin-1") if item[2] else None
            return None
        except (IndexError, TypeError, AttributeError):  # another httpx2 layout
            pass
    value = headers.get("x-request-id")  # type: ignore[attr-defined]
    return value if isinstance(value, str) and value else None


class PlainCall(tuple):  # type: ignore[type-arg]
    """A call that returned a complete (non-streamed) result, as the wrapper queues
    it: one tuple, built in one step on the caller's thread, of

    ``(target, client, client's default tags, kwargs' model, tags, start_perf,
    start_ns, end_perf, sent, request id, usage, model, service tier)``

    (``sent``: what :mod:`collector._hooks` counted, with no SDK object left in it).
    The :class:`Call` and its event are built from it where they are needed, on the
    writer's thread (or the budget guard's), once: the ``Call`` is kept at the end of
    ``sent``, so every build of the event has the same id.

    Building a ``Call`` (24 attribute stores in a Python ``__init__``) and filling it
    in ``succeed_plain`` on the caller's thread cost 0.2-3.3 us more per call with
    cold caches (paired A/B over an in-memory transport, four hash seeds)."""

    __slots__ = ()

    def to_call(self) -> Call:
        sent = self[8]
        if len(sent) > 4:  # built before
            return sent[4]  # type: ignore[no-any-return]
        (target, client, defaults, model_requested, tags, start_perf, start_ns, end_perf, _,
         request_id, usage, model, tier) = self
        call = Call(target, client, {"model": model_requested})
        call.defaults, call.tags = defaults, tags
        call.start_perf, call.start_ns, call.end_perf = start_perf, start_ns, end_perf
        call.attempts, call.status = sent[0], sent[1]
        call.request_id = request_id if isinstance(request_id, str) else None
        call.usage = usage
        call.take_model({"model": model, "service_tier": tier})
        call.done = True
        sent.append(call)  # atomic: if two threads raced, both use the first
        return sent[4]  # type: ignore[no-any-return]

    def event_values(self) -> tuple[object, ...]:
        return self.to_call().event_values()

    def to_event(self) -> UsageEvent:
        return self.to_call().to_event()


#: Streamed calls not recorded yet, by ``id()``: whoever pops a call records it, and
#: the ones still open at interpreter exit are recorded then (before the sink's own
#: exit handler flushes: ``atexit`` runs handlers in reverse order of registration).
_LIVE: dict[int, Call] = {}
_exit_registered = False


def _register_exit() -> None:
    global _exit_registered
    if not _exit_registered:
        _exit_registered = True
        atexit.register(_finish_open_streams)


def _finish_open_streams() -> None:
    for call in list(_LIVE.values()):
        call.finish_stream()


def _classify(error: BaseException, last_status: int | None) -> tuple[int | None, str]:
    """(status, error kind) of a failed call: HTTP errors by status (429, other 4xx,
    5xx), connection failures and timeouts as ``network`` (the SDK raises
    ``APIConnectionError`` for a connection lost mid-stream too), an error event inside a
    stream by its code (``rate_limit_exceeded``, ``server_error``), anything else (a
    cancelled task, an unknown code) as ``other``."""
    import openai

    if isinstance(error, openai.APIStatusError):
        return error.status_code, classify_error(error.status_code, True) or "other"
    if isinstance(error, openai.APIConnectionError):
        return None, "network"
    if last_status is not None and last_status >= 400:
        return last_status, classify_error(last_status, True) or "other"
    if isinstance(error, openai.APIError):  # an error event inside a stream
        code = error.code or error.type
        return last_status, _FAILED_CODE_KIND.get(str(code), "other")
    return last_status, "other"
