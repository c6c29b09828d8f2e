"""Chat streams are watched through their server-sent events, before the SDK parses
them: what the caller sees is exactly what a bare client shows, whatever a provider's
JSON looks like (compact or spaced, usage on every chunk, a first chunk without
choices, an error event, text that is not JSON), and the usage-only chunk the
collector asked for is hidden without the SDK ever parsing it. The real SDK runs
over an in-memory transport; calls are queued to a list instead of the sink."""

from __future__ import annotations

import asyncio
import gc
import json
from collections.abc import Callable, Iterator

import httpx2
import openai
import pytest
from openai import AsyncOpenAI, OpenAI

from collector import _recorder
from collector._recorder import Call
from collector.instrument import _instrument_client

MSG = [{"role": "user", "content": "hi"}]
_BASE = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m-2024",
         "service_tier": "priority"}
_USAGE = {"prompt_tokens": 20, "completion_tokens": 10, "total_tokens": 30,
          "prompt_tokens_details": {"cached_tokens": 5}}
COMPACT = (",", ":")  # how OpenAI writes its JSON
SPACED = (", ", ": ")  # json.dumps' default, as many compatible servers write it

Chunks = Callable[[bool], list[object]]


def _content(i: int, **extra: object) -> dict[str, object]:
    return {**_BASE, "choices": [{"index": 0, "delta": {"content": f"t{i}"}}], **extra}


def openai_like(include_usage: bool) -> list[object]:
    """Every chunk has ``"usage":null`` once usage is asked for, then a usage-only one."""
    if not include_usage:
        return [_content(i) for i in range(3)]
    return [*(_content(i, usage=None) for i in range(3)),
            {**_BASE, "choices": [], "usage": _USAGE}]


def _transport(chunks: Chunks, separators: tuple[str, str]) -> httpx2.MockTransport:
    def handler(request: httpx2.Request) -> httpx2.Response:
        body = json.loads(request.content)
        include = bool((body.get("stream_options") or {}).get("include_usage"))
        data = b"".join(
            b"data: " + (c if isinstance(c, bytes) else json.dumps(
                c, separators=separators).encode()) + b"\n\n" for c in chunks(include))
        return httpx2.Response(200, content=data + b"data: [DONE]\n\n", headers={
            "content-type": "text/event-stream", "x-request-id": "req_e"})
    return httpx2.MockTransport(handler)


@pytest.fixture
def queued() -> Iterator[list[Call]]:
    calls: list[Call] = []
    yield calls
    assert not _recorder._LIVE  # no stream left behind unrecorded


def _client(queued: list[Call] | None, chunks: Chunks = openai_like,
            separators: tuple[str, str] = COMPACT) -> OpenAI:
    client = OpenAI(base_url="http://api.invalid/v1", api_key="x", max_retries=0,
                    http_client=httpx2.Client(transport=_transport(chunks, separators)))
    if queued is not None:
        _instrument_client(client, {}, queued.append, None)
    return client


def _read(client: OpenAI, **kwargs: object) -> list[object]:
    return list(client.chat.completions.create(model="m", messages=MSG, stream=True,
                                               **kwargs))


def _parsed_by_the_sdk(client: OpenAI) -> list[object]:
    """What the SDK turns into chunks from now on (the data of each event it parses)."""
    parsed: list[object] = []
    original = client._process_response_data

    def counting(**kwargs: object) -> object:
        parsed.append(kwargs["data"])
        return original(**kwargs)  # type: ignore[arg-type]

    client._process_response_data = counting  # type: ignore[method-assign]
    return parsed


def _dumps(chunks: list[object]) -> list[dict[str, object]]:
    return [c.model_dump() for c in chunks]  # type: ignore[attr-defined]


def _usage(call: Call) -> tuple[int, int, int] | None:
    usage = call.usage
    return None if usage is None else (usage.input_tokens, usage.cached_input_tokens,
                                       usage.output_tokens)


@pytest.mark.parametrize("separators", [COMPACT, SPACED], ids=["compact", "spaced"])
def test_the_usage_only_chunk_is_hidden_before_the_sdk_parses_it(queued, separators):
    client = _client(queued, separators=separators)
    parsed = _parsed_by_the_sdk(client)
    chunks = _read(client)
    assert [c.choices[0].delta.content for c in chunks] == ["t0", "t1", "t2"]
    assert len(parsed) == 3  # the SDK never built a model for the hidden chunk
    (call,) = queued
    assert _usage(call) == (20, 5, 10)
    assert (call.model, call.service_tier) == ("m-2024", "priority")
    assert call.first_token_ns is not None and call.first_token_ns >= call.start_perf


