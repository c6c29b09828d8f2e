"""A small OpenAI-compatible HTTP server on 127.0.0.1, for tests, benchmarks and
the demo: the real ``openai`` SDK talks to it over real HTTP.

It answers ``/v1/chat/completions`` (JSON and SSE), ``/v1/responses`` (JSON and
SSE), ``/v1/embeddings``, ``/v1/moderations``, ``/v1/completions``,
``/v1/images/generations`` and ``/v1/audio/transcriptions``. A request
steers it with headers (sent with ``extra_headers=``):

``x-fake-fail: 429|500|400|drop``   answer with that error (``drop``: close the
                                    connection without answering)
``x-fake-fail-times: N``            ...only for the first N attempts of a call
                                    (read from ``x-stainless-retry-count``)
``x-fake-usage: {json}``            the usage object to report (Chat naming for chat
                                    and embeddings, Responses naming for responses)
``x-fake-no-usage: 1``              report no usage at all
``x-fake-model: NAME``              the model the response names
``x-fake-chunks: N``                content chunks in a stream (default 3)
``x-fake-chunk-delay-ms: N``        pause between chunks
``x-fake-service-tier: NAME``       the service tier the response names
``x-fake-stream-error: CODE``       a chat stream fails after its first content chunk
                                    with an SSE error event of that code

``GET /v1/organization/costs`` (the admin Costs API) answers with OpenAI's page shape
from :attr:`FakeOpenAI.costs_buckets` (bucket objects, filtered by ``start_time`` /
``end_time``), ``costs_page_size`` buckets per page with ``next_page`` cursors;
``costs_status`` makes it answer with that HTTP error instead; every query is kept in
``costs_queries`` and its ``Authorization`` header in ``costs_auth``.
"""

from __future__ import annotations

import itertools
import json
import re
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["CHAT_USAGE", "RESPONSES_USAGE", "FakeOpenAI"]

#: Usage reported by default (Chat naming): 20 in (5 cached, 2 cache writes, 1
#: audio), 10 out (4 reasoning).
CHAT_USAGE: dict[str, object] = {
    "prompt_tokens": 20, "completion_tokens": 10, "total_tokens": 30,
    "prompt_tokens_details": {"cached_tokens": 5, "cache_write_tokens": 2,
                              "audio_tokens": 1},
    "completion_tokens_details": {"reasoning_tokens": 4, "audio_tokens": 0},
}
#: Usage reported by default (Responses naming): 30 in (12 cached), 8 out (3 reasoning).
RESPONSES_USAGE: dict[str, object] = {
    "input_tokens": 30, "output_tokens": 8, "total_tokens": 38,
    "input_tokens_details": {"cached_tokens": 12, "cache_write_tokens": 0},
    "output_tokens_details": {"reasoning_tokens": 3},
}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 2048  # the stdlib's 5 resets connections under load
    allow_reuse_address = True

    def handle_error(self, request: object, client_address: object) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, ConnectionError | TimeoutError):
            return  # a client closed its keep-alive connection: normal
        super().handle_error(request, client_address)  # type: ignore[arg-type]


