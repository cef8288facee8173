# Copyright 2026 The valkey-leader-k8s authors
# See LICENSE file for licensing details.

"""Each rule of the how-to "Manage leadership changes", as a test.

https://documentation.ubuntu.com/ops/latest/howto/manage-leadership-changes/
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ops
import pytest
from ops import testing

from charm import ValkeyLeaderCharm
from workload import container as valkey_container

from ..fake_kubernetes import FakeKubernetes
from .conftest import (
    APP,
    PEERS,
    Lease,
    UnitFilesystem,
    leader_state,
    make_container,
    make_context,
    make_filesystem,
    make_peer_relation,
    password_secret,
    peer_app_data,
    state_for_unit,
    unit_name,
)


def test_leader_elected_is_observed_and_leader_settings_changed_is_not(
    ctx: testing.Context[ValkeyLeaderCharm], fs: UnitFilesystem, monkeypatch: pytest.MonkeyPatch
) -> None:
    observed: list[str] = []
    original = ops.Framework.observe

    def recording_observe(framework: ops.Framework, event: ops.BoundEvent, observer: Any) -> None:
        observed.append(event.event_kind)
        original(framework, event, observer)

    monkeypatch.setattr(ops.Framework, 'observe', recording_observe)
    state = testing.State(
        leader=True, relations={make_peer_relation()}, containers={make_container(fs)}
    )
    out = ctx.run(ctx.on.leader_elected(), state)
    assert 'leader_elected' in observed
    assert 'leader_settings_changed' not in observed
    # And leader-elected does what the how-to says: the new leader announces itself.
    assert peer_app_data(out)['leader-unit'] == f'"{unit_name(0)}"'


def test_the_leader_tells_peers_through_the_peer_app_databag(
    ctx: testing.Context[ValkeyLeaderCharm], fs: UnitFilesystem
) -> None:
    out = ctx.run(ctx.on.leader_elected(), leader_state(fs))
    data = peer_app_data(out)
    assert data['leader-unit'] == f'"{unit_name(0)}"'
    assert data['leader-address'] == (
        f'"{APP}-0.{APP}-endpoints.{out.model.name}.svc.cluster.local"'
    )
    assert data['password-secret-id'] == f'"{password_secret(out).id}"'


def test_peers_react_to_relation_changed_by_following_the_leader(tmp_path: Path) -> None:
    leader_ctx = make_context(tmp_path, unit_id=0)
    leader_out = leader_ctx.run(
        leader_ctx.on.leader_elected(), leader_state(make_filesystem(tmp_path))
    )
    follower_ctx = make_context(tmp_path, unit_id=1)
    fs = make_filesystem(tmp_path, unit_id=1)
    follower_in = state_for_unit(leader_out, unit=1, leader=False, container=make_container(fs))
    relation = follower_in.get_relations(PEERS)[0]

    out = follower_ctx.run(follower_ctx.on.relation_changed(relation, remote_unit=0), follower_in)

    assert f'replicaof {APP}-0.{APP}-endpoints.' in fs.read_config()
    assert out.unit_status == ops.ActiveStatus(f'replica of {unit_name(0)}')


@pytest.mark.parametrize('leader', [True, False])
def test_status_leader(leader: bool, tmp_path: Path) -> None:
    """The how-to's Scenario example, for this charm: State(leader=...) decides the role."""
    fs = make_filesystem(tmp_path)
    if leader:
        state = testing.State(
            leader=True, relations={make_peer_relation()}, containers={make_container(fs)}
        )
    else:
        leader_ctx = make_context(tmp_path / 'leader', unit_id=1)
        leader_out = leader_ctx.run(
            leader_ctx.on.leader_elected(),
            leader_state(make_filesystem(tmp_path / 'leader', unit_id=1), unit_id=1),
        )
        state = state_for_unit(leader_out, unit=0, leader=False, container=make_container(fs))
    ctx = make_context(tmp_path)

    out = ctx.run(ctx.on.config_changed(), state)

    expected = 'primary' if leader else f'replica of {unit_name(1)}'
    assert out.unit_status == ops.ActiveStatus(expected)


def test_only_the_leader_creates_the_app_secret(tmp_path: Path) -> None:
    ctx = make_context(tmp_path)
    fs = make_filesystem(tmp_path)
    follower = testing.State(
        leader=False, relations={make_peer_relation()}, containers={make_container(fs)}
    )
    out = ctx.run(ctx.on.leader_elected(), follower)
    assert out.secrets == frozenset()
    assert peer_app_data(out) == {}
    assert out.unit_status == ops.WaitingStatus('waiting for the leader to publish its address')
    assert not fs.config_file.exists(), 'a follower must not start Valkey pointing at nowhere'


