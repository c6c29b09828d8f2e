"""``instrument(client)``: wrap the methods listed in :data:`collector.targets.TARGETS`
on one client (and on every client derived from it with ``with_options()`` or
``copy()``), without changing what any call returns or raises."""

from __future__ import annotations

import _thread
import functools
import inspect
import logging
import time
import weakref
from collections.abc import Callable
from typing import TypeVar

import openai
from openai import AsyncOpenAI, AsyncStream, OpenAI, Stream
from openai._legacy_response import LegacyAPIResponse

from spendwatch.errors import InstrumentationError

from . import budget_guard
from ._hooks import CURRENT_CALL, SYNC_CALLS, install_hooks
from ._recorder import Call, ClientInfo, PlainCall, _perf_ns, request_id_of
from ._streams import hook_close, observe_stream
from .tagging import _TAGS, validate_tags
from .targets import TARGETS, Target
from .usage import read_usage

__all__ = ["instrument"]

log = logging.getLogger("spendwatch.collector")

ClientT = TypeVar("ClientT", OpenAI, AsyncOpenAI)
_MARK = "__spendwatch_wrapped__"
_CACHED_WRAPPERS = ("with_raw_response", "with_streaming_response")
#: Result types looked at after every call (tuples: ``A | B`` builds a union per call).
_STREAMS = (Stream, AsyncStream)
_BASE_RESPONSE = openai._response.BaseAPIResponse
_OMIT = openai.omit
_NOT_GIVEN = (openai.NotGiven, openai.Omit)  # what openai._utils.is_given() rejects
_time_ns = time.time_ns
_tuple_new = tuple.__new__
# _ASK_FOR_USAGE (in _prepare): a chat stream
# asks for usage on the caller's behalf unless they chose ``stream_options``
# (``is_given()`` inline: the SDK's stream helpers pass ``stream_options=omit``
# explicitly); the extra usage-only chunk is then hidden from them
# (collector._streams), so ``chunk.choices[0]`` keeps working.


def instrument(client: ClientT, **default_tags: str) -> ClientT:
    """Record every call ``client`` makes; returns the same client object.

    ``default_tags`` (``team=``, ``project=``, ``user=``, ``feature=``,
    ``environment=`` or any other name) apply to every call unless a
    :func:`collector.tags` block overrides them. Instrumenting a client twice only
    replaces its default tags.
    """
    if not isinstance(client, OpenAI | AsyncOpenAI):
        raise InstrumentationError(
            f"instrument() needs an openai.OpenAI, AsyncOpenAI, AzureOpenAI or "
            f"AsyncAzureOpenAI client, not {type(client).__module__}."
            f"{type(client).__qualname__}; pass the client you make calls with, e.g. "
            f"instrument(OpenAI())"
        )
    defaults = {k: v for k, v in validate_tags(default_tags).items() if v is not None}
    from . import get_sink

    sink = get_sink()  # checks the database URL and the spool folder now
    sink.install_exit_handlers()
    if sink.settings.enforce_budgets and budget_guard.GUARD is None:
        budget_guard.enable(sink.settings)
    # The sink's own put, not collector.record_event (a frame less per call):
    # configure() and a fork point the clients elsewhere (repoint_clients).
    _instrument_client(client, defaults, sink.put, sink.environment)
    return client


#: What every instrumented client records through, for :func:`repoint_clients`.
_CLIENTS: weakref.WeakSet[ClientInfo] = weakref.WeakSet()


def repoint_clients(old: Callable[..., None], new: Callable[..., None]) -> None:
    """Clients that queue their calls with ``old`` (a replaced sink's ``put``) use
    ``new`` from now on."""
    for info in list(_CLIENTS):
        put = info.sink_put
        if put == old:
            info.sink_put = new
        elif getattr(put, "_spendwatch_put", None) == old:  # budget_guard's wrapper
            put._spendwatch_put = new  # type: ignore[attr-defined]


def _provider(client: OpenAI | AsyncOpenAI) -> str:
    if isinstance(client, openai.AzureOpenAI | openai.AsyncAzureOpenAI):
        return "azure"
    host = (client.base_url.host or "").lower()
    if host == "api.openai.com" or host.endswith(".openai.com"):
        return "openai"
    port = client.base_url.port
    return f"{host}:{port}" if port else host or "unknown"


