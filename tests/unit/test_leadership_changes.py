# Copyright 2026 The valkey-leader-k8s authors
# See LICENSE file for licensing details.

"""What a leadership change does to a unit, whatever hook it runs next.

* A status never claims a role the unit's config file does not give it, on any
  event the charm can receive, observed or not.
* A lease that runs out in the middle of a hook leaves nothing outside Juju
  drifting: the next leader re-applies the ``<app>-primary`` Service.
* Status evaluation makes no Pebble call: it reports what the hook found.
* A hook that Juju retries after the lease ran out does the follower's work and
  nothing else.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ops
import pytest
from ops import testing

from charm import ValkeyLeaderCharm
from workload import config as valkey_config
from workload import live, primary_choice

from ..fake_kubernetes import FakeKubernetes
from .conftest import (
    APP,
    PEERS,
    FakeChoice,
    FakeLive,
    Lease,
    SideEffects,
    UnitFilesystem,
    leader_state,
    make_container,
    make_context,
    make_filesystem,
    peer_app_data,
    state_for_unit,
    unit_name,
)

Ctx = testing.Context[ValkeyLeaderCharm]
Event = Callable[[Ctx, testing.State], Any]


def role_in_file(fs: UnitFilesystem) -> str | None:
    """What the file on disk makes the unit, in the words of its status."""
    if not fs.config_file.exists():
        return None
    match = re.search(rf'^replicaof {APP}-(\d+)\.', fs.read_config(), re.MULTILINE)
    return f'replica of {unit_name(int(match[1]))}' if match else 'primary'


def peers(state: testing.State) -> testing.PeerRelation:
    relation = state.get_relations(PEERS)[0]
    assert isinstance(relation, testing.PeerRelation)
    return relation


STORAGE = testing.Storage('data')
# A secret of someone else's (secret-changed) and an app secret the charm does not manage
# (secret-remove), so that Scenario allows the events on the leader too.
USERS_SECRET = testing.Secret({'password': 'not-in-use'}, owner=None)
OTHER_APP_SECRET = testing.Secret({'x': 'y'}, owner='app', label='other', id='secret:other')

# Every event a unit of this charm can receive (the action aside), as Scenario builds it.
EVERY_EVENT: dict[str, Event] = {
    'install': lambda ctx, _: ctx.on.install(),
    'start': lambda ctx, _: ctx.on.start(),
    'stop': lambda ctx, _: ctx.on.stop(),
    'remove': lambda ctx, _: ctx.on.remove(),
    'upgrade-charm': lambda ctx, _: ctx.on.upgrade_charm(),
    'config-changed': lambda ctx, _: ctx.on.config_changed(),
    'update-status': lambda ctx, _: ctx.on.update_status(),
    'leader-elected': lambda ctx, _: ctx.on.leader_elected(),
    'valkey-pebble-ready': lambda ctx, s: ctx.on.pebble_ready(s.get_container('valkey')),
    'valkey-pebble-check-failed': lambda ctx, s: ctx.on.pebble_check_failed(
        s.get_container('valkey'), testing.CheckInfo('valkey-ready')
    ),
    'valkey-pebble-check-recovered': lambda ctx, s: ctx.on.pebble_check_recovered(
        s.get_container('valkey'), testing.CheckInfo('valkey-ready')
    ),
    'valkey-peers-relation-created': lambda ctx, s: ctx.on.relation_created(peers(s)),
    'valkey-peers-relation-joined': lambda ctx, s: ctx.on.relation_joined(peers(s), remote_unit=2),
    'valkey-peers-relation-changed': lambda ctx, s: ctx.on.relation_changed(
        peers(s), remote_unit=2
    ),
    'valkey-peers-relation-departed': lambda ctx, s: ctx.on.relation_departed(
        peers(s), remote_unit=2, departing_unit=2
    ),
    'secret-changed': lambda ctx, _: ctx.on.secret_changed(USERS_SECRET),
    'secret-remove': lambda ctx, _: ctx.on.secret_remove(OTHER_APP_SECRET, revision=1),
    'data-storage-attached': lambda ctx, s: ctx.on.storage_attached(STORAGE),
    'data-storage-detaching': lambda ctx, s: ctx.on.storage_detaching(STORAGE),
}
# The events the charm reconciles on: after them the unit IS in its new role.
RECONCILING = {
    'install',
    'upgrade-charm',
    'config-changed',
    'update-status',
    'leader-elected',
    'valkey-pebble-ready',
    'valkey-peers-relation-created',
    'valkey-peers-relation-changed',
    'valkey-peers-relation-departed',
    'secret-changed',
}


@pytest.fixture
def unit_1_follows_unit_0(tmp_path: Path) -> tuple[testing.State, testing.State, UnitFilesystem]:
    """Unit 0 leads and published; unit 1's file replicates from it.

    Returns unit 0's output state, unit 1's output state, and unit 1's files.
    """
    leader_ctx = make_context(tmp_path, 0)
    leader = leader_ctx.run(
        leader_ctx.on.leader_elected(), leader_state(make_filesystem(tmp_path))
    )
    fs = make_filesystem(tmp_path, 1)
    follower_ctx = make_context(tmp_path, 1)
    follower_in = state_for_unit(leader, unit=1, leader=False, container=make_container(fs))
    follower = follower_ctx.run(
        follower_ctx.on.relation_changed(peers(follower_in), remote_unit=0), follower_in
    )
    assert role_in_file(fs) == f'replica of {unit_name(0)}'
    return leader, follower, fs


@pytest.fixture
def unit_1_took_over(
    tmp_path: Path, unit_1_follows_unit_0: tuple[testing.State, testing.State, UnitFilesystem]
) -> tuple[testing.State, testing.State]:
    """Unit 1 was elected and published; unit 0, whose file still says primary, is next.

    Returns unit 1's output state and unit 0's input state for its next hook
    (with its StoredState: the pod kept running).
    """
    leader, follower, _ = unit_1_follows_unit_0
    new_leader_ctx = make_context(tmp_path, 1)
    new_leader = new_leader_ctx.run(
        new_leader_ctx.on.leader_elected(), dataclasses.replace(follower, leader=True)
    )
    assert role_in_file(make_filesystem(tmp_path, 0)) == 'primary'
    demoted = dataclasses.replace(
        state_for_unit(new_leader, unit=0, leader=False, container=leader.get_container('valkey')),
        stored_states=leader.stored_states,
    )
    return new_leader, demoted


@pytest.mark.parametrize('event', sorted(EVERY_EVENT))
def test_a_new_leader_claims_only_the_role_its_file_gives_it(
    tmp_path: Path,
    unit_1_follows_unit_0: tuple[testing.State, testing.State, UnitFilesystem],
    event: str,
) -> None:
    _, follower, fs = unit_1_follows_unit_0
    ctx = make_context(tmp_path, 1)
    # Juju makes unit 1 the leader; the first hook it runs is `event`.
    elected = dataclasses.replace(
        follower,
        leader=True,
        storages={STORAGE},
        secrets={*follower.secrets, USERS_SECRET, OTHER_APP_SECRET},
    )

    out = ctx.run(EVERY_EVENT[event](ctx, elected), elected)

    if isinstance(out.unit_status, ops.ActiveStatus):
        assert out.unit_status.message == role_in_file(fs)
    if event in RECONCILING:
        assert role_in_file(fs) == 'primary'
        assert out.unit_status == ops.ActiveStatus('primary')
        assert out.app_status == ops.ActiveStatus(f'primary is {unit_name(1)}')
    else:
        assert role_in_file(fs) == f'replica of {unit_name(0)}'
        assert out.unit_status == ops.WaitingStatus(
            f'still replica of {unit_name(0)}; about to become primary'
        )


@pytest.mark.parametrize('event', sorted(EVERY_EVENT))
def test_a_demoted_leader_claims_only_the_role_its_file_gives_it(
    tmp_path: Path, unit_1_took_over: tuple[testing.State, testing.State], event: str
) -> None:
    _, before = unit_1_took_over
    fs = make_filesystem(tmp_path, 0)
    ctx = make_context(tmp_path, 0)
    demoted = dataclasses.replace(
        before, storages={STORAGE}, secrets={*before.secrets, USERS_SECRET, OTHER_APP_SECRET}
    )

    out = ctx.run(EVERY_EVENT[event](ctx, demoted), demoted)

    if isinstance(out.unit_status, ops.ActiveStatus):
        assert out.unit_status.message == role_in_file(fs)
    if event in RECONCILING:
        assert out.unit_status == ops.ActiveStatus(f'replica of {unit_name(1)}')
    else:
        assert out.unit_status == ops.WaitingStatus(
            f'still primary; about to become replica of {unit_name(1)}'
        )


def test_statuses_make_no_pebble_call(
    ctx: Ctx, fs: UnitFilesystem, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Status is derived from what the hooks found: no slow I/O while ops sets it.

    ops checks leadership again when it sets the app status; a slow call in
    between could let the lease run out and make the hook fail.
    """
    state = ctx.run(ctx.on.leader_elected(), leader_state(fs))
    calls: list[str] = []
    for name in ('can_connect', 'get_service', 'get_services', 'pull', 'get_plan'):
        original = getattr(ops.Container, name)

        def spy(*args: Any, _original: Any = original, _name: str = name, **kw: Any) -> Any:
            calls.append(_name)
            return _original(*args, **kw)

        monkeypatch.setattr(ops.Container, name, spy)

    out = ctx.run(ctx.on.start(), state)  # not observed: only collect-status runs

    assert calls == []
    assert out.unit_status == ops.ActiveStatus('primary')
    assert out.app_status == ops.ActiveStatus(f'primary is {unit_name(0)}')


