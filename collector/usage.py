"""Reading token usage out of API results. Pure functions, no I/O.

OpenAI names usage two ways and the collector keeps both in one shape:

============  =============================================  ==================================
kept as       Chat Completions / Embeddings                  Responses / Images / Audio
============  =============================================  ==================================
input         prompt_tokens                                  input_tokens
cached        prompt_tokens_details.cached_tokens            input_tokens_details.cached_tokens
cache writes  prompt_tokens_details.cache_write_tokens       ...details.cache_write_tokens
output        completion_tokens                              output_tokens
reasoning     completion_tokens_details.reasoning_tokens     ...details.reasoning_tokens
audio         prompt/completion_tokens_details.audio_tokens  input_token(s)_details.audio_tokens
============  =============================================  ==================================

Input includes the cached and cache-write tokens and output includes reasoning
tokens, as in OpenAI's bills; nothing is ever estimated from text. A result with
no usage gives ``None`` (the event is recorded with usage marked missing).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

__all__ = ["Usage", "field_map", "read_usage", "result_fields"]


class Usage(NamedTuple):
    """Token counts of one call (a tuple: cheap to build on the caller's thread)."""

    input_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    audio_input_tokens: int = 0
    audio_output_tokens: int = 0


_EMPTY: dict[str, object] = {}
_tuple_new = tuple.__new__  # Usage from 7 values without NamedTuple.__new__'s call


def field_map(obj: object) -> Mapping[str, object]:
    """The fields of a pydantic model (its ``__dict__`` plus extras) or a mapping; the
    common cases (a dict, a model) first, as this runs on the caller's thread.

    Reading ``__dict__`` directly matters: ``getattr`` of a field a model does not
    have goes through pydantic's ``__getattr__`` and an exception, 10x slower."""
    if obj is None:
        return _EMPTY
    if isinstance(obj, dict):
        return obj
    fields = getattr(obj, "__dict__", None)
    if fields is not None:
        extra = getattr(obj, "__pydantic_extra__", None)
        return {**fields, **extra} if extra else fields
    if isinstance(obj, Mapping):
        return obj
    return _EMPTY


def _get(obj: object, name: str) -> object:
    return field_map(obj).get(name)


def _int(value: object) -> int:
    if type(value) is int:
        return value if value > 0 else 0
    if value is None or isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return max(value, 0)
    if isinstance(value, float) and value.is_integer():
        return max(int(value), 0)
    return 0


def read_usage(usage: object) -> Usage | None:
    """Normalise a usage object (pydantic model or plain dict) of either naming.

    Runs on the caller's thread for every call (so that a queued call keeps a tuple
    of ints, not the SDK's usage objects): the counts are read with plain dict
    lookups, and ``_int`` is only called for a value that is not already a
    non-negative int."""
    if usage is None:
        return None
    # field_map inline for the SDK's models (no extra fields: ``__pydantic_extra__`` is
    # empty, the fields are the ``__dict__``) and for the dicts of a parsed stream
    # event: each frame less per call counts, as the SDK's work between two calls
    # evicts this code from the CPU caches.
    u = (usage if type(usage) is dict else field_map(usage)
         if getattr(usage, "__pydantic_extra__", 1) else usage.__dict__)
    prompt = u.get("prompt_tokens")
    if prompt is not None:  # Chat Completions, legacy Completions, Embeddings
        pdet = u.get("prompt_tokens_details")
        cdet = u.get("completion_tokens_details")
        pdet = (_EMPTY if pdet is None else pdet if type(pdet) is dict else field_map(pdet)
                if getattr(pdet, "__pydantic_extra__", 1) else pdet.__dict__)
        cdet = (_EMPTY if cdet is None else cdet if type(cdet) is dict else field_map(cdet)
                if getattr(cdet, "__pydantic_extra__", 1) else cdet.__dict__)
        values = (prompt, pdet.get("cached_tokens") or 0,
                  pdet.get("cache_write_tokens") or 0, u.get("completion_tokens") or 0,
                  cdet.get("reasoning_tokens") or 0, pdet.get("audio_tokens") or 0,
                  cdet.get("audio_tokens") or 0)
    elif u.get("type") == "duration":  # audio billed by the second: no tokens
        return None
    else:
        inp = u.get("input_tokens")
        if inp is None:
            return None
        # Responses, Images, Audio transcriptions
        idet = u.get("input_tokens_details") or u.get("input_token_details")
        odet = u.get("output_tokens_details")
        idet = (_EMPTY if idet is None else idet if type(idet) is dict else field_map(idet)
                if getattr(idet, "__pydantic_extra__", 1) else idet.__dict__)
        odet = (_EMPTY if odet is None else odet if type(odet) is dict else field_map(odet)
                if getattr(odet, "__pydantic_extra__", 1) else odet.__dict__)
        values = (inp, idet.get("cached_tokens") or 0, idet.get("cache_write_tokens") or 0,
                  u.get("output_tokens") or 0, odet.get("reasoning_tokens") or 0,
                  idet.get("audio_tokens") or 0, odet.get("audio_tokens") or 0)
    # A missing count (None, often: e.g. cache_write_tokens) is 0 by ``or 0``, as
    # ``_int`` would make it and every other falsy value; only what is left and is not
    # a non-negative int goes through ``_int``.
    for v in values:
        if type(v) is not int or v < 0:
            return _tuple_new(Usage, map(_int, values))
    return _tuple_new(Usage, values)


def result_fields(result: object) -> tuple[Mapping[str, object], Mapping[str, object]]:
    """(fields, outer): the fields that carry a result's usage, model and service tier,
    and the result's own. Responses-API events carry them in ``event.response``."""
    outer = fields = field_map(result)
    inner = fields.get("response")
    if inner is not None and not isinstance(inner, str | bytes):
        inner_fields = field_map(inner)
        if inner_fields.get("usage") is not None or inner_fields.get("model") is not None:
            fields = inner_fields
    return fields, outer