def _instrument_client(client: OpenAI | AsyncOpenAI, defaults: dict[str, str],
                       put: Callable[..., None], environment: str | None) -> None:
    existing = client.__dict__.get("_spendwatch")
    if isinstance(existing, ClientInfo):
        existing.defaults = defaults
        existing.sink_put = put
        return
    is_async = isinstance(client, AsyncOpenAI)
    info = ClientInfo(
        provider=_provider(client), defaults=defaults, is_async=is_async,
        counts_attempts=install_hooks(getattr(client, "_client", None), is_async),
        sink_put=put, environment=environment,
    )
    client.__dict__["_spendwatch"] = info
    _CLIENTS.add(info)
    for name in _CACHED_WRAPPERS:
        client.__dict__.pop(name, None)
    for target in TARGETS:
        resource = _resolve(client, target.resource)
        if resource is None:
            continue
        original = getattr(resource, target.method, None)
        if original is None or getattr(original, _MARK, False):
            continue
        setattr(resource, target.method, _wrap(original, target, info))
    _wrap_copy(client, info)


def _resolve(client: object, path: str) -> object | None:
    """``client.chat.completions`` for ``"chat.completions"``; cached raw/streaming
    response wrappers along the way are dropped so they are rebuilt on the wrapper."""
    obj: object | None = client
    for part in path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            return None
        for name in _CACHED_WRAPPERS:
            vars(obj).pop(name, None)
    return obj


def _wrap_copy(client: OpenAI | AsyncOpenAI, info: ClientInfo) -> None:
    original_copy = client.copy

    @functools.wraps(original_copy)
    def copy(*args: object, **kwargs: object) -> OpenAI | AsyncOpenAI:
        new = original_copy(*args, **kwargs)  # type: ignore[arg-type]
        try:
            _instrument_client(new, info.defaults, info.sink_put,  # type: ignore[arg-type]
                               info.environment)
        except Exception:
            log.exception("spendwatch: could not instrument a client copy")
        return new

    client.__dict__["copy"] = copy
    client.__dict__["with_options"] = copy


#: What ``_record`` does with a result, by its exact type (looked up once per type:
#: three ``isinstance`` checks after every call cost ~1 us with cold CPU caches).
_PLAIN, _STREAM, _LEGACY, _ON_CLOSE = range(4)
_KINDS: dict[type, int] = {}


def _kind(result_type: type) -> int:
    if issubclass(result_type, _STREAMS):
        kind = _STREAM
    elif issubclass(result_type, LegacyAPIResponse):
        kind = _LEGACY
    elif issubclass(result_type, _BASE_RESPONSE):
        kind = _ON_CLOSE
    else:
        kind = _PLAIN
    if len(_KINDS) < 256:  # result types are a handful of SDK classes
        _KINDS[result_type] = kind
    return kind


def _finish_legacy(call: Call, result: LegacyAPIResponse[object]) -> None:
    """with_raw_response: parse() is cached on the response, so the caller's own
    parse() gets this very object (and the very instrumented stream)."""
    parsed = result.parse()
    if isinstance(parsed, _STREAMS):
        observe_stream(call, parsed)
    else:
        call.request_id = call.request_id or result.request_id
        call.succeed_plain(parsed)


def _finish_on_close(call: Call, result: openai._response.BaseAPIResponse[object]) -> None:
    """with_streaming_response: the body is read after the call returns; record when
    the response is closed, with usage if the body was parsed or read as JSON."""
    http = result.http_response
    call.start_stream()
    call.streamed = False

    def finish(error: BaseException | None = None) -> None:
        if call.done:
            return
        try:
            parsed = next(iter(getattr(result, "_parsed_by_type", {}).values()), None)
            if parsed is None and getattr(http, "_content", None) is not None:
                parsed = http.json()
            if parsed is not None and not isinstance(parsed, Stream | AsyncStream):
                call.observe(parsed)
        except Exception:
            log.debug("spendwatch: no usage in a streamed-response body", exc_info=True)
        call.finish_stream(error)

    hook_close(http, finish, call.client.is_async)


def _prepare(info: ClientInfo, opt_in: bool, kwargs: dict[str, object]) -> bool:
    """Before a call, when budget enforcement is on or a stream is asked for (the
    wrappers skip the frame otherwise): enforce the budgets (may swap the model or
    raise), and ask a chat stream for its usage on the caller's behalf
    (_ASK_FOR_USAGE). Whether the usage-only chunk is the collector's to hide."""
    if budget_guard.GUARD is not None:
        budget_guard.enforce(info, kwargs)
    if (opt_in and kwargs.get("stream") is True
            and isinstance(kwargs.get("stream_options", _OMIT), _NOT_GIVEN)):
        kwargs["stream_options"] = {"include_usage": True}
        return True
    return False