@pytest.mark.parametrize("separators", [COMPACT, SPACED], ids=["compact", "spaced"])
@pytest.mark.parametrize("chunks", [
    # usage on the last chunk that still has choices (some compatible servers)
    lambda inc: [_content(0), _content(1, usage=_USAGE if inc else None)],
    # usage on every chunk, growing (continuous usage): the last one counts
    lambda inc: [_content(i, usage={**_USAGE, "completion_tokens": 3 + i}) for i in range(8)],
    # Azure: a first chunk without choices (prompt filter results), then the tokens
    lambda inc: [{**_BASE, "model": "", "choices": [], "prompt_filter_results": []},
                 *openai_like(inc)],
], ids=["usage-with-choices", "usage-on-every-chunk", "azure-first-chunk"])
def test_the_caller_sees_what_a_bare_client_shows(queued, chunks, separators):
    bare = _dumps(_read(_client(None, chunks, separators), stream_options={
        "include_usage": True}))
    seen = _dumps(_read(_client(queued, chunks, separators)))
    if not bare[-1]["choices"]:  # the usage-only chunk: asked for by the collector
        bare = bare[:-1]
    assert seen == bare
    assert _usage(queued[0]) == (20, 5, 10)
    assert queued[0].model == "m-2024"


@pytest.mark.parametrize("chunks", [
    openai_like,
    lambda inc: [{**_BASE, "choices": [], "prompt_filter_results": []}, *openai_like(inc)],
], ids=["openai", "azure-first-chunk"])
def test_a_caller_who_asks_for_usage_gets_every_chunk_built_by_the_sdk(queued, chunks):
    """Nothing to hide: the stream is watched through the SDK's chunks, which it
    builds anyway (the events would parse the usage event a second time)."""
    client = _client(queued, chunks)
    parsed = _parsed_by_the_sdk(client)
    usage = {"stream_options": {"include_usage": True}}
    seen = _dumps(_read(client, **usage))
    assert seen == _dumps(_read(_client(None, chunks), **usage))
    assert len(parsed) == len(seen) and seen[-1]["usage"]["prompt_tokens"] == 20
    (call,) = queued
    assert _usage(call) == (20, 5, 10)
    assert (call.model, call.service_tier) == ("m-2024", "priority")
    assert call.first_token_ns is not None


@pytest.mark.parametrize("separators", [COMPACT, SPACED], ids=["compact", "spaced"])
def test_first_token_is_the_first_chunk_with_choices(queued, separators):
    """Azure's first chunk has no choices: the first token is the next one."""
    ticks: list[int] = []

    def azure(include_usage: bool) -> list[object]:
        return [{**_BASE, "choices": [], "prompt_filter_results": []},
                *openai_like(include_usage)]

    stream = _client(queued, azure, separators).chat.completions.create(model="m", messages=MSG,
                                                            stream=True)
    for chunk in stream:
        ticks.append(_recorder._perf_ns())
        if chunk.choices:
            break
    stream.close()
    first_token = queued[0].first_token_ns
    assert first_token is not None and ticks[0] < first_token <= ticks[1]


def test_left_early_the_model_and_tier_come_from_the_first_chunk(queued):
    stream = _client(queued).chat.completions.create(model="m", messages=MSG, stream=True)
    next(stream)
    stream.close()
    (call,) = queued
    assert call.usage is None and call.model is None  # nothing parsed on the caller's thread
    values = call.event_values()  # the writer's thread reads the kept first chunk
    assert (values[5], values[6], values[9]) == ("m-2024", "priority", False)


def test_an_error_event_that_carries_usage_still_reaches_the_sdk(queued):
    def failing(include_usage: bool) -> list[object]:
        return [_content(0), {"error": {"message": "overloaded", "type": "server_error",
                                        "code": "server_error"}, "usage": _USAGE}]

    with pytest.raises(openai.APIError, match="overloaded"):
        _read(_client(queued, failing))
    (call,) = queued
    assert (call.error_class, call.error_kind) == ("APIError", "server")
    assert _usage(call) == (20, 5, 10)


def test_text_that_is_not_json_fails_as_it_does_without_the_collector(queued):
    def broken(include_usage: bool) -> list[object]:
        return [_content(0), b'{"usage": {"prompt_tokens": 1', _content(1)]

    with pytest.raises(json.JSONDecodeError) as bare:
        _read(_client(None, broken))
    with pytest.raises(json.JSONDecodeError) as instrumented:
        _read(_client(queued, broken))
    assert str(instrumented.value) == str(bare.value)
    assert len(queued) == 1 and queued[0].error_class == "JSONDecodeError"


def test_async_streams_hide_the_usage_chunk_before_the_sdk_parses_it(queued):
    client = AsyncOpenAI(base_url="http://api.invalid/v1", api_key="x", max_retries=0,
                         http_client=httpx2.AsyncClient(
                             transport=_transport(openai_like, SPACED)))
    _instrument_client(client, {}, queued.append, None)

    async def go() -> list[object]:
        stream = await client.chat.completions.create(model="m", messages=MSG, stream=True)
        return [chunk.choices[0].delta.content async for chunk in stream]

    assert asyncio.run(go()) == ["t0", "t1", "t2"]
    gc.collect()
    (call,) = queued
    assert _usage(call) == (20, 5, 10) and call.first_token_ns is not None