def test_the_next_leader_repairs_a_service_its_predecessor_left_behind(
    tmp_path: Path, kubernetes: FakeKubernetes, lease: Lease
) -> None:
    """A lease that runs out after the Service apply, as the simulation found it.

    Unit 0 leads and published. Unit 1 is elected, re-points the Service at its
    pod, then its lease runs out before it can publish. Unit 0 is elected again:
    the databag still names unit 0, but the Service selects pod 1.
    """
    ctx0, ctx1 = make_context(tmp_path, 0), make_context(tmp_path, 1)
    first = ctx0.run(ctx0.on.leader_elected(), leader_state(make_filesystem(tmp_path)))
    # The apply (PATCH) takes effect; the lease runs out while it is answered.
    kubernetes.on_request = lambda request: lease.run_out() if request.method == 'PATCH' else None
    fs1 = make_filesystem(tmp_path, 1)
    second = ctx1.run(
        ctx1.on.leader_elected(),
        state_for_unit(first, unit=1, leader=True, container=make_container(fs1)),
    )
    assert peer_app_data(second) == peer_app_data(first), 'unit 1 published nothing'
    assert kubernetes.selected_pod() == f'{APP}-1'

    kubernetes.on_request = None
    lease.held = True
    ctx0.run(ctx0.on.leader_elected(), dataclasses.replace(first, leader=True))

    assert kubernetes.selected_pod() == f'{APP}-0'


