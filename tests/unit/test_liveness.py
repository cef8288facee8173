# Copyright 2026 The valkey-leader-k8s authors
# See LICENSE file for licensing details.

"""Leadership is not liveness: the leader's server goes away while its unit keeps the lease.

What the charm does about it, hook by hook, with the servers faked
(``conftest.FakeChoice``): the same paths run on real servers in
tests/simulation/test_liveness.py.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import ops
from ops import testing

from workload import primary_choice

from .. import fake_kubernetes
from .conftest import (
    FakeChoice,
    Lease,
    UnitFilesystem,
    leader_state,
    make_container,
    make_context,
    make_filesystem,
    peer_app_data,
    state_for_unit,
    unit_name,
)
from .test_charm import Ctx, deploy_leader

ACTING_AT = 'valkey-leader-k8s-1.valkey-leader-k8s-endpoints'
HANDED_OVER = primary_choice.Chosen(unit_name(1), '', (f'handed over to {unit_name(1)}',))


def crashed(state: testing.State) -> testing.State:
    """The state after Valkey exited: Pebble left it down (``on-failure: ignore``)."""
    container = state.get_container('valkey')
    statuses = {**container.service_statuses, 'valkey': ops.pebble.ServiceStatus.ERROR}
    down = dataclasses.replace(container, service_statuses=statuses)
    return dataclasses.replace(state, containers={down})


def check_failed(ctx: Ctx, state: testing.State) -> testing.State:
    container = state.get_container('valkey')
    (check,) = [c for c in container.check_infos if c.name == 'valkey-ready']
    return ctx.run(ctx.on.pebble_check_failed(container, check), state)


def record(state: testing.State) -> dict[str, object]:
    return {key: json.loads(value) for key, value in peer_app_data(state).items()}


def service(state: testing.State) -> ops.pebble.ServiceStatus:
    return state.get_container('valkey').service_statuses['valkey']


# ------------------------------------------------------------------ stop


def test_the_leaders_stop_hands_the_role_over_and_publishes_it(
    ctx: Ctx,
    fs: UnitFilesystem,
    choice: FakeChoice,
    kubernetes: fake_kubernetes.FakeKubernetes,
) -> None:
    out = deploy_leader(ctx, fs)
    choice.successor = HANDED_OVER

    stopped = ctx.run(ctx.on.stop(), out)

    assert len(choice.step_downs) == 1
    published = record(stopped)
    assert published['primary-unit'] == unit_name(1)
    assert published['primary-reason'] == f"{unit_name(0)}'s pod is stopping"
    assert str(published['primary-address']).startswith(ACTING_AT)
    assert kubernetes.selected_pod() == 'valkey-leader-k8s-1'
    assert f'replicaof {ACTING_AT}' in fs.read_config()
    assert stopped.unit_status == ops.WaitingStatus(
        f"not the primary yet: {unit_name(0)}'s pod is stopping; {unit_name(1)} acts for it"
    )


def test_a_stop_with_no_replica_in_sync_changes_nothing(
    ctx: Ctx,
    fs: UnitFilesystem,
    choice: FakeChoice,
    kubernetes: fake_kubernetes.FakeKubernetes,
) -> None:
    out = deploy_leader(ctx, fs)
    before = peer_app_data(out)

    stopped = ctx.run(ctx.on.stop(), out)

    assert len(choice.step_downs) == 1
    assert peer_app_data(stopped) == before
    assert kubernetes.selected_pod() == 'valkey-leader-k8s-0'
    assert 'replicaof' not in fs.read_config()


def test_an_acting_primarys_stop_hands_nothing_over(tmp_path: Path, choice: FakeChoice) -> None:
    # Only the leader publishes; it hands over from an acting primary on its own next hook.
    choice.chosen = primary_choice.Chosen(unit_name(1), 'the leader is behind')
    leader = deploy_leader(make_context(tmp_path, 0), make_filesystem(tmp_path, 0))
    assert record(leader)['primary-unit'] == unit_name(1)
    follower = state_for_unit(
        leader, unit=1, leader=False, container=make_container(make_filesystem(tmp_path, 1))
    )
    ctx = make_context(tmp_path, 1)

    ctx.run(ctx.on.stop(), follower)

    assert choice.step_downs == []


def test_a_lease_that_runs_out_during_the_stop_handover_publishes_nothing(
    ctx: Ctx,
    fs: UnitFilesystem,
    choice: FakeChoice,
    lease: Lease,
    kubernetes: fake_kubernetes.FakeKubernetes,
) -> None:
    out = deploy_leader(ctx, fs)
    before = peer_app_data(out)
    choice.successor = HANDED_OVER
    choice.during_step_down = lease.run_out

    stopped = ctx.run(ctx.on.stop(), out)

    # The new leader finds the server that took over by asking the servers.
    assert peer_app_data(stopped) == before
    assert kubernetes.selected_pod() == 'valkey-leader-k8s-0'


def test_a_lease_that_runs_out_during_the_service_call_publishes_nothing(
    ctx: Ctx,
    fs: UnitFilesystem,
    choice: FakeChoice,
    lease: Lease,
    kubernetes: fake_kubernetes.FakeKubernetes,
) -> None:
    out = deploy_leader(ctx, fs)
    before = peer_app_data(out)
    choice.successor = HANDED_OVER

    def slow(request: fake_kubernetes.Request) -> None:
        if request.method == 'PATCH':
            lease.run_out()

    kubernetes.on_request = slow
    stopped = ctx.run(ctx.on.stop(), out)

    assert kubernetes.selected_pod() == 'valkey-leader-k8s-1'
    assert peer_app_data(stopped) == before


def test_a_leader_leaving_by_scale_down_hands_over_and_never_takes_the_role_again(
    tmp_path: Path, choice: FakeChoice
) -> None:
    # Scale-down removes the highest-numbered unit. (Unit 2 also because ops.testing
    # cannot say that unit 0 departs: it reads departing_unit=0 as "not given".)
    ctx, fs = make_context(tmp_path, 2), make_filesystem(tmp_path, 2)
    out = ctx.run(ctx.on.leader_elected(), leader_state(fs, unit_id=2))
    choice.successor = HANDED_OVER
    peers = out.get_relations('valkey-peers')[0]

    departed = ctx.run(ctx.on.relation_departed(peers, remote_unit=0, departing_unit=2), out)
    assert len(choice.step_downs) == 1
    assert record(departed)['primary-reason'] == f"{unit_name(2)}'s unit is leaving"
    settled = len(choice.calls)
    ctx.run(ctx.on.update_status(), departed)

    assert len(choice.calls) == settled, 'a leaving unit chooses no primary'
    assert f'replicaof {ACTING_AT}' in fs.read_config()


def test_another_unit_leaving_runs_the_reconcile(
    ctx: Ctx, fs: UnitFilesystem, choice: FakeChoice
) -> None:
    out = deploy_leader(ctx, fs)
    peers = out.get_relations('valkey-peers')[0]
    settled = len(choice.calls)

    ctx.run(ctx.on.relation_departed(peers, remote_unit=2, departing_unit=2), out)

    assert choice.step_downs == []
    assert len(choice.calls) == settled + 1


# ---------------------------------------------------------------- a crash


def test_a_crashed_leader_server_comes_back_as_a_replica_of_the_server_with_the_writes(
    ctx: Ctx,
    fs: UnitFilesystem,
    choice: FakeChoice,
    kubernetes: fake_kubernetes.FakeKubernetes,
) -> None:
    out = deploy_leader(ctx, fs)
    why = f"the leader's server does not answer; {unit_name(1)} has the latest writes"
    choice.chosen = primary_choice.Chosen(unit_name(1), why, (f'promoted {unit_name(1)}',))

    after = check_failed(ctx, crashed(out))

    assert f'replicaof {ACTING_AT}' in fs.read_config()
    assert service(after) == ops.pebble.ServiceStatus.ACTIVE, 'the charm started it'
    assert record(after)['primary-unit'] == unit_name(1)
    assert kubernetes.selected_pod() == 'valkey-leader-k8s-1'
    assert choice.sync_waits == 1, 'it waited for its server to catch up'


def test_the_leader_takes_the_role_back_once_its_restarted_server_caught_up(
    ctx: Ctx,
    fs: UnitFilesystem,
    choice: FakeChoice,
    kubernetes: fake_kubernetes.FakeKubernetes,
) -> None:
    out = deploy_leader(ctx, fs)
    choice.chosen = primary_choice.Chosen(unit_name(1), 'the leader is still syncing')
    choice.then = primary_choice.Chosen(unit_name(0), '', (f'{unit_name(1)} handed over',))
    choice.in_sync = True
    choice.calls.clear()

    after = check_failed(ctx, crashed(out))

    assert len(choice.calls) == 2
    assert 'replicaof' not in fs.read_config()
    assert record(after)['primary-unit'] == ''
    assert kubernetes.selected_pod() == 'valkey-leader-k8s-0'
    assert after.unit_status == ops.ActiveStatus('primary')


def test_a_running_server_is_not_waited_for(
    ctx: Ctx, fs: UnitFilesystem, choice: FakeChoice
) -> None:
    out = deploy_leader(ctx, fs)
    choice.chosen = primary_choice.Chosen(unit_name(1), 'the leader is behind')

    ctx.run(ctx.on.update_status(), out)

    assert choice.sync_waits == 0


def test_a_crashed_acting_primary_comes_back_as_a_replica_of_the_leader(
    tmp_path: Path, choice: FakeChoice
) -> None:
    root = tmp_path
    choice.chosen = primary_choice.Chosen(unit_name(1), 'the leader is behind')
    leader = deploy_leader(make_context(root, 0), make_filesystem(root, 0))
    assert record(leader)['primary-unit'] == unit_name(1)
    fs = make_filesystem(root, 1)
    ctx = make_context(root, 1)
    follower = state_for_unit(leader, unit=1, leader=False, container=make_container(fs))
    started = ctx.run(ctx.on.pebble_ready(follower.get_container('valkey')), follower)
    # The leader promoted its server (live, in its own hook): its file follows.
    acting = ctx.run(ctx.on.update_status(), started)
    assert 'replicaof' not in fs.read_config(), 'it acts for the leader'

    after = check_failed(ctx, crashed(acting))

    # Only the leader may make it the primary again: it may have lost writes.
    assert 'replicaof valkey-leader-k8s-0.' in fs.read_config()
    assert service(after) == ops.pebble.ServiceStatus.ACTIVE
