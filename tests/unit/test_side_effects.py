# Copyright 2026 The valkey-leader-k8s authors
# See LICENSE file for licensing details.

"""An event that changes nothing leaves the world alone; a change restarts each unit once.

Every needless restart drops Valkey's client connections, and every needless
peer-data write wakes up every other unit. These rules are counted where the
charm calls ops (pushes, restarts, peer-data saves, secret writes) and at the
fake Kubernetes API server: counts, never time. ``tox -e bench`` reports the
same counts over a scripted life of the application.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ops import testing

from charm import ValkeyLeaderCharm

from ..fake_kubernetes import FakeKubernetes
from .conftest import (
    APP,
    PEERS,
    FakeLive,
    SideEffects,
    leader_state,
    make_container,
    make_context,
    make_filesystem,
    state_for_unit,
)

Ctx = testing.Context[ValkeyLeaderCharm]

# The Pebble calls that change what clients see, and the writes peers see.
CHANGES = ('push', 'restart', 'start', 'replan', 'add_layer', 'save', 'set_content', 'add_secret')


def changes(side_effects: SideEffects) -> list[str]:
    """What changes the world: pushes, (re)starts, layers, secret and peer-data writes."""
    return [call for call in side_effects.calls if call in CHANGES]


def peers_changed(ctx: Ctx, state: testing.State, leader: int):
    """What a write of ``leader`` to the peer databag fires on the unit of ``state``."""
    return ctx.on.relation_changed(state.get_relations(PEERS)[0], remote_unit=leader)


def deploy(tmp_path: Path) -> tuple[dict[int, Ctx], dict[int, testing.State]]:
    """Three units, unit 0 leading, each past its first reconcile: contexts and states."""
    contexts = {unit: make_context(tmp_path, unit) for unit in (0, 1, 2)}
    ctx = contexts[0]
    states = {0: ctx.run(ctx.on.leader_elected(), leader_state(make_filesystem(tmp_path, 0)))}
    for unit in (1, 2):
        ctx = contexts[unit]
        follower = state_for_unit(
            states[0],
            unit=unit,
            leader=False,
            container=make_container(make_filesystem(tmp_path, unit)),
        )
        states[unit] = ctx.run(ctx.on.config_changed(), follower)
    return contexts, states


def demote(leader: testing.State) -> testing.State:
    """The same unit, once Juju has made another unit the leader (which has not written yet)."""
    return dataclasses.replace(leader, leader=False)


def test_a_follower_is_left_alone_by_events_that_change_nothing(
    tmp_path: Path, side_effects: SideEffects, kubernetes: FakeKubernetes
) -> None:
    contexts, states = deploy(tmp_path)
    ctx, state = contexts[1], states[1]
    side_effects.calls.clear()
    kubernetes.requests.clear()
    config_file = make_filesystem(tmp_path, 1).config_file
    before = config_file.read_text()

    for _ in range(2):
        state = ctx.run(ctx.on.config_changed(), state)
        state = ctx.run(ctx.on.update_status(), state)
        state = ctx.run(peers_changed(ctx, state, leader=0), state)

    assert changes(side_effects) == []
    assert kubernetes.requests == []
    assert config_file.read_text() == before


def test_a_leader_elected_again_changes_nothing(
    tmp_path: Path, side_effects: SideEffects, kubernetes: FakeKubernetes
) -> None:
    """Juju may elect the same unit again: it already leads, serves and is published.

    The one thing it does again is the one thing outside Juju: it re-applies the
    <app>-primary Service (a lookup and an apply), because a predecessor that lost
    its lease mid-hook may have left it selecting another pod.
    """
    contexts, states = deploy(tmp_path)
    ctx, state = contexts[0], states[0]
    side_effects.calls.clear()
    kubernetes.requests.clear()

    for _ in range(2):
        state = ctx.run(ctx.on.leader_elected(), state)

    assert changes(side_effects) == []
    assert [r.method for r in kubernetes.requests] == ['GET', 'PATCH'] * 2


def test_a_former_leader_waiting_for_the_new_one_changes_nothing(
    tmp_path: Path, side_effects: SideEffects, kubernetes: FakeKubernetes
) -> None:
    contexts, states = deploy(tmp_path)
    ctx, state = contexts[0], states[0]
    side_effects.calls.clear()
    kubernetes.requests.clear()
    demoted = demote(state)

    for event in (ctx.on.config_changed(), ctx.on.update_status()):
        demoted = ctx.run(event, demoted)

    assert changes(side_effects) == []
    assert kubernetes.requests == []


def test_a_leadership_change_restarts_no_unit_and_applies_each_role_live_once(
    tmp_path: Path, side_effects: SideEffects, live_server: FakeLive
) -> None:
    contexts, states = deploy(tmp_path)
    restarts = {0: 0, 1: 0, 2: 0}
    applied: dict[int, list[str | None]] = {0: [], 1: [], 2: []}

    def count_restarts(unit: int) -> None:
        restarts[unit] += sum(side_effects.count(c) for c in ('restart', 'replan', 'start'))
        applied[unit] += [settings.primary_address for settings, _ in live_server.calls]
        side_effects.calls.clear()
        live_server.calls.clear()

    side_effects.calls.clear()
    # Juju moves leadership to unit 1. Unit 0 may learn it has lost it first.
    demoted = demote(states[0])
    contexts[0].run(contexts[0].on.update_status(), demoted)
    count_restarts(0)
    elected = state_for_unit(
        states[0], unit=1, leader=True, container=states[1].get_container('valkey')
    )
    new_leader = contexts[1].run(contexts[1].on.leader_elected(), elected)
    contexts[1].run(contexts[1].on.update_status(), new_leader)
    count_restarts(1)
    # The new leader's write to the peer databag wakes up the other two.
    for unit in (0, 2):
        ctx = contexts[unit]
        follower = state_for_unit(
            new_leader, unit=unit, leader=False, container=states[unit].get_container('valkey')
        )
        follower = ctx.run(peers_changed(ctx, follower, leader=1), follower)
        ctx.run(ctx.on.update_status(), follower)
        count_restarts(unit)

    assert restarts == {0: 0, 1: 0, 2: 0}
    # Unit 0 keeps its file until unit 1 publishes (no live call then), then
    # each unit's server gets its new role once, live.
    new_primary = f'{APP}-1.{APP}-endpoints.'
    # The leader checks its server on every hook (once its role is in place, a read).
    assert applied[1] == [None, None]
    for unit in (0, 2):
        (primary,) = applied[unit]
        assert primary is not None
        assert primary.startswith(new_primary)


def test_rotate_password_writes_once_and_restarts_no_unit(
    tmp_path: Path, side_effects: SideEffects, live_server: FakeLive
) -> None:
    contexts, states = deploy(tmp_path)
    ctx = contexts[0]
    side_effects.calls.clear()

    rotated = ctx.run(ctx.on.action('rotate-password'), states[0])

    assert side_effects.count('set_content') == 1
    assert side_effects.count('save') == 1
    assert side_effects.count('restart') == 0
    # The new password, and the one the server still has from the old file.
    assert [n for _, n in live_server.calls] == [2]
    for unit in (1, 2):
        follower_ctx = contexts[unit]
        follower = state_for_unit(
            rotated, unit=unit, leader=False, container=states[unit].get_container('valkey')
        )
        side_effects.calls.clear()
        follower = follower_ctx.run(peers_changed(follower_ctx, follower, leader=0), follower)
        follower_ctx.run(follower_ctx.on.update_status(), follower)
        assert side_effects.count('restart') == 0
        assert side_effects.count('push') == 1
        assert side_effects.count('save') == side_effects.count('set_content') == 0
