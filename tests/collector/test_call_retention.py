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
