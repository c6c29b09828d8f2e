"""A recorded call waits in the sink's queue until the writer thread takes it: it
must keep no object of the SDK's (result, usage, response) alive meanwhile, or every
queued call adds GC-tracked objects and the cyclic garbage collector runs more often
on the application's threads (see ``Call``'s docstring)."""

from __future__ import annotations

import gc

import pydantic
from openai.types.chat import ChatCompletion

from collector._recorder import Call, ClientInfo
from collector.targets import TARGETS
from spendwatch.fake_openai import CHAT_USAGE


def _tracked_referents(obj: object, depth: int = 3) -> list[object]:
    """Every GC-tracked object reachable from ``obj`` within ``depth`` steps, skipping
    the long-lived ones a call shares with every other call (target, client, tags)."""
    shared = (obj.target, obj.client, obj.defaults, obj.tags)  # type: ignore[attr-defined]
    seen: list[object] = []
    todo = [(r, 1) for r in gc.get_referents(obj)]
    while todo:
        item, d = todo.pop()
        if (any(item is s for s in shared) or isinstance(item, type)
                or not gc.is_tracked(item)):
            continue
        seen.append(item)
        if d < depth:
            todo.extend((r, d + 1) for r in gc.get_referents(item))
    return seen


def test_a_recorded_call_keeps_no_sdk_object() -> None:
    queued: list[Call] = []
    info = ClientInfo("openai", {"team": "t"}, False, True, sink_put=queued.append)
    result = ChatCompletion.model_validate({
        "id": "c", "object": "chat.completion", "created": 1, "model": "m",
        "usage": CHAT_USAGE, "choices": [{"index": 0, "finish_reason": "stop",
                                          "message": {"role": "assistant", "content": "hi"}}]})
    call = Call(TARGETS[0], info, {"model": "m"})
    call.succeed_plain(result)
    assert queued == [call]
    kept = _tracked_referents(call)
    assert not [o for o in kept if isinstance(o, pydantic.BaseModel)], kept
    assert all(type(o) is not dict or o is call.tags for o in kept), kept
    assert call.event_values()[10:17] == (20, 5, 2, 10, 4, 1, 0)  # counts read already


def test_a_plain_call_is_queued_as_one_tuple_holding_no_sdk_object(fake_openai) -> None:
    # Through the real SDK and wrapper: a complete result is queued as a PlainCall
    # (a tuple of counts and strings and the list of what was sent, emptied of the
    # response's headers); its event is built later, once, with one id.
    from openai import OpenAI

    import collector
    from collector._recorder import PlainCall

    client = collector.instrument(OpenAI(base_url=fake_openai.base_url, api_key="x"),
                                  team="t")
    queued: list[object] = []
    client.__dict__["_spendwatch"].sink_put = queued.append
    client.chat.completions.create(model="gpt-4o", messages=[{"role": "user",
                                                              "content": "hi"}])
    [item] = queued
    assert type(item) is PlainCall
    from collector.usage import Usage

    shared = (item[0], item[1], item[2], item[4])  # target, client, its defaults, tags
    sent = item[8]
    kept = [o for o in item if gc.is_tracked(o) and not any(o is x for x in shared)]
    assert [type(o) for o in kept] == [list, Usage], kept  # the sent list, the counts
    assert sent == [1, 200, None, None]  # attempts, status; the headers let go of
    assert not [o for o in gc.get_referents(*kept) if gc.is_tracked(o)
                and not isinstance(o, type)]
    values = item.event_values()
    assert values is item.event_values() and item.to_event().id == values[0]
    assert values[10:17] == (20, 5, 2, 10, 4, 1, 0)  # the counts, read on the caller's
    assert values[4:7] == ("gpt-4o", "gpt-4o", "default")  # requested, answered, tier
    event = item.to_event()
    assert (event.streamed, event.team, event.attempts, event.status_code) == (
        False, "t", 1, 200)
    assert event.request_id and event.latency_ms > 0
