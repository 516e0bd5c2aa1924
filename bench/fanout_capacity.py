"""Capacity mode of the fan-out bench: the most subscribers a peer keeps up with.

``python -m bench.fanout_capacity [--quick]``, with ``bench.fanout``'s other
options (``--clients``, ``--nchan-storage``, ``--linger``, ...). At a fixed 200 events/s to
all-events subscribers, callhub and nchan are stepped through growing
subscriber counts in the same run (each step: both peers, one after the other,
on a fresh server). A step is the latency phase of ``bench.fanout``
(``Bench.latency``, the same code, with this mode's rate and duration). A peer
keeps up at a step when

- p99 commit->receive latency is at most ``P99_LIMIT_MS``,
- every delivery is in by the end of the drain window (no backlog), and
- the publisher kept the rate (its last event left at most ``MAX_LAG_S``
  behind schedule).

A peer that fails a step is not tried at larger counts; the gap between its
last good count and its first failure is then halved ``REFINE_STEPS`` times,
so the figure is not just the coarse step below. The steps are bounded
in count and, through ``BUDGET_S``, in time. The client processes' CPU share
is printed per step, so a reader can tell a client-bound step from a
server-bound one.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from bench import fanout
from bench.fanout import (
    FULL,
    QUICK,
    Bench,
    Clients,
    NchanPeer,
    Peer,
    Row,
    Scenario,
    client_share,
    describe_run,
    ms_text,
)
from bench.harness import BenchError
from callhub.cli.status_line import StatusLine

RATE: Final = 200  # events/s, as in the issue
SECONDS: Final = 4.0  # at the rate, per step
DRAIN_S: Final = 2.0  # after the last publish: what is not in by then is a backlog
P99_LIMIT_MS: Final = 100.0
MAX_LAG_S: Final = 0.1
STEPS: Final = (250, 500, 750, 1000, 1500, 2000, 3000, 4000, 5000, 6000, 8000)
QUICK_STEPS: Final = (50, 100)
BUDGET_S: Final = 420.0  # no step starts after this much of the mode's time
QUICK_BUDGET_S: Final = 40.0
TARGET_RATIO: Final = 1.5  # callhub's capacity / nchan's, the target
PEERS: Final = ("callhub", "nchan")
REFINE_STEPS: Final = 2  # halvings of the gap between the last good and the first bad step
GRAIN: Final = 50  # subscribers: refined counts are multiples of this
QUICK_GRAIN: Final = 10


def bracket(results: Sequence[Step], peer: str) -> tuple[int, int | None]:
    """The largest count ``peer`` kept up with below the smallest it did not
    (0 if none), and that smallest failing count (None: it never failed)."""
    mine = [s for s in results if s.peer == peer]
    high = min((s.subs for s in mine if not s.kept_up), default=None)
    low = max((s.subs for s in mine if s.kept_up and (high is None or s.subs < high)),
              default=0)
    return low, high


@dataclass
class Step:
    """One peer at one subscriber count."""

    peer: str
    row: Row

    @property
    def subs(self) -> int:
        return self.row.subs

    @property
    def rate(self) -> float:
        r = self.row
        return r.lat_received / r.lat_wall_s if r.lat_wall_s else 0.0

    @property
    def missing(self) -> int:
        return max(0, self.row.lat_expected - self.row.lat_received)

    @property
    def failures(self) -> list[str]:
        """Why the peer did not keep up (empty: it did)."""
        r = self.row
        why = []
        if r.problems and not r.lat_received:
            why.append("the step failed")
        if self.missing:
            why.append(f"backlog: {self.missing:,} deliveries missing")
        if not r.p99_ms <= P99_LIMIT_MS:  # also nan
            why.append(f"p99 > {P99_LIMIT_MS:g} ms")
        if r.lat_publish_lag_s > MAX_LAG_S:
            why.append(f"publisher {r.lat_publish_lag_s:.2f} s behind")
        return why

    @property
    def kept_up(self) -> bool:
        return not self.failures


async def run(peers: Sequence[Peer], clients: Clients, status: StatusLine, *,
              quick: bool = False, floor: dict[str, float] | None = None) -> list[Step]:
    """Step every peer up until it fails; print the tables and the ratio."""
    plan = dataclasses.replace(QUICK if quick else FULL, rate=RATE,
                               rate_seconds=1.0 if quick else SECONDS,
                               drain_s=1.0 if quick else DRAIN_S)
    steps = QUICK_STEPS if quick else STEPS
    budget = QUICK_BUDGET_S if quick else BUDGET_S
    bench = Bench(plan, clients, status)
    going = [peer for peer in peers if peer.name in PEERS]
    if not going:
        raise BenchError(f"capacity mode compares {' and '.join(PEERS)}: neither is running")
    measured = list(going)
    results: list[Step] = []
    started = time.monotonic()
    untried: list[int] = []

    async def measure(peer: Peer, subs: int) -> Step:
        status.update(f"capacity: {peer.name}, {subs:,} subscribers at {RATE} events/s ...",
                      force=True)
        row = Row(peer.name, subs, "all")
        try:
            await bench.latency(peer, Scenario(subs, all_events=True), row)
        except BenchError as error:
            row.problems.append(f"failed: {error}")
        step = Step(peer.name, row)
        results.append(step)
        return step

    for subs in steps:
        if not going:
            break
        if time.monotonic() - started > budget:
            untried = [n for n in steps if n >= subs]
            break
        for peer in list(going):
            if not (await measure(peer, subs)).kept_up:
                going.remove(peer)
    # The steps are coarse: halve the gap between the last count a peer kept
    # up with and the first it did not, a few times.
    grain = QUICK_GRAIN if quick else GRAIN
    for peer in measured:
        for _ in range(REFINE_STEPS):
            low, high = bracket(results, peer.name)
            if high is None or time.monotonic() - started > budget:
                break
            middle = round((low + high) / 2 / grain) * grain
            if not low < middle < high:
                break
            await measure(peer, middle)
    status.clear()
    report(results, plan.rate_seconds, plan.drain_s, clients, peers, floor, untried)
    return results


def report(results: Sequence[Step], seconds: float, drain_s: float, clients: Clients,
           peers: Sequence[Peer], floor: dict[str, float] | None,
           untried: Sequence[int]) -> None:
    nchan = next((p for p in peers if isinstance(p, NchanPeer)), None)
    describe_run({s.peer for s in results}, len(clients.pids),
                 nchan_storage=nchan.storage if nchan is not None else "memory", floor=floor)
    print(f"Capacity: {RATE} events/s for {seconds:g} s to all-events subscribers, drain "
          f"{drain_s:g} s; a peer keeps up while p99 <= {P99_LIMIT_MS:g} ms, nothing is "
          f"missing after the drain and the publisher is at most {MAX_LAG_S:g} s behind")
    head = (f"{'peer':<8} {'subs':>6} {'deliv/s':>9} {'p50 ms':>8} {'p99 ms':>8} "
            f"{'server CPU':>10} {'CPU us/dlv':>10} {'client':>6}  kept up")
    best: dict[str, int] = {}
    for name in PEERS:
        mine = sorted((s for s in results if s.peer == name), key=lambda s: s.subs)
        if not mine:
            continue
        print()
        print(head)
        print("-" * len(head))
        for s in mine:
            r = s.row
            busy = r.lat_cpu_s / r.lat_wall_s if r.lat_wall_s else math.nan
            per = r.lat_cpu_s * 1e6 / r.lat_received if r.lat_received else math.nan
            verdict = "yes" if s.kept_up else "no: " + "; ".join(s.failures)
            print(f"{name:<8} {s.subs:>6,} {s.rate:>9,.0f} {ms_text(r.p50_ms):>8} "
                  f"{ms_text(r.p99_ms):>8} {busy:>10.0%} {per:>10.2f} "
                  f"{client_share(r.lat_client_busy):>6}  {verdict}")
            for problem in r.problems:
                print(f"         {problem}")
        best[name] = bracket(results, name)[0]
    print("(deliv/s: deliveries received / time from the first publish until all were in. "
          "server CPU: share of one core; client: the client processes' CPU share, "
          "! = the client may be the limit)")
    if untried:
        print(f"not tried (out of the mode's time budget): {', '.join(map(str, untried))}")
    kept = dict(best)
    line = "; ".join(f"{name} keeps up with {n:,}" + _limit(name, results)
                     for name, n in kept.items())
    ratio = ""
    if kept.get("callhub") is not None and kept.get("nchan"):
        value = kept["callhub"] / kept["nchan"]
        if bracket(results, "nchan")[1] is None:
            ratio = "; callhub / nchan: not determined (nchan kept up at every step)"
        else:
            bound = "at least " if bracket(results, "callhub")[1] is None else ""
            ratio = (f"; callhub / nchan: {bound}{value:.2f} "
                     f"({'meets' if value >= TARGET_RATIO else 'BELOW'} >= {TARGET_RATIO:g})")
    print(f"\nCapacity at {RATE} events/s: {line}{ratio}")


def _limit(name: str, results: Sequence[Step]) -> str:
    """Where the peer stopped keeping up, or ``+`` when it never did (its
    capacity is higher than the last step it was given)."""
    high = bracket(results, name)[1]
    return "+" if high is None else f" (not with {high:,})"


def main(argv: Sequence[str] | None = None) -> int:
    return fanout.main(argv, mode=run, description=__doc__.splitlines()[0] if __doc__ else None)


if __name__ == "__main__":
    sys.exit(main())