@pytest.mark.parametrize('hook', ['leader-elected', 'rotate-password'])
def test_leadership_is_checked_again_right_before_each_write(
    hook: str,
    ctx: testing.Context[ValkeyLeaderCharm],
    fs: UnitFilesystem,
    kubernetes: FakeKubernetes,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Juju guarantees leadership for 30 s only: the leader checks right before each write.

    Every leader-only write of the hook is recorded in order with every
    ``is_leader()`` call: each write must come right after a check, with no
    other write (the Kubernetes call, a Pebble push: slow work) in between.
    """
    state = leader_state(fs)
    if hook == 'rotate-password':
        state = ctx.run(ctx.on.leader_elected(), state)
    trail: list[str] = []

    def record(owner: Any, name: str, step: str) -> None:
        original = getattr(owner, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            trail.append(step)
            return original(*args, **kwargs)

        monkeypatch.setattr(owner, name, wrapper)

    record(ops.Unit, 'is_leader', 'check')
    record(ops.Application, 'add_secret', 'create the secret')
    record(ops.Secret, 'set_content', 'write the secret')
    record(ops.Container, 'push', "take the primary's role")  # the leader's file
    record(ops.Relation, 'save', 'publish the leader record')
    kubernetes.on_request = lambda r: (
        trail.append('apply the Service') if r.method == 'PATCH' else None
    )

    if hook == 'leader-elected':
        ctx.run(ctx.on.leader_elected(), state)
    else:
        ctx.run(ctx.on.action('rotate-password'), state)

    writes = [i for i, step in enumerate(trail) if step != 'check']
    expected = {
        'leader-elected': {
            'create the secret',
            "take the primary's role",
            'apply the Service',
            'publish the leader record',
        },
        'rotate-password': {
            'write the secret',
            "take the primary's role",  # the new password, in the leader's file
            'publish the leader record',
        },
    }
    assert {trail[i] for i in writes} == expected[hook]
    assert all(trail[i - 1] == 'check' for i in writes), trail


def test_a_lease_that_runs_out_after_the_first_check_stops_every_write(
    ctx: testing.Context[ValkeyLeaderCharm], fs: UnitFilesystem, lease: Lease
) -> None:
    """Leadership is lost after the first check of the hook: the secret must not be
    created and nothing written to the peer databag.
    """
    lease.run_out_after(1)
    out = ctx.run(ctx.on.leader_elected(), leader_state(fs))
    assert out.secrets == frozenset()
    assert peer_app_data(out) == {}
    assert out.unit_status == ops.WaitingStatus('waiting for the leader to publish its address')
    assert not fs.config_file.exists()


def every_event(
    ctx: testing.Context[ValkeyLeaderCharm],
    peers: testing.PeerRelation,
    client: testing.Relation,
    secret: testing.Secret,
    users_secret: testing.Secret,
    container: testing.Container,
    check: testing.CheckInfo,
    storage: testing.Storage,
) -> dict[str, Any]:
    """Every event Juju can send this charm (metadata.yaml), whether the charm observes it."""
    events: dict[str, Any] = {
        'install': ctx.on.install(),
        'start': ctx.on.start(),
        'stop': ctx.on.stop(),
        'remove': ctx.on.remove(),
        'update-status': ctx.on.update_status(),
        'config-changed': ctx.on.config_changed(),
        'upgrade-charm': ctx.on.upgrade_charm(),
        'leader-elected': ctx.on.leader_elected(),
        'valkey-pebble-ready': ctx.on.pebble_ready(container),
        'valkey-pebble-check-failed': ctx.on.pebble_check_failed(container, check),
        'valkey-pebble-check-recovered': ctx.on.pebble_check_recovered(container, check),
        'data-storage-attached': ctx.on.storage_attached(storage),
        'data-storage-detaching': ctx.on.storage_detaching(storage),
        'secret-changed': ctx.on.secret_changed(users_secret),
        'secret-remove': ctx.on.secret_remove(secret, revision=1),
        'secret-expired': ctx.on.secret_expired(secret, revision=1),
        'secret-rotate': ctx.on.secret_rotate(secret),
    }
    for relation in (peers, client):
        name = relation.endpoint
        events[f'{name}-relation-created'] = ctx.on.relation_created(relation)
        events[f'{name}-relation-joined'] = ctx.on.relation_joined(relation, remote_unit=1)
        events[f'{name}-relation-changed'] = ctx.on.relation_changed(relation, remote_unit=1)
        events[f'{name}-relation-departed'] = ctx.on.relation_departed(
            relation, remote_unit=1, departing_unit=1
        )
        events[f'{name}-relation-broken'] = ctx.on.relation_broken(relation)
    return events


def test_nothing_is_deferred(tmp_path: Path) -> None:
    """A deferred event re-runs later, when this unit may no longer lead.

    Every event the charm can receive, on the leader and on a follower, in
    states where the work cannot be finished yet (Pebble not up, the peer
    relation or the leader's record missing): the next event retries, nothing waits.
    """
    ctx = testing.Context(
        ValkeyLeaderCharm,
        charm_root=make_context(tmp_path).charm_root,
        capture_deferred_events=True,
    )
    # As the charm's Pebble layer left it, with Pebble gone since.
    check = testing.CheckInfo('valkey-ready', level=ops.pebble.CheckLevel.READY)
    no_pebble = make_container(
        make_filesystem(tmp_path),
        can_connect=False,
        layers={'valkey': valkey_container.pebble_layer()},
        check_infos={check},
    )
    # The app secret after a rotation, once revision 1 is tracked by nobody.
    setup = make_context(tmp_path / 'setup')
    deployed = setup.run(setup.on.leader_elected(), leader_state(make_filesystem(tmp_path)))
    rotated = setup.run(setup.on.action('rotate-password'), deployed)
    secret = password_secret(setup.run(setup.on.update_status(), rotated))
    users_secret = testing.Secret({'password': 'y' * 48})  # the admin-password option's
    client = testing.Relation('valkey-client', remote_app_name='client')
    peers = make_peer_relation()
    storage = testing.Storage('data')
    events = every_event(ctx, peers, client, secret, users_secret, no_pebble, check, storage)
    assert len(events) == 27
    for leader in (True, False):
        for with_peers in (True, False):
            relations = {peers, client} if with_peers else {client}
            for name, event in events.items():
                if not with_peers and name.startswith(PEERS):
                    continue
                state = testing.State(
                    leader=leader,
                    config={'admin-password': users_secret.id} if name == 'secret-changed' else {},
                    containers={no_pebble},
                    relations=relations,
                    secrets={secret, users_secret},
                    storages={storage},
                )
                out = ctx.run(event, state)
                assert out.deferred == [], f'{name} deferred (leader: {leader})'


def test_a_new_leader_keeps_the_password(tmp_path: Path) -> None:
    first_ctx = make_context(tmp_path, unit_id=0)
    first = first_ctx.run(first_ctx.on.leader_elected(), leader_state(make_filesystem(tmp_path)))
    original = password_secret(first)

    # Juju elects unit 1: it receives leader-elected with everything unit 0 wrote.
    second_ctx = make_context(tmp_path, unit_id=1)
    fs = make_filesystem(tmp_path, unit_id=1)
    second_in = state_for_unit(first, unit=1, leader=True, container=make_container(fs))
    second = second_ctx.run(second_ctx.on.leader_elected(), second_in)

    assert second.secrets == first.secrets, 'no new secret, no new revision'
    assert password_secret(second).latest_content == original.latest_content
    password = original.latest_content['password']
    assert f'requirepass "{password}"' in fs.read_config()
    data = peer_app_data(second)
    assert data['leader-unit'] == f'"{unit_name(1)}"'
    assert data['password-secret-id'] == f'"{original.id}"'
    assert 'replicaof' not in fs.read_config()
    assert second.unit_status == ops.ActiveStatus('primary')


def test_non_leaders_read_the_secret_by_the_published_id(tmp_path: Path) -> None:
    leader_ctx = make_context(tmp_path, unit_id=0)
    leader_out = leader_ctx.run(
        leader_ctx.on.leader_elected(), leader_state(make_filesystem(tmp_path))
    )
    secret = password_secret(leader_out)
    # The follower has no label for the secret: only the id in the peer databag finds it.
    unlabelled = testing.Secret(
        tracked_content=secret.tracked_content, id=secret.id, owner='app', label=None
    )
    fs = make_filesystem(tmp_path, unit_id=1)
    follower_in = state_for_unit(leader_out, unit=1, leader=False, container=make_container(fs))
    follower_in = testing.State(
        leader=False,
        relations=follower_in.relations,
        secrets={unlabelled},
        containers=follower_in.containers,
    )
    follower_ctx = make_context(tmp_path, unit_id=1)

    out = follower_ctx.run(follower_ctx.on.config_changed(), follower_in)

    assert out.secrets == frozenset({unlabelled}), 'the follower created no secret'
    assert f'masterauth "{secret.latest_content["password"]}"' in fs.read_config()


def test_a_new_leader_acts_on_relation_departed_before_leader_elected(tmp_path: Path) -> None:
    """Juju may tell the new leader that the old one departed before leader-elected."""
    first_ctx = make_context(tmp_path, 0)
    first = first_ctx.run(first_ctx.on.leader_elected(), leader_state(make_filesystem(tmp_path)))
    fs = make_filesystem(tmp_path, 1)
    second_ctx = make_context(tmp_path, 1)
    second_in = state_for_unit(first, unit=1, leader=True, container=make_container(fs))
    relation = second_in.get_relations(PEERS)[0]

    out = second_ctx.run(
        second_ctx.on.relation_departed(relation, remote_unit=0, departing_unit=0), second_in
    )

    assert peer_app_data(out)['leader-unit'] == f'"{unit_name(1)}"'
    assert 'replicaof' not in fs.read_config()
    assert out.unit_status == ops.ActiveStatus('primary')