def test_a_retried_hook_on_a_unit_that_no_longer_leads_does_only_a_followers_work(
    tmp_path: Path,
    unit_1_took_over: tuple[testing.State, testing.State],
    side_effects: SideEffects,
    kubernetes: FakeKubernetes,
) -> None:
    """Juju commits a hook's relation data when the hook ends, and refuses a
    non-leader's application data then: the hook fails and Juju runs it again.
    By then the unit no longer leads: the retry must do what a follower does."""
    new_leader, retried = unit_1_took_over
    fs = make_filesystem(tmp_path, 0)
    side_effects.calls.clear()
    kubernetes.requests.clear()
    ctx = make_context(tmp_path, 0)

    out = ctx.run(ctx.on.leader_elected(), retried)

    assert kubernetes.requests == []
    assert {'add_secret', 'set_content', 'save'}.isdisjoint(side_effects.calls)
    assert peer_app_data(out) == peer_app_data(new_leader)
    assert role_in_file(fs) == f'replica of {unit_name(1)}'
    assert out.unit_status == ops.ActiveStatus(f'replica of {unit_name(1)}')


# -- A new leader takes the primary role: after checking leadership, before the Service.


def published_address(state: testing.State) -> str:
    return json.loads(peer_app_data(state)['leader-address'])


def _elect_unit_1(tmp_path: Path, follower: testing.State) -> testing.State:
    ctx = make_context(tmp_path, 1)
    return ctx.run(ctx.on.leader_elected(), dataclasses.replace(follower, leader=True))