def _record_failure(target: Target, info: ClientInfo, kwargs: dict[str, object],
                    start_perf: int, start_ns: int, sent: list[object],
                    error: BaseException) -> None:
    try:
        Call.after(target, info, kwargs, start_perf, start_ns, sent).fail(error)
    except Exception:
        log.exception("spendwatch: could not record a failed call")


def _record(target: Target, info: ClientInfo, kwargs: dict[str, object], start_perf: int,
            start_ns: int, end_perf: int, sent: list[object], hide_usage_chunk: bool,
            result: object) -> None:
    """Record a call that returned ``result``: a complete SDK result (the common case)
    as a :class:`PlainCall`, read here and queued as one tuple; anything else (a
    stream, a raw response, a Responses-API event) through a :class:`Call`."""
    try:
        kind = _KINDS.get(type(result))
        if kind is None:
            kind = _kind(type(result))
        fields = (result.__dict__ if kind == _PLAIN
                  and not getattr(result, "__pydantic_extra__", 1) else None)
        if fields is not None and fields.get("response") is None:
            rid = fields.get("_request_id")  # the SDK read it from the last response
            if not isinstance(rid, str):  # else the last headers', an earlier attempt's
                rid = (sent[2] is not None and request_id_of(sent[2])) or sent[3]
            sent[2] = None  # a queued call keeps no object of the SDK's
            usage = fields.get("usage")
            info.sink_put(_tuple_new(PlainCall, (  # type: ignore[operator]
                target, info, info.defaults, kwargs.get("model"), _TAGS.get(), start_perf,
                start_ns, end_perf, sent, rid, None if usage is None else read_usage(usage),
                fields.get("model"), fields.get("service_tier"))))
            return
        call = Call.after(target, info, kwargs, start_perf, start_ns, sent)
        call.hide_usage_chunk = hide_usage_chunk
        if kind == _STREAM:
            observe_stream(call, result)  # type: ignore[arg-type]
        elif kind == _PLAIN:
            call.succeed_plain(result)
        elif kind == _LEGACY:
            _finish_legacy(call, result)  # type: ignore[arg-type]
        else:
            _finish_on_close(call, result)  # type: ignore[arg-type]
    except Exception:
        log.exception("spendwatch: could not record a call")


def _wrap(original: Callable[..., object], target: Target,
          info: ClientInfo) -> Callable[..., object]:
    opt_in = target.stream_usage_opt_in  # chat completions: ask streams for usage
    if info.is_async or inspect.iscoroutinefunction(original):
        @functools.wraps(original)
        async def async_wrapper(*args: object, **kwargs: object) -> object:
            hide = ((budget_guard.GUARD is not None or kwargs.get("stream") is True)
                    and _prepare(info, opt_in, kwargs))
            start_perf, start_ns = _perf_ns(), _time_ns()
            sent = [0, None, None, None]  # what _hooks counts of the HTTP attempts
            token = CURRENT_CALL.set(sent)
            try:
                result = await original(*args, **kwargs)  # type: ignore[misc]
            except BaseException as exc:
                CURRENT_CALL.reset(token)
                _record_failure(target, info, kwargs, start_perf, start_ns, sent, exc)
                raise
            CURRENT_CALL.reset(token)
            _record(target, info, kwargs, start_perf, start_ns, _perf_ns(), sent, hide, result)
            return result

        setattr(async_wrapper, _MARK, True)
        return async_wrapper

    @functools.wraps(original)
    def wrapper(*args: object, **kwargs: object) -> object:
        hide = ((budget_guard.GUARD is not None or kwargs.get("stream") is True)
                and _prepare(info, opt_in, kwargs))
        start_perf, start_ns = _perf_ns(), _time_ns()
        sent = [0, None, None, None]  # what _hooks counts of the HTTP attempts
        me = _thread.get_ident()  # whose attempts these are (_hooks)
        outer = SYNC_CALLS.get(me)
        SYNC_CALLS[me] = sent
        try:
            result = original(*args, **kwargs)
        except BaseException as exc:
            _record_failure(target, info, kwargs, start_perf, start_ns, sent, exc)
            raise
        finally:
            if outer is None:
                del SYNC_CALLS[me]
            else:
                SYNC_CALLS[me] = outer
        _record(target, info, kwargs, start_perf, start_ns, _perf_ns(), sent, hide, result)
        return result

    setattr(wrapper, _MARK, True)
    return wrapper
