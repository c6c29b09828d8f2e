"""The ``x-request-id`` of a call is that of its last HTTP response that had one. The
wrapped ``send`` of the HTTP client counts every attempt and only keeps the last
response's headers; they are read when the call ends, and only if neither the SDK's
result nor its exception carries the id."""

from __future__ import annotations

import contextlib

import httpx2
import openai
from openai.types.chat import ChatCompletion

from collector._hooks import calling, install_hooks, new_sent
from collector._recorder import Call, ClientInfo
from collector.targets import TARGETS

_REQUEST = httpx2.Request("POST", "http://api.invalid/v1/chat/completions")


def _response(status: int, request_id: str | None) -> httpx2.Response:
    headers = {"content-type": "application/json"}
    if request_id is not None:
        headers["x-request-id"] = request_id
    return httpx2.Response(status, headers=headers, request=_REQUEST)


class _HTTPClient:
    """An HTTP client whose ``send`` answers with the given responses in turn (an
    exception is raised, as a failed connection is)."""

    def __init__(self, *answers: httpx2.Response | Exception) -> None:
        self._answers = iter(answers)

    def send(self, request: httpx2.Request, **kwargs: object) -> httpx2.Response:
        answer = next(self._answers)
        if isinstance(answer, Exception):
            raise answer
        return answer


def _attempts(*answers: httpx2.Response | Exception) -> tuple[Call, list[Call]]:
    queued: list[Call] = []
    sent = new_sent()
    http = _HTTPClient(*answers)
    assert install_hooks(http, False) and install_hooks(http, False)  # wrapped once
    with calling(sent, is_async=False):
        for _ in answers:
            with contextlib.suppress(httpx2.ConnectError):
                http.send(_REQUEST, stream=False)
    call = Call.after(TARGETS[0], ClientInfo("openai", {}, False, True,
                                             sink_put=queued.append),
                      {"model": "m"}, 0, 0, sent)
    return call, queued


def _result(request_id: str | None) -> ChatCompletion:
    result = ChatCompletion.model_validate({
        "id": "c", "object": "chat.completion", "created": 1, "model": "m", "choices": []})
    if request_id is not None:
        result._request_id = request_id
    return result


def test_a_result_without_an_id_takes_the_last_response_s() -> None:
    call, queued = _attempts(_response(500, "req_a"), _response(200, "req_b"))
    call.succeed_plain(_result(None))
    assert queued == [call]
    assert (call.request_id, call.attempts, call.status) == ("req_b", 2, 200)
    assert call.headers is None  # not kept while queued


def test_a_last_response_without_an_id_keeps_the_earlier_one() -> None:
    call, _ = _attempts(_response(500, "req_a"), _response(200, None))
    call.succeed_plain(_result(None))
    assert call.request_id == "req_a"


def test_the_sdk_result_s_id_is_used_without_reading_headers() -> None:
    call, _ = _attempts(_response(500, "req_a"), _response(200, "req_b"))
    call.succeed_plain(_result("req_b"))
    assert call.request_id == "req_b" and call.headers is None


def test_a_failed_call_takes_the_exception_s_id_else_the_last_response_s() -> None:
    call, queued = _attempts(_response(429, "req_a"), _response(429, "req_b"))
    call.fail(openai.RateLimitError("slow down", response=_response(429, "req_c"),
                                    body=None))
    assert queued == [call]
    assert (call.request_id, call.status, call.error_kind) == ("req_c", 429, "rate_limit")
    call, _ = _attempts(_response(500, "req_a"))
    call.fail(openai.APIConnectionError(request=_REQUEST))
    assert call.request_id == "req_a" and call.headers is None


def test_an_attempt_that_never_got_a_response_is_counted() -> None:
    call, _ = _attempts(httpx2.ConnectError("refused"), _response(200, "req_b"))
    call.succeed_plain(_result(None))
    assert (call.attempts, call.status, call.request_id) == (2, 200, "req_b")


def test_sends_outside_a_call_are_passed_through_uncounted() -> None:
    http = _HTTPClient(_response(200, "req_a"))
    install_hooks(http, False)
    assert http.send(_REQUEST).headers["x-request-id"] == "req_a"


def test_a_nested_call_counts_its_own_attempts_and_the_outer_one_resumes() -> None:
    from collector._hooks import SYNC_CALLS

    http = _HTTPClient(_response(200, "req_a"), _response(200, "req_b"),
                       _response(200, "req_c"))
    install_hooks(http, False)
    outer, inner = new_sent(), new_sent()
    with calling(outer, is_async=False):
        http.send(_REQUEST)
        with calling(inner, is_async=False):
            http.send(_REQUEST)
        http.send(_REQUEST)
    assert (outer[0], inner[0]) == (2, 1)
    assert not SYNC_CALLS  # nothing left registered for this thread


class _AsyncHTTPClient:
    def __init__(self, *answers: httpx2.Response) -> None:
        self._answers = iter(answers)

    async def send(self, request: httpx2.Request, **kwargs: object) -> httpx2.Response:
        return next(self._answers)


def _run_without_a_loop(coro: object) -> object:
    """Drive a coroutine that never suspends, with no event loop running (as under an
    event loop other than asyncio's)."""
    try:
        coro.send(None)  # type: ignore[attr-defined]
    except StopIteration as done:
        return done.value
    raise AssertionError("the coroutine suspended")


def test_async_attempts_count_in_asyncio_tasks_and_outside_asyncio() -> None:
    import asyncio

    http = _AsyncHTTPClient(*(_response(200, f"req_{i}") for i in range(4)))
    assert install_hooks(http, True)
    in_task, outside = new_sent(), new_sent()

    async def two_sends() -> None:
        await http.send(_REQUEST)
        await http.send(_REQUEST)

    async def in_asyncio() -> None:
        with calling(in_task, is_async=True):
            await two_sends()

    asyncio.run(in_asyncio())
    with calling(outside, is_async=True):  # no loop: the context variable carries it
        _run_without_a_loop(two_sends())
    assert in_task[:2] == outside[:2] == [2, 200]  # attempts, last status
