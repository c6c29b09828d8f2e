"""What ``instrument()`` adds to a call, counted in machine instructions and cache
misses under Valgrind's cachegrind (not a test; needs ``valgrind`` and ``setarch``,
Debian: ``apt install valgrind``).

Timing figures on a shared machine move by +-10 us from run to run, and the same
bare call took 689 us in one run and 1,148 us in the next (bench/collector.py): a
change of 1-3 us cannot be seen in them. Counts of instructions and simulated cache
misses are deterministic for one build of the code (address-space randomisation
off, one hash seed: two runs agree within 200 instructions per call). A change of
code moves where objects land and the count with it (by up to ~7k per call, seen
when only this benchmark's own code moved), so a change shows beyond that, ~2 us,
still finer than any timing on this machine.

Each variant runs in its own process under cachegrind, the real SDK over an
in-memory httpx transport, making ``N`` and ``N + --calls`` calls after a warm-up
(the cyclic garbage collector off meanwhile: one full collection in one of the runs
would add ~200k instructions per call); the per-call figure is the difference of the
two runs divided by ``--calls``, so start-up and imports cancel out. The baseline is
the bare client, counted in the same run. Simulated caches: 32 KiB L1i and L1d, a 1
MiB last level (this machine's L2 per core; the shared L3 is other tenants' too).

    python -m bench.collector_instructions [--calls 500] [--seeds 0,1,2]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

VARIANTS = ("sync bare", "sync instrumented", "async bare", "async instrumented")
_FIGURES = {"Ir": r"I\s+refs:\s+([\d,]+)", "I1 misses": r"I1\s+misses:\s+([\d,]+)",
            "D1 misses": r"D1\s+misses:\s+([\d,]+)", "LL misses": r"LL misses:\s+([\d,]+)"}
_CACHES = ["--I1=32768,8,64", "--D1=32768,8,64", "--LL=1048576,8,64"]
_WARM_UP = 30
_BASE = 50


@dataclass(frozen=True)
class Counts:
    ir: int
    i1: int
    d1: int
    ll: int

    def __sub__(self, other: Counts) -> Counts:
        return Counts(self.ir - other.ir, self.i1 - other.i1, self.d1 - other.d1,
                      self.ll - other.ll)

    def per(self, n: int) -> Counts:
        return Counts(self.ir // n, self.i1 // n, self.d1 // n, self.ll // n)


def _child(variant: str, n: int) -> None:
    """Make ``n`` calls after the warm-up with one variant's client, then exit at once
    (no interpreter teardown in the counts)."""
    import collector
    from bench._memory import memory_async_client, memory_client

    tmp = tempfile.mkdtemp()
    # The writer never wakes during the count: its work is not the caller's.
    collector.configure(database_url=f"sqlite:///{tmp}/b.db", spool_dir=f"{tmp}/spool",
                        flush_interval=3600, batch_size=10**9, queue_size=10**9)
    kind, side = variant.split()
    msg = [{"role": "user", "content": "hi"}]
    if kind == "sync":
        client = memory_client()
        if side == "instrumented":
            collector.instrument(client)
        create = client.chat.completions.create
        for _ in range(_WARM_UP):
            create(model="m", messages=msg)
        gc.collect()
        gc.disable()
        for _ in range(n):
            create(model="m", messages=msg)
    else:
        aclient = memory_async_client()
        if side == "instrumented":
            collector.instrument(aclient)
        acreate = aclient.chat.completions.create

        async def go() -> None:
            for _ in range(_WARM_UP):
                await acreate(model="m", messages=msg)
            gc.collect()
            gc.disable()
            for _ in range(n):
                await acreate(model="m", messages=msg)
        asyncio.run(go())
    sys.stdout.flush()
    os._exit(0)


def _count(variant: str, n: int, seed: int) -> Counts:
    env = {**os.environ, "PYTHONHASHSEED": str(seed)}
    cmd = ["setarch", os.uname().machine, "-R", "valgrind", "--tool=cachegrind",
           "--cache-sim=yes", *_CACHES, "--cachegrind-out-file=/dev/null",
           sys.executable, "-m", "bench.collector_instructions", "--child", variant, str(n)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"cachegrind failed for {variant!r}:\n{proc.stderr[-2000:]}")
    found = [re.search(p, proc.stderr) for p in _FIGURES.values()]
    if not all(found):
        raise SystemExit(f"no cachegrind summary for {variant!r}:\n{proc.stderr[-2000:]}")
    return Counts(*(int(m.group(1).replace(",", "")) for m in found if m))


def _per_call(variant: str, calls: int, seed: int) -> Counts:
    with ThreadPoolExecutor(2) as pool:  # the two runs of a variant side by side
        short, long = pool.map(lambda n: _count(variant, n, seed), (_BASE, _BASE + calls))
    return (long - short).per(calls)


def _median(counts: list[Counts]) -> Counts:
    """Field by field: a hash seed moves where objects land, and the counts with it."""
    return Counts(*(statistics.median_low(getattr(c, f) for c in counts)
                    for f in ("ir", "i1", "d1", "ll")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=500,
                        help="calls counted per variant (beyond the shorter run's)")
    parser.add_argument("--seeds", default="0",
                        help="hash seeds, comma-separated: each moves where objects land "
                             "(by up to ~8k instructions per call); the median is printed")
    parser.add_argument("--child", nargs=2, metavar=("VARIANT", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child[0], int(args.child[1]))
        return
    missing = [tool for tool in ("valgrind", "setarch") if shutil.which(tool) is None]
    if missing:
        raise SystemExit(f"{' and '.join(missing)} not found: install Valgrind "
                         f"(Debian: apt install valgrind util-linux) to count instructions")
    print(f"what instrument() adds per chat.completions.create call, counted by "
          f"cachegrind over {args.calls} calls a variant (in-memory transport; "
          f"takes a few minutes)", flush=True)
    seeds = [int(seed) for seed in args.seeds.split(",")]
    counts: dict[str, list[Counts]] = {}
    for variant in VARIANTS:
        counts[variant] = [_per_call(variant, args.calls, seed) for seed in seeds]
        print(f"   counted {variant}", flush=True)
    print(f"   {'kind':<8}{'':>12}{'instructions':>14}{'I1 misses':>11}{'D1 misses':>11}"
          f"{'LL misses':>11}   (medians over hash seeds {args.seeds})")
    for kind in ("sync", "async"):
        bares, insts = counts[f"{kind} bare"], counts[f"{kind} instrumented"]
        each = [i - b for b, i in zip(bares, insts, strict=True)]
        bare, added = _median(bares), _median(each)
        print(f"   {kind:<8}{'bare':>12}{bare.ir:>14,}{bare.i1:>11,}{bare.d1:>11,}{bare.ll:>11,}")
        print(f"   {'':<8}{'added':>12}{added.ir:>+14,}{added.i1:>+11,}{added.d1:>+11,}"
              f"{added.ll:>+11,}   ({added.ir / bare.ir:+.2%} of the instructions)")
        if len(seeds) > 1:
            print(f"   {'':<8}{'by seed':>12}  "
                  f"{' / '.join(f'{c.ir:+,}' for c in each)} instructions")


if __name__ == "__main__":
    main()