class FakeOpenAI:
    """Start with ``with FakeOpenAI() as server: OpenAI(base_url=server.base_url)``."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.requests = 0
        self.paths: list[str] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        handler = type("Handler", (_Handler,), {"fake": self})
        self._server = _Server((host, port), handler)
        self._thread: threading.Thread | None = None
        #: the Costs API's data: {"object": "bucket", "start_time", "end_time", "results"}
        self.costs_buckets: list[dict[str, object]] = []
        self.costs_page_size = 7
        self.costs_status: int | None = None
        self.costs_queries: list[dict[str, list[str]]] = []
        self.costs_auth: list[str] = []

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> FakeOpenAI:
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05},
                                        name="fake-openai", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def next_request_id(self) -> str:
        return f"req_{next(self._ids):06d}"

    def count(self, path: str) -> None:
        with self._lock:
            self.requests += 1
            self.paths.append(path)


class _Handler(BaseHTTPRequestHandler):
    fake: FakeOpenAI
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body leave at once (no 40 ms stall)

    def log_message(self, format: str, *args: object) -> None:
        pass

    # -- plumbing ---------------------------------------------------------------
    def _body(self) -> dict[str, object]:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        ctype = self.headers.get("content-type", "")
        if raw and ctype.startswith("application/json"):
            return json.loads(raw)
        return {}  # multipart uploads (audio, image edits): the fake ignores the bytes

    def _send_json(self, status: int, payload: object, request_id: str) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.send_header("x-request-id", request_id)
        if status == 429 or status >= 500:
            self.send_header("retry-after-ms", "1")
        self.end_headers()
        self.wfile.write(data)

    def _send_sse(self, events: Iterator[tuple[str | None, object]], request_id: str,
                  delay: float) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("transfer-encoding", "chunked")
        self.send_header("x-request-id", request_id)
        self.end_headers()
        try:
            for name, data in events:
                text = "" if name is None else f"event: {name}\n"
                text += f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n"
                raw = text.encode()
                self.wfile.write(f"{len(raw):x}\r\n".encode() + raw + b"\r\n")
                self.wfile.flush()
                if delay:
                    time.sleep(delay)
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client went away (abandoned stream)

    def _header_json(self, name: str, default: dict[str, object]) -> dict[str, object] | None:
        if self.headers.get("x-fake-no-usage"):
            return None
        raw = self.headers.get(name)
        return json.loads(raw) if raw else default

    # -- routing -----------------------------------------------------------------
    def do_POST(self) -> None:
        path = re.sub(r"/deployments/[^/]+", "", self.path.split("?")[0])  # Azure routes
        body = self._body()
        self.fake.count(path)
        request_id = self.fake.next_request_id()
        fail = self.headers.get("x-fake-fail")
        times = int(self.headers.get("x-fake-fail-times") or 10**9)
        attempt = int(self.headers.get("x-stainless-retry-count") or 0)
        if fail and attempt < times:
            if fail == "drop":
                self.close_connection = True
                self.connection.shutdown(2)
                return
            status = int(fail)
            kind = {429: "rate_limit_exceeded", 400: "invalid_request_error"}.get(
                status, "server_error")
            self._send_json(status, {"error": {"message": f"fake {status}", "type": kind,
                                               "code": kind, "param": None}}, request_id)
            return
        routes = {
            "/v1/chat/completions": self._chat,
            "/v1/responses": self._responses,
            "/v1/embeddings": self._embeddings,
            "/v1/moderations": self._moderations,
            "/v1/completions": self._completions,
            "/v1/images/generations": self._images,
            "/v1/audio/transcriptions": self._transcription,
        }
        route = routes.get(path)
        if route is None:
            self._send_json(404, {"error": {"message": f"no route {path}",
                                            "type": "invalid_request_error"}}, request_id)
            return
        route(body, request_id)

    def _model(self, body: dict[str, object]) -> str:
        return self.headers.get("x-fake-model") or str(body.get("model") or "unknown")

    def _chat(self, body: dict[str, object], request_id: str) -> None:
        model = self._model(body)
        usage = self._header_json("x-fake-usage", CHAT_USAGE)
        tier = self.headers.get("x-fake-service-tier") or "default"
        created = int(time.time())
        base = {"id": "chatcmpl-fake", "created": created, "model": model,
                "service_tier": tier, "system_fingerprint": "fp_fake"}
        if not body.get("stream"):
            self._send_json(200, {**base, "object": "chat.completion", "choices": [{
                "index": 0, "finish_reason": "stop", "logprobs": None,
                "message": {"role": "assistant", "content": '{"answer": "hello"}',
                            "refusal": None}}], "usage": usage}, request_id)
            return
        n = int(self.headers.get("x-fake-chunks") or 3)
        delay = int(self.headers.get("x-fake-chunk-delay-ms") or 0) / 1000
        include = bool((body.get("stream_options") or {}).get("include_usage"))  # type: ignore[union-attr]

        fails = self.headers.get("x-fake-stream-error")

        def events() -> Iterator[tuple[str | None, object]]:
            chunk = {**base, "object": "chat.completion.chunk"}
            yield None, {**chunk, "choices": [{"index": 0, "delta": {"role": "assistant",
                                                                    "content": ""},
                                               "finish_reason": None}]}
            for i in range(n):
                yield None, {**chunk, "choices": [{"index": 0, "delta": {"content": f"t{i} "},
                                                   "finish_reason": None}]}
                if fails:  # what OpenAI sends when a stream breaks off mid-way
                    yield None, {"error": {"message": "fake stream error", "type": fails,
                                           "code": fails, "param": None}}
                    return
            yield None, {**chunk, "choices": [{"index": 0, "delta": {},
                                               "finish_reason": "stop"}]}
            if include:
                yield None, {**chunk, "choices": [], "usage": usage}
            yield None, "[DONE]"

        self._send_sse(events(), request_id, delay)

    def _completions(self, body: dict[str, object], request_id: str) -> None:
        usage = self._header_json("x-fake-usage", CHAT_USAGE)
        self._send_json(200, {"id": "cmpl-fake", "object": "text_completion",
                              "created": int(time.time()), "model": self._model(body),
                              "choices": [{"index": 0, "text": "hi", "finish_reason": "stop",
                                           "logprobs": None}], "usage": usage}, request_id)

    def _responses(self, body: dict[str, object], request_id: str) -> None:
        model = self._model(body)
        usage = self._header_json("x-fake-usage", RESPONSES_USAGE)
        tier = self.headers.get("x-fake-service-tier") or "default"
        text = '{"answer": "hello"}'
        response = {
            "id": "resp_fake", "object": "response", "created_at": time.time(),
            "model": model, "status": "completed", "service_tier": tier,
            "output": [{"type": "message", "id": "msg_fake", "role": "assistant",
                        "status": "completed", "content": [
                            {"type": "output_text", "text": text, "annotations": []}]}],
            "parallel_tool_calls": True, "tool_choice": "auto", "tools": [],
            "usage": usage, "error": None, "incomplete_details": None,
            "instructions": None, "metadata": {}, "temperature": 1.0, "top_p": 1.0,
        }
        if not body.get("stream"):
            self._send_json(200, response, request_id)
            return
        n = int(self.headers.get("x-fake-chunks") or 3)
        delay = int(self.headers.get("x-fake-chunk-delay-ms") or 0) / 1000

        def events() -> Iterator[tuple[str | None, object]]:
            seq = itertools.count()
            start = {**response, "status": "in_progress", "output": [], "usage": None}
            yield "response.created", {"type": "response.created", "response": start,
                                       "sequence_number": next(seq)}
            item = {"type": "message", "id": "msg_fake", "role": "assistant",
                    "status": "in_progress", "content": []}
            yield "response.output_item.added", {"type": "response.output_item.added",
                                                 "output_index": 0, "item": item,
                                                 "sequence_number": next(seq)}
            yield "response.content_part.added", {
                "type": "response.content_part.added", "item_id": "msg_fake",
                "output_index": 0, "content_index": 0, "sequence_number": next(seq),
                "part": {"type": "output_text", "text": "", "annotations": []}}
            for i in range(n):
                yield "response.output_text.delta", {
                    "type": "response.output_text.delta", "item_id": "msg_fake",
                    "output_index": 0, "content_index": 0, "delta": f"t{i} ",
                    "logprobs": [], "sequence_number": next(seq)}
            yield "response.completed", {"type": "response.completed", "response": response,
                                         "sequence_number": next(seq)}

        self._send_sse(events(), request_id, delay)

    def _embeddings(self, body: dict[str, object], request_id: str) -> None:
        usage = self._header_json("x-fake-usage", {"prompt_tokens": 8, "total_tokens": 8})
        inputs = body.get("input")
        count = len(inputs) if isinstance(inputs, list) else 1
        payload: dict[str, object] = {
            "object": "list", "model": self._model(body),
            "data": [{"object": "embedding", "index": i, "embedding": [0.1, 0.2, 0.3]}
                     for i in range(count)]}
        if usage is not None:
            payload["usage"] = usage
        self._send_json(200, payload, request_id)

    def _images(self, body: dict[str, object], request_id: str) -> None:
        usage = self._header_json("x-fake-usage", {
            "input_tokens": 50, "output_tokens": 4160, "total_tokens": 4210,
            "input_tokens_details": {"text_tokens": 50, "image_tokens": 0}})
        payload: dict[str, object] = {"created": int(time.time()),
                                      "data": [{"b64_json": "aGVsbG8="}]}
        if usage is not None:
            payload["usage"] = usage
        self._send_json(200, payload, request_id)

    def _transcription(self, body: dict[str, object], request_id: str) -> None:
        usage = self._header_json("x-fake-usage", {
            "type": "tokens", "input_tokens": 120, "output_tokens": 30, "total_tokens": 150,
            "input_token_details": {"audio_tokens": 110, "text_tokens": 10}})
        payload: dict[str, object] = {"text": "hello"}
        if usage is not None:
            payload["usage"] = usage
        self._send_json(200, payload, request_id)

    def _moderations(self, body: dict[str, object], request_id: str) -> None:
        self._send_json(200, {"id": "modr-fake", "model": self._model(body), "results": [{
            "flagged": False, "categories": {}, "category_scores": {}}]}, request_id)

    # -- the admin Costs API ------------------------------------------------------
    def do_GET(self) -> None:
        from urllib.parse import parse_qs, urlsplit

        parts = urlsplit(self.path)
        if parts.path != "/v1/organization/costs":
            self.send_error(501, "Unsupported method ('GET')")
            return
        self.fake.count(parts.path)
        request_id = self.fake.next_request_id()
        query = parse_qs(parts.query)
        self.fake.costs_queries.append(query)
        self.fake.costs_auth.append(self.headers.get("authorization", ""))
        if self.fake.costs_status is not None:
            status = self.fake.costs_status
            self._send_json(status, {"error": {"message": f"fake {status}", "type": "error",
                                               "code": None, "param": None}}, request_id)
            return
        start = int(query.get("start_time", ["0"])[0])
        end = int(query.get("end_time", [str(2**62)])[0])
        limit = min(int(query.get("limit", ["7"])[0]), self.fake.costs_page_size)
        offset = int(query.get("page", ["0"])[0] or 0)
        buckets = [b for b in self.fake.costs_buckets
                   if start <= int(b["start_time"]) < end]  # type: ignore[call-overload]
        page = buckets[offset:offset + limit]
        more = offset + limit < len(buckets)
        self._send_json(200, {"object": "page", "data": page, "has_more": more,
                              "next_page": str(offset + limit) if more else None}, request_id)


def main() -> None:  # pragma: no cover - used by the benchmark
    """``python -m spendwatch.fake_openai [PORT]``: serve until killed; prints the URL."""
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    server = FakeOpenAI(port=port).start()
    print(server.base_url, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":  # pragma: no cover
    main()
