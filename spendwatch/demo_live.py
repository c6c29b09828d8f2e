"""The demo's live calls: the real ``openai`` SDK, instrumented by the collector,
against :class:`spendwatch.fake_openai.FakeOpenAI` on 127.0.0.1, so that the newest
events of the demo are genuinely recorded (tags, streams, a 429 retried by the SDK,
the unpriced fine-tune), the way an application's are."""

from __future__ import annotations

import json
import math
import sys

__all__ = ["LIVE_CALLS", "live_calls"]

LIVE_CALLS = 40


def live_calls(seed: int, calls: int = LIVE_CALLS) -> int:
    """Real ``openai`` SDK calls, instrumented, against a local server: today's newest
    events are genuinely recorded. Returns the number of calls."""
    import random

    from openai import OpenAI

    import collector
    from spendwatch.demo_data import RUNAWAY, USERS, WORKLOADS
    from spendwatch.fake_openai import FakeOpenAI

    rng = random.Random(seed + 1)
    made = 0
    with FakeOpenAI() as server:
        client = collector.instrument(OpenAI(base_url=server.base_url, api_key="sk-demo",
                                             max_retries=2))
        for i in range(calls):
            w = RUNAWAY if i % 8 == 7 else rng.choice(WORKLOADS)
            user = w.user if w.user != "" else rng.choice(USERS[w.team or ""])
            tags = {k: v for k, v in (("team", w.team), ("project", w.project),
                                      ("user", user), ("feature", w.feature)) if v}
            inp = max(8, int(w.input_tokens * math.exp(rng.gauss(0.0, 0.5))))
            out = max(1, int(w.output_tokens * math.exp(rng.gauss(0.0, 0.5))))
            cached = int(inp * w.cached_share) // 128 * 128 if rng.random() < w.cache_hit else 0
            headers = {"x-fake-service-tier": w.tier}
            if i == 5:  # the SDK retries a 429 once, then succeeds
                headers.update({"x-fake-fail": "429", "x-fake-fail-times": "1"})
            stream = rng.random() < w.stream
            with collector.tags(**tags):
                made += 1
                try:
                    _one_call(client, w.endpoint, w.model, stream, headers, inp, cached,
                              out, int(out * w.reasoning))
                except Exception as exc:  # recorded by the collector; the demo goes on
                    print(f"live call failed: {type(exc).__name__}", file=sys.stderr)
    return made


def _one_call(client: object, endpoint: str, model: str, stream: bool,
              headers: dict[str, str], inp: int, cached: int, out: int,
              reasoning: int) -> None:
    msgs = [{"role": "user", "content": "demo"}]
    c = client  # an instrumented openai.OpenAI
    if endpoint == "embeddings":
        headers["x-fake-usage"] = json.dumps({"prompt_tokens": inp, "total_tokens": inp})
        c.embeddings.create(model=model, input="demo", extra_headers=headers)  # type: ignore[attr-defined]
    elif endpoint == "responses":
        headers["x-fake-usage"] = json.dumps({
            "input_tokens": inp, "output_tokens": out, "total_tokens": inp + out,
            "input_tokens_details": {"cached_tokens": cached},
            "output_tokens_details": {"reasoning_tokens": reasoning}})
        result = c.responses.create(model=model, input="demo", stream=stream,  # type: ignore[attr-defined]
                                    extra_headers=headers)
        if stream:
            for _ in result:
                pass
    else:
        headers["x-fake-usage"] = json.dumps({
            "prompt_tokens": inp, "completion_tokens": out, "total_tokens": inp + out,
            "prompt_tokens_details": {"cached_tokens": cached},
            "completion_tokens_details": {"reasoning_tokens": reasoning}})
        result = c.chat.completions.create(model=model, messages=msgs, stream=stream,  # type: ignore[attr-defined]
                                           extra_headers=headers)
        if stream:
            for _ in result:
                pass


