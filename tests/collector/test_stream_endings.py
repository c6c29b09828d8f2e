"""Every way a stream can end records its call exactly once: read to the end, left
early and resumed in another loop, read with ``next()``, closed, or dropped without
ever being read (the observer's ``__del__``, which replaced a ``weakref.finalize``
per stream). The real SDK runs over an in-memory transport; calls are queued to a
list instead of the sink."""

from __future__ import annotations

import gc
import json
from collections.abc import Iterator

import httpx2
import pytest
from openai import OpenAI

from collector import _recorder
from collector._recorder import Call
from collector.instrument import _instrument_client
from spendwatch.fake_openai import CHAT_USAGE

MSG = [{"role": "user", "content": "hi"}]
_BASE = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m-1",
         "service_tier": "flex"}


def _sse(request: httpx2.Request) -> httpx2.Response:
    body = json.loads(request.content)
    chunks = [{**_BASE, "choices": [{"index": 0, "delta": {"content": f"t{i}"}}]}
              for i in range(4)]
    if (body.get("stream_options") or {}).get("include_usage"):
        chunks.append({**_BASE, "choices": [], "usage": CHAT_USAGE})
    data = b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks)
    return httpx2.Response(200, content=data + b"data: [DONE]\n\n", headers={
        "content-type": "text/event-stream", "x-request-id": "req_s"})


@pytest.fixture
def queued() -> Iterator[list[Call]]:
    calls: list[Call] = []
    yield calls
    assert not _recorder._LIVE  # no stream left behind unrecorded


def _client(queued: list[Call]) -> OpenAI:
    client = OpenAI(base_url="http://api.invalid/v1", api_key="x", max_retries=0,
                    http_client=httpx2.Client(transport=httpx2.MockTransport(_sse)))
    _instrument_client(client, {}, queued.append, None)
    return client


def _stream(client: OpenAI, **kwargs: object) -> object:
    return client.chat.completions.create(model="m", messages=MSG, stream=True, **kwargs)


def _values(call: Call) -> dict[str, object]:
    v = call.event_values()
    return {"model": v[5], "tier": v[6], "streamed": v[8], "usage": v[9],
            "input": v[10], "output": v[13], "ttft": v[18], "request_id": v[23]}


def test_read_to_the_end_hides_the_usage_chunk_and_records_once(queued):
    stream = _stream(_client(queued))
    chunks = list(stream)
    assert [c.choices[0].delta.content for c in chunks] == ["t0", "t1", "t2", "t3"]
    assert len(queued) == 1
    v = _values(queued[0])
    assert v["streamed"] and v["usage"] and (v["input"], v["output"]) == (20, 10)
    assert (v["model"], v["tier"], v["request_id"]) == ("m-1", "flex", "req_s")
    assert v["ttft"] is not None and v["ttft"] >= 0
    del stream
    gc.collect()
    assert len(queued) == 1


def test_caller_asked_for_usage_sees_the_usage_chunk(queued):
    chunks = list(_stream(_client(queued), stream_options={"include_usage": True}))
    assert len(chunks) == 5 and chunks[-1].usage.prompt_tokens == 20
    assert _values(queued[0])["input"] == 20


def test_left_early_and_resumed_in_another_loop(queued):
    stream = _stream(_client(queued))
    for _ in stream:
        break
    assert queued == []  # not finished: a loop left early is not the stream's end
    rest = list(stream)
    assert len(rest) == 3 and len(queued) == 1 and _values(queued[0])["input"] == 20


def test_next_then_loop(queued):
    stream = _stream(_client(queued))
    first = next(stream)
    assert first.choices[0].delta.content == "t0"
    assert len(list(stream)) == 3
    assert len(queued) == 1 and _values(queued[0])["input"] == 20


def test_closed_early_records_once_without_usage(queued):
    stream = _stream(_client(queued))
    next(iter(stream))
    stream.close()
    stream.close()
    del stream
    gc.collect()
    assert len(queued) == 1 and not _values(queued[0])["usage"]


def test_dropped_without_being_read_is_recorded(queued):
    stream = _stream(_client(queued))
    assert queued == []
    del stream
    gc.collect()
    assert len(queued) == 1
    v = _values(queued[0])
    assert v["streamed"] and not v["usage"] and v["ttft"] is None


def test_open_streams_are_recorded_at_exit(queued):
    stream = _stream(_client(queued))
    _recorder._finish_open_streams()  # what atexit runs, before the sink's own handler
    assert len(queued) == 1
    del stream
    gc.collect()
    assert len(queued) == 1


def test_a_recording_bug_in_a_chunk_is_logged_not_raised(queued, monkeypatch, caplog):
    def broken(usage: object) -> None:
        raise RuntimeError("usage bug")

    monkeypatch.setattr("collector._streams.read_usage", broken)
    chunks = list(_stream(_client(queued)))
    assert len(chunks) == 4
    assert "usage bug" in caplog.text
    assert len(queued) == 1

