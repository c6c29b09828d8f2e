"""read_usage / field_map, and what a recorded call reads from a result: both of
OpenAI's usage namings in one shape."""

from __future__ import annotations

from collections import OrderedDict
from typing import NamedTuple

import pytest
from openai.types.chat import ChatCompletion
from openai.types.responses import Response

from collector._recorder import Call, ClientInfo
from collector.targets import TARGETS
from collector.usage import Usage, field_map, read_usage

CHAT_USAGE = {
    "prompt_tokens": 20,
    "completion_tokens": 10,
    "total_tokens": 30,
    "prompt_tokens_details": {"cached_tokens": 5, "cache_write_tokens": 2, "audio_tokens": 1},
    "completion_tokens_details": {"reasoning_tokens": 4, "audio_tokens": 3},
}

RESPONSES_USAGE = {
    "input_tokens": 100,
    "output_tokens": 40,
    "total_tokens": 140,
    "input_tokens_details": {"cached_tokens": 60, "cache_write_tokens": 7},
    "output_tokens_details": {"reasoning_tokens": 25},
}


class ResultInfo(NamedTuple):
    usage: Usage | None
    model: str | None
    service_tier: str | None


def read_result(result: object) -> ResultInfo:
    """What the collector records from a finished call's ``result`` (its own reading,
    ``Call.succeed_plain``): usage, model and service tier."""
    queued: list[Call] = []
    call = Call(TARGETS[0], ClientInfo("openai", {}, False, True, sink_put=queued.append), {})
    call.succeed_plain(result)
    assert queued == [call]
    return ResultInfo(call.usage, call.model, call.service_tier)


def chat_completion(**extra: object) -> ChatCompletion:
    return ChatCompletion.model_validate({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1_700_000_000,
        "model": "gpt-4o-2024-08-06", "choices": [], "usage": CHAT_USAGE, **extra,
    })


def response_data(**extra: object) -> dict[str, object]:
    return {
        "id": "resp_1", "object": "response", "created_at": 1_700_000_000.0,
        "model": "gpt-5-2025-08-07", "output": [], "parallel_tool_calls": True,
        "tool_choice": "auto", "tools": [], "usage": RESPONSES_USAGE, **extra,
    }


def test_chat_naming_from_sdk_object():
    completion = chat_completion()
    # input (20) already includes the 5 cached and the 2 cache-write tokens, and
    # output (10) already includes the 4 reasoning tokens: the sub-counts are kept
    # beside the totals and nothing is added again.
    assert read_usage(completion.usage) == Usage(
        input_tokens=20, cached_input_tokens=5, cache_write_tokens=2, output_tokens=10,
        reasoning_tokens=4, audio_input_tokens=1, audio_output_tokens=3)
    info = read_result(completion)
    assert info.usage == read_usage(completion.usage)
    assert info.model == "gpt-4o-2024-08-06"
    assert info.service_tier is None


def test_chat_naming_from_plain_dict():
    assert read_usage(CHAT_USAGE) == Usage(20, 5, 2, 10, 4, 1, 3)


def test_responses_naming_from_sdk_object():
    response = Response.model_validate(response_data(service_tier="flex"))
    expected = Usage(input_tokens=100, cached_input_tokens=60, cache_write_tokens=7,
                     output_tokens=40, reasoning_tokens=25)
    assert read_usage(response.usage) == expected
    assert read_result(response) == (expected, "gpt-5-2025-08-07", "flex")


def test_responses_naming_from_plain_dict():
    assert read_usage(RESPONSES_USAGE) == Usage(100, 60, 7, 40, 25, 0, 0)


def test_transcription_usage_with_input_token_details():
    usage = {"type": "tokens", "input_tokens": 30, "output_tokens": 8, "total_tokens": 38,
             "input_token_details": {"audio_tokens": 25, "text_tokens": 5}}
    assert read_usage(usage) == Usage(input_tokens=30, output_tokens=8, audio_input_tokens=25)


def test_embeddings_usage_has_no_output():
    assert read_usage({"prompt_tokens": 12, "total_tokens": 12}) == Usage(input_tokens=12)


def test_missing_details_give_zero_subcounts():
    assert read_usage({"prompt_tokens": 7, "completion_tokens": 3}) == Usage(7, 0, 0, 3, 0, 0, 0)
    assert read_usage({"input_tokens": 7, "output_tokens": 3, "input_tokens_details": None,
                       "output_tokens_details": None}) == Usage(7, 0, 0, 3, 0, 0, 0)


@pytest.mark.parametrize("usage", [
    None,
    {"type": "duration", "seconds": 3.2},
    {"foo": 1},
    {},
])
def test_no_token_usage_gives_none(usage):
    assert read_usage(usage) is None


@pytest.mark.parametrize(("value", "expected"), [
    (5, 5),
    (0, 0),
    (-3, 0),
    (True, 0),
    (False, 0),
    ("12", 0),
    (2.5, 0),
    (float("nan"), 0),
    (float("inf"), 0),
    (12.0, 12),
    (-4.0, 0),
    (10**6, 10**6),
])
def test_untrusted_values(value, expected):
    usage = read_usage({"prompt_tokens": value, "completion_tokens": value,
                        "prompt_tokens_details": {"cached_tokens": value}})
    assert usage == Usage(input_tokens=expected, cached_input_tokens=expected,
                          output_tokens=expected)
    assert all(type(n) is int for n in usage)


def test_responses_stream_event_reads_inner_response():
    event = {
        "type": "response.completed",
        "sequence_number": 12,
        "response": response_data(service_tier="flex"),
    }
    info = read_result(event)
    assert info.usage == Usage(100, 60, 7, 40, 25, 0, 0)
    assert info.model == "gpt-5-2025-08-07"
    assert info.service_tier == "flex"


def test_result_without_usage():
    info = read_result({"model": "gpt-4o", "service_tier": "", "usage": None})
    assert info == (None, "gpt-4o", None)
    assert read_result(None) == (None, None, None)


def test_field_map_reads_pydantic_extras():
    completion = chat_completion(x_custom=1)
    fields = field_map(completion)
    assert fields["x_custom"] == 1
    assert fields["model"] == "gpt-4o-2024-08-06"


def test_field_map_of_plain_dict_and_none():
    data = {"a": 1}
    assert field_map(data) is data
    assert dict(field_map(None)) == {}
    assert dict(field_map(object())) == {}


def test_usage_from_dict_subclass():
    usage = OrderedDict(prompt_tokens=20, completion_tokens=10)
    assert read_usage(usage) == Usage(input_tokens=20, output_tokens=10)
