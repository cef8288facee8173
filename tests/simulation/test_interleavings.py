# Copyright 2026 The valkey-leader-k8s authors
# See LICENSE file for licensing details.

"""Seeded random walks of leadership changes, hooks in any order, lagging and empty replicas.

Each walk deploys three units, then takes random steps: Juju moves the lease
to another unit (maybe in the middle of a hook, noticed or not), one unit runs
its next queued hook (any unit, in any order, not round by round), a replica
falls behind (its link cut while the primary takes writes), or a replica's pod
comes back on empty storage. A writer goes through ``<app>-primary`` all along,
and the probe of ``watch.py`` reads every server's role each millisecond.

After every step no two servers accept writes; once the hooks settle exactly
one does, the one ``<app>-primary`` selects, and no acknowledged write is lost
(every pod is stopped with SIGTERM here, never killed: nothing is lost to a crash).
The seeds are fixed, so a failure replays.
"""

from __future__ import annotations

import random
import shutil

import pytest

from .driver import Application, LeaseExpiry, Pending
from .test_leadership import deploy
from .watch import Watch, assert_one_primary_selected, settle_until, writable_servers

SEEDS = (1, 2, 3, 4, 5, 6)
STEPS = 16


def primary_now(app: Application) -> bool:
    leader = app.leader()
    return leader is not None and writable_servers(app) == [leader.name]


def lag(app: Application, rng: random.Random) -> str:
    """A replica stops receiving for a while: its link cut, the primary takes writes."""
    replicas = [
        u for u in app.live_units() if u.server.running and writable_servers(app) != [u.name]
    ]
    if not replicas:
        return 'lag: no replica'
    unit = rng.choice(replicas)
    with unit.server.client(app.password()) as client:
        client.command('CLIENT', 'KILL', 'TYPE', 'master')
    return f'lag {unit.name}'


def empty_replica(app: Application, rng: random.Random) -> str:
    """A replica's pod comes back on empty storage (its start-up hooks are queued)."""
    writable = writable_servers(app)
    candidates = [
        u
        for u in app.live_units()
        if u.name not in writable and not u.leader and not u.queue and u.server.running
    ]
    if not candidates:
        return 'empty: no candidate'
    unit = rng.choice(candidates)
    app.delete_pod(unit.unit_id)
    shutil.rmtree(unit.charm.data_dir)
    unit.charm.data_dir.mkdir()
    app.recreate_pod(unit.unit_id)
    return f'empty {unit.name}'


def move_lease(app: Application, rng: random.Random) -> str:
    current = app.leader()
    others = [u for u in app.live_units() if u is not current]
    to = rng.choice(others)
    if current is not None and rng.random() < 0.5:
        # The lease runs out in the middle of the old leader's next hook.
        expiry = LeaseExpiry(
            unit_id=current.unit_id,
            at_slow_call=1,
            then=to.unit_id,
            noticed=rng.random() < 0.5,
            points=('kubernetes', 'pebble'),
        )
        app.expire_lease(expiry)
        current.queue.append(Pending('update-status'))
        return f'lease of {current.name} runs out mid-hook -> {to.name}'
    app.elect(to.unit_id)
    return f'elect {to.name}'


def one_hook(app: Application, rng: random.Random) -> str:
    pending = [u for u in app.live_units() if u.queue]
    if not pending:
        unit = rng.choice(app.live_units())
        unit.queue.append(Pending('update-status'))
    else:
        unit = rng.choice(pending)
    event = unit.queue.popleft()
    app._dispatch(unit, event)  # pyright: ignore[reportPrivateUsage]
    return f'{unit.name} {event.kind}'


STEP_KINDS = (move_lease, one_hook, one_hook, one_hook, lag, empty_replica)


@pytest.mark.parametrize('seed', SEEDS)
def test_a_random_walk_never_leaves_two_primaries_or_loses_a_write(
    app: Application, seed: int
) -> None:
    rng = random.Random(seed)  # noqa: S311 - a replayable walk, not a secret
    deploy(app)
    walk: list[str] = []
    with Watch(app) as watch:
        for _ in range(STEPS):
            walk.append(rng.choice(STEP_KINDS)(app, rng))
            assert len(writable_servers(app)) <= 1, f'after {walk}'
        settle_until(app, lambda: primary_now(app), timeout=40)

    assert len(writable_servers(app)) == 1, f'walk: {walk}'
    assert_one_primary_selected(app, watch)
