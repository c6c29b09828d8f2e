"""tags(): nesting, asyncio tasks, threads and executors, validation."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from collector import tags
from collector.tagging import current_tags, validate_tags
from spendwatch.errors import TagError


def snapshot() -> dict[str, str]:
    return dict(current_tags())


def test_nesting_inner_overrides_and_exit_restores():
    assert snapshot() == {}
    with tags(team="search", user="u-1") as outer:
        assert dict(outer) == {"team": "search", "user": "u-1"}
        with tags(user="u-2", feature="summaries"):
            assert snapshot() == {"team": "search", "user": "u-2", "feature": "summaries"}
        assert snapshot() == {"team": "search", "user": "u-1"}
    assert snapshot() == {}


def test_none_unsets_inside_block():
    with tags(team="search", user="u-1"):
        with tags(user=None):
            assert snapshot() == {"team": "search"}
        assert snapshot() == {"team": "search", "user": "u-1"}


def test_restored_after_exception():
    with pytest.raises(RuntimeError), tags(team="a"):
        raise RuntimeError("boom")
    assert snapshot() == {}


def test_tags_set_in_a_task_stay_in_that_task():
    async def main() -> tuple[dict[str, str], dict[str, str]]:
        entered = asyncio.Event()
        release = asyncio.Event()

        async def child() -> dict[str, str]:
            with tags(team="child"):
                entered.set()
                await release.wait()
                return snapshot()

        task = asyncio.create_task(child())
        await entered.wait()
        seen_outside = snapshot()  # while the task is inside its block
        release.set()
        return seen_outside, await task

    outside, inside = asyncio.run(main())
    assert outside == {}
    assert inside == {"team": "child"}


def test_concurrent_tasks_each_see_their_own():
    async def worker(name: str, seen: list[dict[str, str]]) -> None:
        with tags(team=name):
            for _ in range(5):
                await asyncio.sleep(0)
                seen.append(snapshot())

    async def main() -> tuple[list[dict[str, str]], list[dict[str, str]]]:
        a: list[dict[str, str]] = []
        b: list[dict[str, str]] = []
        await asyncio.gather(worker("a", a), worker("b", b))
        return a, b

    a, b = asyncio.run(main())
    assert a == [{"team": "a"}] * 5
    assert b == [{"team": "b"}] * 5


def test_task_created_in_block_inherits():
    async def main() -> dict[str, str]:
        with tags(project="p"):
            task = asyncio.create_task(_snapshot_async())
        return await task  # the task copied the context when it was created

    assert asyncio.run(main()) == {"project": "p"}


async def _snapshot_async() -> dict[str, str]:
    return snapshot()


def run_thread() -> dict[str, str]:
    seen: dict[str, str] = {}
    thread = threading.Thread(target=lambda: seen.update(snapshot()))
    thread.start()
    thread.join()
    return seen


def test_thread_started_inside_block_sees_tags():
    with tags(team="t", user="u"):
        assert run_thread() == {"team": "t", "user": "u"}


def test_thread_started_outside_block_sees_none():
    with tags(team="t"):
        pass  # installs the propagation; nothing may leak out of the block
    assert run_thread() == {}


def test_executor_created_outside_block():
    with ThreadPoolExecutor(max_workers=1) as pool:
        # start the only worker thread outside any block, so only submit() can carry tags
        assert dict(pool.submit(snapshot).result()) == {}
        with tags(team="a"):
            assert pool.submit(snapshot).result() == {"team": "a"}
        with tags(team="b"):
            assert pool.submit(snapshot).result() == {"team": "b"}


def test_executor_worker_started_inside_block_does_not_leak():
    with ThreadPoolExecutor(max_workers=1) as pool:
        with tags(team="a"):
            assert pool.submit(snapshot).result() == {"team": "a"}
        assert pool.submit(snapshot).result() == {}


def test_run_in_executor():
    async def main(pool: ThreadPoolExecutor) -> tuple[dict[str, str], dict[str, str]]:
        loop = asyncio.get_running_loop()
        loop.set_default_executor(pool)
        await loop.run_in_executor(None, snapshot)  # worker started outside any block
        with tags(feature="f"):
            default = await loop.run_in_executor(None, snapshot)
            explicit = await loop.run_in_executor(pool, snapshot)
        return default, explicit

    pool = ThreadPoolExecutor(max_workers=1)
    default, explicit = asyncio.run(main(pool))
    assert default == {"feature": "f"}
    assert explicit == {"feature": "f"}


@pytest.mark.parametrize(("values", "fragment"), [
    ({"team": 42}, "team=42"),
    ({"user": "x" * 201}, "user="),
    ({"feature": "a\nb"}, "feature="),
    ({"feature": "a\x7fb"}, "feature="),
    ({"1abc": "x"}, "'1abc'"),
    ({"a b": "x"}, "'a b'"),
    ({"n" * 65: "x"}, "'" + "n" * 65 + "'"),
])
def test_validation_errors_name_the_tag(values, fragment):
    with pytest.raises(TagError) as info:
        validate_tags(values)
    assert isinstance(info.value, ValueError)
    assert fragment in str(info.value)
    with pytest.raises(TagError), tags(**values):
        pass
    assert snapshot() == {}


def test_valid_edge_values():
    ok = {"a" * 64: "x" * 200, "team.sub-1_x": "", "_private": "ü €", "gone": None}
    assert validate_tags(ok) == ok


def test_name_with_trailing_newline_is_refused():
    with pytest.raises(TagError):
        validate_tags({"team\n": "x"})
