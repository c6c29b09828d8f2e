"""The real SDK over an in-memory httpx transport answering every call with one
complete chat completion: no socket, no server."""

from __future__ import annotations

import json

import httpx2
from openai import AsyncOpenAI, OpenAI

from spendwatch.fake_openai import CHAT_USAGE

_BODY = json.dumps({"id": "c", "object": "chat.completion", "created": 1, "model": "m",
                    "choices": [{"index": 0, "finish_reason": "stop", "message": {
                        "role": "assistant", "content": "hi"}}],
                    "usage": CHAT_USAGE}).encode()
_HEADERS = {"content-type": "application/json", "x-request-id": "req_1"}
_BASE_URL = "http://api.invalid/v1"


def _answer(request: httpx2.Request) -> httpx2.Response:
    return httpx2.Response(200, content=_BODY, headers=_HEADERS)


async def _answer_async(request: httpx2.Request) -> httpx2.Response:
    return _answer(request)


def memory_client() -> OpenAI:
    return OpenAI(base_url=_BASE_URL, api_key="x",
                  http_client=httpx2.Client(transport=httpx2.MockTransport(_answer)))


def memory_async_client() -> AsyncOpenAI:
    return AsyncOpenAI(base_url=_BASE_URL, api_key="x", http_client=httpx2.AsyncClient(
        transport=httpx2.MockTransport(_answer_async)))
