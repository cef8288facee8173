# Copyright 2026 The valkey-leader-k8s authors
# See LICENSE file for licensing details.

"""What handling one event costs, in process, with ops.testing.

The timer covers ``Context.run`` only: building the Context, the input state
and the event happens before it, and imports long before (after warm-up runs,
nothing is imported any more). What remains is ops' own dispatch (the same for
both charms, including what ops.testing does to simulate Juju) plus whatever
the charm does.

Each case starts from the same input every run: files a run changed are put
back first, so that a case that re-renders re-renders every time.
"""

from __future__ import annotations

import dataclasses
import gc
import time
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING

from ops import testing

from bench.deployment import (
    CharmType,
    Deployment,
    EventFactory,
    config_changed,
    counting_side_effects,
    leader_elected,
    peers_changed_by,
    start,
    update_status,
)
from bench.stats import Summary

if TYPE_CHECKING:
    from tests.fake_kubernetes import FakeKubernetes


@dataclasses.dataclass
class Case:
    """One event on one unit, from one input state."""

    name: str
    unit: int
    event: EventFactory
    state: testing.State
    reset: Callable[[], None] = lambda: None
    """Put back what a run changed on disk, so that every run does the same work."""


def converge(deployment: Deployment, charm: CharmType) -> None:
    """Deploy three units, unit 0 leading, and run until nothing changes any more."""
    steps = [(0, leader_elected)] + [(unit, config_changed) for unit in (0, 1, 2)]
    steps += [(unit, update_status) for unit in (0, 1, 2)]
    for unit, event in steps:
        ctx = deployment.context(charm, unit)
        state = deployment.state(unit)
        deployment.absorb(unit, ctx.run(event(ctx, state), state))


def build_cases(deployment: Deployment, charm: CharmType) -> list[Case]:
    """The events to time, from a converged deployment in which unit 0 leads."""
    converge(deployment, charm)
    replica_of_0 = {unit: deployment.config_file(unit).read_text() for unit in (1, 2)}

    def put_back_replica_files() -> None:
        for unit, text in replica_of_0.items():
            deployment.config_file(unit).write_text(text)

    cases = [
        Case('config-changed (follower, no change)', 1, config_changed, deployment.state(1)),
        Case('config-changed (leader, no change)', 0, config_changed, deployment.state(0)),
        Case('update-status (leader, no change)', 0, update_status, deployment.state(0)),
        Case('collect-status only (start, leader)', 0, start, deployment.state(0)),
    ]

    # Juju moves leadership to unit 1; unit 0's record is still the published one.
    deployment.leader = 1
    elected = Case(
        'leader-elected (unit 1 takes over)',
        1,
        leader_elected,
        deployment.state(1),
        put_back_replica_files,
    )
    # What unit 1 publishes is what unit 2's relation-changed then carries.
    ctx = deployment.context(charm, 1)
    deployment.absorb(1, ctx.run(leader_elected(ctx, elected.state), elected.state))
    followed = Case(
        'valkey-peers-relation-changed (follower, new leader)',
        2,
        peers_changed_by(1),
        deployment.state(2),
        put_back_replica_files,
    )
    put_back_replica_files()
    return [*cases[:2], elected, followed, *cases[2:]]


def what_it_does(
    deployment: Deployment, case: Case, charm: CharmType, kubernetes: FakeKubernetes
) -> Counter[str]:
    """The side effects of one run of ``case``: what the timings include."""
    case.reset()
    ctx = deployment.context(charm, case.unit)
    calls_before = len(kubernetes.requests)
    with counting_side_effects() as effects:
        ctx.run(case.event(ctx, case.state), case.state)
    case.reset()
    counts = effects.take()
    counts['kubernetes calls'] = len(kubernetes.requests) - calls_before
    return counts


def time_case(
    deployment: Deployment, case: Case, charms: dict[str, CharmType], *, warmup: int, runs: int
) -> dict[str, Summary]:
    """Milliseconds per ``Context.run`` of ``case``, for each charm, in alternation."""
    samples: dict[str, list[float]] = {name: [] for name in charms}
    order = list(charms.items())
    # Everything alive now (the benchmark, the test framework, their imports)
    # is set aside: collecting before each run then costs little, and no timed
    # run pays for collecting a heap that a hook's own process never has.
    gc.collect()
    gc.freeze()
    for run in range(warmup + runs):
        # Swap who goes first every run: neither always runs right after the other.
        for name, charm in order if run % 2 else reversed(order):
            case.reset()
            ctx = deployment.context(charm, case.unit)
            event = case.event(ctx, case.state)
            gc.collect()
            started = time.perf_counter_ns()
            ctx.run(event, case.state)
            elapsed = time.perf_counter_ns() - started
            if run >= warmup:
                samples[name].append(elapsed / 1e6)
    gc.unfreeze()
    case.reset()
    return {name: Summary(tuple(values)) for name, values in samples.items()}
