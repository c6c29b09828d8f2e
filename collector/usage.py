"""Reading token usage out of API results. Pure functions, no I/O.

OpenAI names usage two ways and the collector keeps both in one shape:

=====================  ==========================================  ===========================
kept as                Chat Completions / Embeddings                Responses / Images / Audio
=====================  ==========================================  ===========================
input                  prompt_tokens                                input_tokens
cached input           prompt_tokens_details.cached_tokens          input_tokens_details.cached_tokens
cache writes           prompt_tokens_details.cache_write_tokens     input_tokens_details.cache_write_tokens
output                 completion_tokens                            output_tokens
reasoning (in output)  completion_tokens_details.reasoning_tokens   output_tokens_details.reasoning_tokens
audio in / out         prompt/completion_tokens_details.audio_tokens  input_token(s)_details.audio_tokens
=====================  ==========================================  ===========================

Input includes the cached and cache-write tokens and output includes reasoning
tokens, as in OpenAI's bills; nothing is ever estimated from text. A result with
no usage gives ``None`` (the event is recorded with usage marked missing).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["ResultInfo", "Usage", "read_result", "read_usage"]


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    audio_input_tokens: int = 0
    audio_output_tokens: int = 0


@dataclass(frozen=True, slots=True)
class ResultInfo:
    """What an API result says about the call."""

    usage: Usage | None
    model: str | None
    service_tier: str | None


def _get(obj: object, name: str) -> object:
    if obj is None:
        return None
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


def _int(value: object) -> int:
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return max(value, 0)
    if isinstance(value, float) and value.is_integer():
        return max(int(value), 0)
    return 0


def read_usage(usage: object) -> Usage | None:
    """Normalise a usage object (pydantic model or plain dict) of either naming."""
    if usage is None:
        return None
    if _get(usage, "type") == "duration":  # audio billed by the second: no tokens
        return None
    prompt = _get(usage, "prompt_tokens")
    if prompt is not None:  # Chat Completions, legacy Completions, Embeddings
        pdet = _get(usage, "prompt_tokens_details")
        cdet = _get(usage, "completion_tokens_details")
        return Usage(
            input_tokens=_int(prompt),
            cached_input_tokens=_int(_get(pdet, "cached_tokens")),
            cache_write_tokens=_int(_get(pdet, "cache_write_tokens")),
            output_tokens=_int(_get(usage, "completion_tokens")),
            reasoning_tokens=_int(_get(cdet, "reasoning_tokens")),
            audio_input_tokens=_int(_get(pdet, "audio_tokens")),
            audio_output_tokens=_int(_get(cdet, "audio_tokens")),
        )
    inp = _get(usage, "input_tokens")
    if inp is not None:  # Responses, Images, Audio transcriptions
        idet = _get(usage, "input_tokens_details") or _get(usage, "input_token_details")
        odet = _get(usage, "output_tokens_details")
        return Usage(
            input_tokens=_int(inp),
            cached_input_tokens=_int(_get(idet, "cached_tokens")),
            cache_write_tokens=_int(_get(idet, "cache_write_tokens")),
            output_tokens=_int(_get(usage, "output_tokens")),
            reasoning_tokens=_int(_get(odet, "reasoning_tokens")),
            audio_input_tokens=_int(_get(idet, "audio_tokens")),
            audio_output_tokens=_int(_get(odet, "audio_tokens")),
        )
    return None


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def read_result(result: object) -> ResultInfo:
    """Usage, model and service tier of a non-streamed result (or a stream's final
    chunk or event). Responses-API events carry them in ``event.response``."""
    inner = _get(result, "response")
    if inner is not None and not isinstance(inner, str | bytes) and (
            _get(inner, "usage") is not None or _get(inner, "model") is not None):
        result = inner
    return ResultInfo(
        usage=read_usage(_get(result, "usage")),
        model=_text(_get(result, "model")),
        service_tier=_text(_get(result, "service_tier")),
    )