def test_a_new_leader_takes_the_primary_role_before_the_service_points_at_it(
    tmp_path: Path,
    unit_1_follows_unit_0: tuple[testing.State, testing.State, UnitFilesystem],
    live_server: FakeLive,
    kubernetes: FakeKubernetes,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The live apply promotes (after a handover, if the old primary answers: see
    ``live.apply_live``); only then does ``<app>-primary`` send clients to it."""
    _, follower, fs = unit_1_follows_unit_0
    applies_at_promotion: list[int] = []
    original = live_server.apply_live

    def apply_live(settings: valkey_config.ValkeySettings, **kwargs: Any) -> live.LiveResult:
        applies_at_promotion.append(len(kubernetes.applies))
        return original(settings, **kwargs)

    monkeypatch.setattr(live, 'apply_live', apply_live)
    applied_before = len(kubernetes.applies)
    live_server.calls.clear()

    out = _elect_unit_1(tmp_path, follower)

    (promoted, _), *_ = live_server.calls
    assert promoted.primary_address is None
    assert promoted.announce_host == published_address(out)  # how the old primary lists it
    assert f'replica-announce-ip {published_address(out)}' in fs.read_config()
    assert applies_at_promotion == [applied_before]
    assert len(kubernetes.applies) == applied_before + 1
    assert kubernetes.selected_pod() == f'{APP}-1'
    assert out.unit_status == ops.ActiveStatus('primary')


def test_the_lease_running_out_before_the_promotion_leaves_the_servers_alone(
    tmp_path: Path,
    unit_1_follows_unit_0: tuple[testing.State, testing.State, UnitFilesystem],
    live_server: FakeLive,
    lease: Lease,
) -> None:
    """Taking the role changes another unit's server too: the 30 s rule applies."""
    _, follower, fs = unit_1_follows_unit_0
    before = fs.read_config()
    live_server.calls.clear()
    lease.run_out_after(1)  # the hook starts as the leader, and is not one at the promotion

    out = _elect_unit_1(tmp_path, follower)

    # No promotion: once the lease is gone the unit goes on following the
    # published leader (its server is checked, and found following it).
    ((settings, _),) = live_server.calls
    assert (settings.primary_address or '').startswith(f'{APP}-0.{APP}-endpoints.')
    assert fs.read_config() == before
    # What it is, not what happened: no stale "lost leadership" until the next event.
    assert out.unit_status == ops.ActiveStatus(f'replica of {unit_name(0)}')


def test_leader_elected_rechecks_the_running_server_even_when_the_file_is_unchanged(
    tmp_path: Path,
    unit_1_follows_unit_0: tuple[testing.State, testing.State, UnitFilesystem],
    live_server: FakeLive,
) -> None:
    """Another unit's handover, or a leader that lost its lease right after one, may
    have changed this unit's server without changing its file: not only on leader-elected."""
    leader, _, _ = unit_1_follows_unit_0
    ctx = make_context(tmp_path, 0)
    live_server.calls.clear()
    ctx.run(ctx.on.config_changed(), leader)
    ctx.run(ctx.on.leader_elected(), leader)
    assert [settings.primary_address for settings, _ in live_server.calls] == [None, None]


HELD_BACK = (
    f'{unit_name(0)} did not hand over (timed-out: this unit was 5 bytes behind after 4000 ms)'
)


def _unit_1_elected_but_unit_0_acts(
    tmp_path: Path, follower: testing.State, choice: FakeChoice
) -> testing.State:
    choice.chosen = primary_choice.Chosen(unit_name(0), HELD_BACK)
    return _elect_unit_1(tmp_path, follower)


def test_a_new_leader_that_cannot_take_over_leaves_the_primary_in_charge_and_says_so(
    tmp_path: Path,
    unit_1_follows_unit_0: tuple[testing.State, testing.State, UnitFilesystem],
    live_server: FakeLive,
    kubernetes: FakeKubernetes,
    choice: FakeChoice,
) -> None:
    _, follower, fs = unit_1_follows_unit_0
    live_server.calls.clear()
    choice.calls.clear()

    out = _unit_1_elected_but_unit_0_acts(tmp_path, follower, choice)

    (asked,) = choice.calls
    assert (asked['leader'], asked['published']) == (unit_name(1), unit_name(0))
    # Its own server stays a replica of the primary that has the writes.
    assert role_in_file(fs) == f'replica of {unit_name(0)}'
    ((settings, _),) = live_server.calls
    assert (settings.primary_address or '').startswith(f'{APP}-0.')
    # Published: the acting primary, its address and why; the Service selects it.
    data = peer_app_data(out)
    assert json.loads(data['leader-unit']) == unit_name(1)
    assert json.loads(data['primary-unit']) == unit_name(0)
    assert json.loads(data['primary-address']).startswith(f'{APP}-0.{APP}-endpoints.')
    assert json.loads(data['primary-reason']) == HELD_BACK
    assert (
        kubernetes.services[f'{APP}-primary']['spec']['selector'][
            'statefulset.kubernetes.io/pod-name'
        ]
        == f'{APP}-0'
    )
    waiting = ops.WaitingStatus(f'not the primary yet: {HELD_BACK}; {unit_name(0)} acts for it')
    assert out.unit_status == waiting
    assert out.app_status == waiting


def test_followers_follow_the_acting_primary_and_it_stays_primary(
    tmp_path: Path,
    unit_1_follows_unit_0: tuple[testing.State, testing.State, UnitFilesystem],
    unit_1_took_over: tuple[testing.State, testing.State],
    choice: FakeChoice,
) -> None:
    _, follower, _ = unit_1_follows_unit_0
    new_leader = _unit_1_elected_but_unit_0_acts(tmp_path, follower, choice)
    # Unit 2 reads the record: it replicates from the acting primary, and says why.
    fs2 = make_filesystem(tmp_path, 2)
    ctx2 = make_context(tmp_path, 2)
    unit_2 = state_for_unit(new_leader, unit=2, leader=False, container=make_container(fs2))
    out2 = ctx2.run(ctx2.on.relation_changed(peers(unit_2), remote_unit=1), unit_2)
    assert role_in_file(fs2) == f'replica of {unit_name(0)}'
    assert out2.unit_status == ops.ActiveStatus(
        f'replica of {unit_name(0)} (acting primary: {HELD_BACK})'
    )
    # Unit 0, no longer the leader, acts as primary: its file stays the primary's.
    _, old_leader = unit_1_took_over
    fs0 = make_filesystem(tmp_path, 0)
    ctx0 = make_context(tmp_path, 0)
    unit_0 = dataclasses.replace(
        state_for_unit(
            new_leader, unit=0, leader=False, container=old_leader.get_container('valkey')
        ),
        stored_states=old_leader.stored_states,
    )
    out0 = ctx0.run(ctx0.on.relation_changed(peers(unit_0), remote_unit=1), unit_0)
    assert role_in_file(fs0) == 'primary'
    assert out0.unit_status == ops.ActiveStatus(
        f'primary (acting for {unit_name(1)}: {HELD_BACK})'
    )


def test_a_follower_waits_while_the_published_primary_is_not_one(
    tmp_path: Path,
    unit_1_follows_unit_0: tuple[testing.State, testing.State, UnitFilesystem],
    live_server: FakeLive,
) -> None:
    """No loop of replicas: its server keeps its role, and the next hook checks again."""
    _, follower, _ = unit_1_follows_unit_0
    ctx = make_context(tmp_path, 1)
    live_server.calls.clear()
    live_server.result = live.LiveResult(
        'unchanged', waiting=f'{APP}-0.{APP}-endpoints is not a primary (slave)'
    )
    out = ctx.run(ctx.on.relation_changed(peers(follower), remote_unit=0), follower)
    assert len(live_server.calls) == 1, 'a new record: the server it names is checked'
    assert out.unit_status == ops.WaitingStatus(
        f'replica of {unit_name(0)}, not yet: {APP}-0.{APP}-endpoints is not a primary (slave)'
    )
    live_server.calls.clear()
    live_server.result = live.LiveResult('applied', changes=('role',))
    again = ctx.run(ctx.on.update_status(), out)
    assert len(live_server.calls) == 1, 'the problem left by the last hook is checked again'
    assert again.unit_status == ops.ActiveStatus(f'replica of {unit_name(0)}')


def test_the_log_says_what_the_leader_changed_to_choose_the_primary(
    tmp_path: Path,
    unit_1_follows_unit_0: tuple[testing.State, testing.State, UnitFilesystem],
    choice: FakeChoice,
    caplog: pytest.LogCaptureFixture,
) -> None:
    _, follower, _ = unit_1_follows_unit_0
    choice.chosen = primary_choice.Chosen(unit_name(1), '', (f'{unit_name(0)} handed over',))
    out = _elect_unit_1(tmp_path, follower)
    assert f'Primary: {unit_name(0)} handed over' in caplog.text
    assert out.unit_status == ops.ActiveStatus('primary')
    assert (
        'primary-unit' not in peer_app_data(out)
        or json.loads(peer_app_data(out)['primary-unit']) == ''
    )
