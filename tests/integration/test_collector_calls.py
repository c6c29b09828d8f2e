"""Each covered call, through the real SDK over real HTTP, lands as exactly one
event with the right usage, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import gc
import json

import openai
import pytest
from openai import AsyncAzureOpenAI, AsyncOpenAI, AzureOpenAI, OpenAI
from pydantic import BaseModel

import collector
from tests.conftest import events

MSG = [{"role": "user", "content": "hi"}]


class Answer(BaseModel):
    answer: str


def client(fake, **tags) -> OpenAI:
    return collector.instrument(OpenAI(base_url=fake.base_url, api_key="test", max_retries=2),
                                **tags)


def aclient(fake, **tags) -> AsyncOpenAI:
    return collector.instrument(
        AsyncOpenAI(base_url=fake.base_url, api_key="test", max_retries=2), **tags)


def only_event(db):
    assert collector.flush(10)
    rows = events(db)
    assert len(rows) == 1, rows
    return rows[0]


# Default usage of the fake server, Chat naming: 20 in (5 cached, 2 cache writes,
# 1 audio), 10 out (4 of them reasoning). Responses naming: 30 in (12 cached),
# 8 out (3 reasoning).
def assert_chat_usage(e) -> None:
    assert (e.input_tokens, e.cached_input_tokens, e.cache_write_tokens, e.output_tokens,
            e.reasoning_tokens, e.audio_input_tokens) == (20, 5, 2, 10, 4, 1)
    assert e.usage_reported


def assert_responses_usage(e) -> None:
    assert (e.input_tokens, e.cached_input_tokens, e.output_tokens, e.reasoning_tokens) == (
        30, 12, 8, 3)
    assert e.usage_reported


def test_chat_plain_records_usage_tags_and_request_id(fake_openai, recording):
    c = client(fake_openai, team="search", project="ranker")
    with collector.tags(user="u-42", feature="summaries", ticket="T-1"):
        result = c.chat.completions.create(
            model="gpt-4o-mini", messages=MSG,
            extra_headers={"x-fake-model": "gpt-4o-mini-2024-07-18",
                           "x-fake-service-tier": "flex"})
    assert isinstance(result, openai.types.chat.ChatCompletion)
    e = only_event(recording)
    assert_chat_usage(e)
    assert e.endpoint == "chat.completions"
    assert e.model_requested == "gpt-4o-mini"
    assert e.model == "gpt-4o-mini-2024-07-18"
    assert e.service_tier == "flex"
    assert (e.team, e.project, e.user, e.feature) == ("search", "ranker", "u-42", "summaries")
    tags = e.tags if isinstance(e.tags, dict) else json.loads(e.tags)
    assert tags == {"ticket": "T-1"}
    assert e.status_code == 200 and e.attempts == 1 and e.error_kind is None
    assert e.request_id == result._request_id
    assert not e.streamed and e.latency_ms > 0
    assert e.provider.startswith("127.0.0.1")


def test_chat_stream_loop_unchanged_and_usage_chunk_hidden(fake_openai, recording):
    c = client(fake_openai)
    stream = c.chat.completions.create(model="gpt-4o", messages=MSG, stream=True,
                                       extra_headers={"x-fake-chunks": "5"})
    assert isinstance(stream, openai.Stream)
    seen = []
    for chunk in stream:  # a caller's loop that indexes choices[0] must keep working
        seen.append(chunk.choices[0].delta.content)
    assert seen == ["", "t0 ", "t1 ", "t2 ", "t3 ", "t4 ", None]
    e = only_event(recording)
    assert_chat_usage(e)
    assert e.streamed and e.ttft_ms is not None and 0 < e.ttft_ms <= e.latency_ms


def test_stream_options_set_by_caller_are_respected(fake_openai, recording):
    c = client(fake_openai)
    with c.chat.completions.create(model="gpt-4o", messages=MSG, stream=True,
                                   stream_options={"include_usage": True}) as stream:
        chunks = list(stream)
    assert chunks[-1].choices == [] and chunks[-1].usage.prompt_tokens == 20  # theirs to see
    assert_chat_usage(only_event(recording))


def test_stream_without_usage_is_recorded_as_missing(fake_openai, recording):
    c = client(fake_openai)
    for _ in c.chat.completions.create(model="gpt-4o", messages=MSG, stream=True,
                                       stream_options={"include_usage": False}):
        pass
    e = only_event(recording)
    assert not e.usage_reported and e.input_tokens is None and e.output_tokens is None


def test_chat_parse_and_stream_helper(fake_openai, recording):
    c = client(fake_openai)
    parsed = c.chat.completions.parse(model="gpt-4o", messages=MSG, response_format=Answer)
    assert parsed.choices[0].message.parsed == Answer(answer="hello")
    with c.chat.completions.stream(model="gpt-4o", messages=MSG) as stream:
        for _ in stream:
            pass
    assert collector.flush(10)
    rows = events(recording)
    assert len(rows) == 2  # the helper calls create(stream=True) once: no double count
    for e in rows:
        assert_chat_usage(e)
    assert [e.streamed for e in rows] == [False, True]


def test_responses_plain_stream_helper_and_parse(fake_openai, recording):
    c = client(fake_openai, team="research")
    c.responses.create(model="gpt-5", input="hi")
    for _ in c.responses.create(model="gpt-5", input="hi", stream=True):
        pass
    with c.responses.stream(model="gpt-5", input="hi") as stream:
        for _ in stream:
            pass
        final = stream.get_final_response()
    assert final.usage.input_tokens == 30
    parsed = c.responses.parse(model="gpt-5", input="hi", text_format=Answer)
    assert parsed.output_parsed == Answer(answer="hello")
    assert collector.flush(10)
    rows = events(recording)
    assert len(rows) == 4
    for e in rows:
        assert_responses_usage(e)
        assert e.endpoint == "responses" and e.team == "research"
    assert [e.streamed for e in rows] == [False, True, True, False]
    assert all(e.ttft_ms is not None for e in rows if e.streamed)


def test_embeddings_and_moderations(fake_openai, recording):
    c = client(fake_openai)
    c.embeddings.create(model="text-embedding-3-small", input=["a", "b"])
    c.moderations.create(model="omni-moderation-latest", input="x")
    assert collector.flush(10)
    emb, mod = events(recording)
    assert (emb.endpoint, emb.input_tokens, emb.output_tokens, emb.usage_reported) == (
        "embeddings", 8, 0, True)
    assert mod.endpoint == "moderations" and not mod.usage_reported  # reports none


def test_provider_without_usage_is_marked_missing_not_guessed(fake_openai, recording):
    c = client(fake_openai)
    c.chat.completions.create(model="local-llama", messages=MSG,
                              extra_headers={"x-fake-no-usage": "1"})
    e = only_event(recording)
    assert not e.usage_reported
    assert e.input_tokens is None and e.output_tokens is None and e.model == "local-llama"


@pytest.mark.parametrize(("status", "exc_class", "kind"), [
    (429, openai.RateLimitError, "rate_limit"),
    (400, openai.BadRequestError, "client"),
    (500, openai.InternalServerError, "server"),
])
def test_errors_keep_class_and_status(fake_openai, recording, status, exc_class, kind):
    c = client(fake_openai)
    with pytest.raises(exc_class) as info:
        c.chat.completions.create(model="gpt-4o", messages=MSG,
                                  extra_headers={"x-fake-fail": str(status)})
    assert type(info.value) is exc_class and info.value.status_code == status
    e = only_event(recording)
    assert (e.status_code, e.error_class, e.error_kind) == (status, exc_class.__name__, kind)
    assert e.attempts == (1 if status == 400 else 3)  # 429/5xx: the SDK retried twice
    assert e.request_id == info.value.request_id
    assert not e.usage_reported


def test_retries_then_success_counts_attempts(fake_openai, recording):
    c = client(fake_openai)
    c.chat.completions.create(model="gpt-4o", messages=MSG,
                              extra_headers={"x-fake-fail": "429", "x-fake-fail-times": "2"})
    e = only_event(recording)
    assert e.attempts == 3 and e.status_code == 200 and e.error_kind is None
    assert_chat_usage(e)


def test_concurrent_threads_count_their_own_attempts(fake_openai, recording):
    # One client shared by 16 threads: every other thread's call is refused twice (429)
    # before it succeeds. Each event must count its own call's attempts, not its
    # neighbours' (attempts are attributed to the call its thread is making).
    import threading

    c = client(fake_openai)
    start = threading.Barrier(16)

    def call(i: int) -> None:
        retried = i % 2 == 0
        start.wait()
        with collector.tags(feature="retried" if retried else "plain"):
            c.chat.completions.create(model="gpt-4o", messages=MSG, extra_headers={
                "x-fake-fail": "429", "x-fake-fail-times": "2" if retried else "0"})

    threads = [threading.Thread(target=call, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert collector.flush(10)
    got = sorted((e.feature, e.attempts, e.status_code) for e in events(recording))
    assert got == [("plain", 1, 200)] * 8 + [("retried", 3, 200)] * 8
    from collector._hooks import SYNC_CALLS
    assert not SYNC_CALLS  # no thread is left registered as making a call


def test_concurrent_tasks_count_their_own_attempts(fake_openai, recording):
    # As with threads: 16 concurrent asyncio tasks on one client, every other one
    # refused twice (429) before it succeeds.
    c = aclient(fake_openai)

    async def call(i: int) -> None:
        retried = i % 2 == 0
        with collector.tags(feature="retried" if retried else "plain"):
            await c.chat.completions.create(model="gpt-4o", messages=MSG, extra_headers={
                "x-fake-fail": "429", "x-fake-fail-times": "2" if retried else "0"})

    async def main() -> None:
        await asyncio.gather(*(call(i) for i in range(16)))

    asyncio.run(main())
    assert collector.flush(10)
    got = sorted((e.feature, e.attempts, e.status_code) for e in events(recording))
    assert got == [("plain", 1, 200)] * 8 + [("retried", 3, 200)] * 8


def test_network_failure_is_classified_network(fake_openai, recording):
    c = client(fake_openai).with_options(max_retries=1)
    with pytest.raises(openai.APIConnectionError):
        c.chat.completions.create(model="gpt-4o", messages=MSG,
                                  extra_headers={"x-fake-fail": "drop"})
    e = only_event(recording)
    assert e.error_kind == "network" and e.status_code is None and e.attempts == 2


def test_abandoned_stream_recorded_once(fake_openai, recording):
    c = client(fake_openai)
    stream = c.chat.completions.create(model="gpt-4o", messages=MSG, stream=True,
                                       extra_headers={"x-fake-chunks": "200"})
    for i, _ in enumerate(stream):
        if i == 3:
            break
    del stream
    gc.collect()
    e = only_event(recording)
    assert e.streamed and not e.usage_reported  # stopped before the usage chunk
    # closing explicitly, and the responses helper left early, are recorded once too
    stream = c.chat.completions.create(model="gpt-4o", messages=MSG, stream=True,
                                       extra_headers={"x-fake-chunks": "200"})
    next(iter(stream))
    stream.close()
    stream.close()
    with c.responses.stream(model="gpt-5", input="hi",
                            extra_headers={"x-fake-chunks": "200"}) as rs:
        for i, _ in enumerate(rs):
            if i == 4:
                break
    gc.collect()
    assert collector.flush(10)
    assert len(events(recording)) == 3


def test_with_raw_response_before_and_after_instrument(fake_openai, recording):
    raw_client = OpenAI(base_url=fake_openai.base_url, api_key="test")
    _ = raw_client.chat.completions.with_raw_response  # cached before instrumenting
    c = collector.instrument(raw_client)
    raw = c.chat.completions.with_raw_response.create(model="gpt-4o", messages=MSG)
    assert raw.parse().usage.prompt_tokens == 20
    raw_stream = c.chat.completions.with_raw_response.create(model="gpt-4o", messages=MSG,
                                                             stream=True)
    assert [ch.choices[0].index for ch in raw_stream.parse()] == [0, 0, 0, 0, 0]
    assert collector.flush(10)
    rows = events(recording)
    assert len(rows) == 2
    for e in rows:
        assert_chat_usage(e)


def test_with_options_and_copy_are_recorded(fake_openai, recording):
    c = client(fake_openai, team="t")
    c.with_options(timeout=20).chat.completions.create(model="a", messages=MSG)
    c.copy(max_retries=0).embeddings.create(model="e", input="x")
    assert collector.flush(10)
    rows = events(recording)
    assert [(r.model, r.team, r.attempts) for r in rows] == [("a", "t", 1), ("e", "t", 1)]


def test_azure_clients(fake_openai, recording):
    az = collector.instrument(AzureOpenAI(api_key="k", api_version="2024-10-21",
                                          base_url=fake_openai.base_url), team="az")
    az.chat.completions.create(model="gpt-4o", messages=MSG)
    aaz = collector.instrument(AsyncAzureOpenAI(api_key="k", api_version="2024-10-21",
                                                base_url=fake_openai.base_url))

    async def go():
        await aaz.embeddings.create(model="e", input="x")

    asyncio.run(go())
    assert collector.flush(10)
    rows = events(recording)
    assert [r.provider for r in rows] == ["azure", "azure"]


def test_async_calls_and_streams(fake_openai, recording):
    c = aclient(fake_openai, project="p")

    async def go():
        await c.chat.completions.create(model="gpt-4o", messages=MSG)
        stream = await c.chat.completions.create(model="gpt-4o", messages=MSG, stream=True)
        assert isinstance(stream, openai.AsyncStream)
        async with stream:
            async for chunk in stream:
                assert chunk.choices[0].index == 0
        async with c.responses.stream(model="gpt-5", input="x") as rs:
            async for _ in rs:
                pass
        await c.responses.parse(model="gpt-5", input="x", text_format=Answer)
        with pytest.raises(openai.RateLimitError):
            await c.chat.completions.create(model="gpt-4o", messages=MSG,
                                            extra_headers={"x-fake-fail": "429"})
        abandoned = await c.chat.completions.create(
            model="gpt-4o", messages=MSG, stream=True, extra_headers={"x-fake-chunks": "100"})
        await abandoned.__anext__()
        await abandoned.close()

    asyncio.run(go())
    assert collector.flush(10)
    rows = events(recording)
    assert len(rows) == 6
    assert [r.streamed for r in rows] == [False, True, True, False, False, True]
    assert rows[4].error_kind == "rate_limit" and rows[4].attempts == 3
    assert not rows[5].usage_reported
    assert all(r.project == "p" for r in rows)


def test_images_and_audio_report_token_usage(fake_openai, recording):
    c = client(fake_openai)
    c.images.generate(model="gpt-image-1", prompt="a cat")
    c.audio.transcriptions.create(model="gpt-4o-transcribe", file=("a.wav", b"RIFF0000"))
    c.audio.transcriptions.create(
        model="whisper-1", file=("a.wav", b"RIFF0000"),
        extra_headers={"x-fake-usage": '{"type": "duration", "seconds": 3.5}'})
    assert collector.flush(10)
    img, audio, whisper = events(recording)
    assert (img.endpoint, img.input_tokens, img.output_tokens) == ("images.generate", 50, 4160)
    assert (audio.endpoint, audio.input_tokens, audio.audio_input_tokens,
            audio.output_tokens) == ("audio.transcriptions", 120, 110, 30)
    assert not whisper.usage_reported  # billed by the second: no tokens to record


def test_stream_failing_mid_way_is_recorded_as_failed(fake_openai, recording):
    """An error event after the first chunks: the SDK raises APIError and, on its way
    out, closes the response; the close hook used to record the call as a success."""
    c = client(fake_openai)
    seen = []
    with pytest.raises(openai.APIError) as raised:
        for chunk in c.chat.completions.create(
                model="gpt-4o", messages=MSG, stream=True,
                extra_headers={"x-fake-stream-error": "server_error", "x-fake-chunks": "5"}):
            seen.append(chunk.choices[0].delta.content)
    assert type(raised.value) is openai.APIError  # the caller's exception, unchanged
    assert seen == ["", "t0 "]
    e = only_event(recording)
    assert e.streamed and e.status_code == 200  # the HTTP answer was a 200
    assert (e.error_class, e.error_kind) == ("APIError", "server")


def test_async_stream_failing_mid_way_is_recorded_as_failed(fake_openai, recording):
    c = aclient(fake_openai)

    async def go() -> None:
        stream = await c.chat.completions.create(
            model="gpt-4o", messages=MSG, stream=True,
            extra_headers={"x-fake-stream-error": "rate_limit_exceeded"})
        with pytest.raises(openai.APIError):
            async for _ in stream:
                pass

    asyncio.run(go())
    e = only_event(recording)
    assert (e.error_class, e.error_kind, e.status_code) == ("APIError", "rate_limit", 200)


def test_stream_ending_inside_the_callers_except_block_is_a_success(fake_openai, recording):
    """The exception a caller is handling is not the stream's: a stream read to the
    end, or closed early, inside an ``except`` block is recorded without an error."""
    c = client(fake_openai)
    try:
        c.chat.completions.create(model="gpt-4o", messages=MSG,
                                  extra_headers={"x-fake-fail": "400"})
    except openai.BadRequestError:
        for _ in c.chat.completions.create(model="gpt-4o", messages=MSG, stream=True):
            pass
        early = c.chat.completions.create(model="gpt-4o", messages=MSG, stream=True,
                                          extra_headers={"x-fake-chunks": "50"})
        next(iter(early))
        early.close()
    assert collector.flush(10)
    failed, whole, closed = events(recording)
    assert failed.error_kind == "client"
    assert (whole.error_class, whole.error_kind) == (None, None) and whole.usage_reported
    assert (closed.error_class, closed.error_kind) == (None, None)
