# Copyright 2026 The valkey-leader-k8s authors
# See LICENSE file for licensing details.

"""Client relations (``valkey-client``): the leader serves them, every unit renders the users.

The requirer's data is written here as the interface library's requirer
writes it (``version`` and a JSON list of ``requests``), so that these tests
need no import of the library: the charm's own code imports it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import ops
import pytest
import yaml
from ops import testing

import charm
import clients
from charm import ValkeyLeaderCharm
from workload import live

from .conftest import (
    APP,
    PEERS,
    REPO_ROOT,
    FakeLive,
    Lease,
    SideEffects,
    UnitFilesystem,
    leader_state,
    make_container,
    make_context,
    make_filesystem,
    make_peer_relation,
    peer_app_data,
    state_for_unit,
)
from .test_secrecy import everything_visible

CLIENT = 'valkey-client'
Ctx = testing.Context[ValkeyLeaderCharm]
PEER_ID = 1  # fixed, so that it never collides with the client relations' ids


def peer(unit_id: int, app_data: dict[str, str] | None = None) -> testing.PeerRelation:
    return make_peer_relation(unit_id, app_data=app_data, relation_id=PEER_ID)


def client_relation(
    relation_id: int,
    app: str = 'myapp',
    requests: Iterable[tuple[str, str]] = (('myapp:*', 'req1'),),
    **kwargs: Any,
) -> testing.Relation:
    """A v1 requirer asking for each ``(resource, request id)``."""
    data = {
        'version': 'v1',
        'requests': json.dumps(
            [{'resource': r, 'request-id': rid, 'salt': f'salt-{rid}'} for r, rid in requests]
        ),
    }
    return testing.Relation(
        CLIENT, id=relation_id, remote_app_name=app, remote_app_data=data, **kwargs
    )


def responses(state: testing.State, relation_id: int) -> list[dict[str, Any]]:
    raw = state.get_relation(relation_id).local_app_data.get('requests', '[]')
    return json.loads(raw)


def credentials(state: testing.State, relation_id: int) -> dict[str, str]:
    """The content of the secret the answer on ``relation_id`` points at."""
    (answer,) = responses(state, relation_id)
    (secret,) = [s for s in state.secrets if s.id == answer['secret-user']]
    return dict(secret.latest_content or {})


def client_secrets(state: testing.State) -> list[testing.Secret]:
    return sorted((s for s in state.secrets if clients.owns_secret(s.label)), key=lambda s: s.id)


def published_users(state: testing.State) -> list[dict[str, Any]]:
    return json.loads(peer_app_data(state).get('client-users') or '[]')


def serve_two_clients(ctx: Ctx, fs: UnitFilesystem) -> testing.State:
    """A leader that answered two clients, then ran one more (quiet) hook."""
    one, two = client_relation(10, 'alpha', [('alpha:*', 'r1')]), client_relation(11, 'beta')
    state = leader_state(fs, relations={peer(0), one, two})
    state = ctx.run(ctx.on.relation_changed(one, remote_unit=0), state)
    state = ctx.run(ctx.on.relation_changed(state.get_relation(11), remote_unit=0), state)
    return ctx.run(ctx.on.update_status(), state)


def as_unit(
    previous: testing.State, unit_id: int, fs: UnitFilesystem, *, leader: bool
) -> testing.State:
    """``state_for_unit``, with the client relations as this app's other unit sees them."""
    state = state_for_unit(previous, unit=unit_id, leader=leader, container=make_container(fs))
    others = [r for r in previous.relations if r.endpoint == CLIENT]
    # Same model (state_for_unit leaves it to Scenario's default, a new random name).
    return dataclass_replace(state, relations={*state.relations, *others}, model=previous.model)


def dataclass_replace(state: Any, **changes: Any) -> Any:
    return dataclasses.replace(state, **changes)


# -------------------------------------------------------------- the leader


def test_the_leader_answers_a_client_with_a_user_a_granted_secret_and_the_endpoints(
    ctx: Ctx, fs: UnitFilesystem
) -> None:
    relation = client_relation(10)
    state = leader_state(fs, relations={peer(0), relation})
    out = ctx.run(ctx.on.relation_changed(relation, remote_unit=0), state)

    (answer,) = responses(out, 10)
    model = out.model.name
    assert answer['request-id'] == 'req1'
    assert answer['resource'] == 'myapp:*'
    assert answer['endpoints'] == f'{APP}-primary.{model}.svc.cluster.local:6379'
    assert answer['read-only-endpoints'].split(',') == [
        f'{APP}-{n}.{APP}-endpoints.{model}.svc.cluster.local:6379' for n in (0, 1, 2)
    ]
    # TLS fields empty until TLS exists; the password is only in the secret.
    assert answer.get('secret-tls') is None
    assert answer.get('password') is None
    (secret,) = client_secrets(out)
    assert secret.owner == 'app'
    assert secret.remote_grants == {10: frozenset({'myapp'})}
    content = credentials(out, 10)
    assert content['username'] == 'relation-10-req1'
    assert len(content['password']) == 48


def test_every_unit_file_gets_the_user_with_its_password_hash_never_the_password(
    ctx: Ctx, fs: UnitFilesystem
) -> None:
    relation = client_relation(10)
    state = leader_state(fs, relations={peer(0), relation})
    out = ctx.run(ctx.on.relation_changed(relation, remote_unit=0), state)

    password = credentials(out, 10)['password']
    digest = hashlib.sha256(password.encode()).hexdigest()
    text = fs.read_config()
    assert f'user relation-10-req1 on #{digest} ~myapp:* &myapp:* -@all +@read' in text
    assert password not in text
    assert published_users(out) == [
        {
            'relation-id': 10,
            'name': 'relation-10-req1',
            'password-sha256': digest,
            'keys': 'myapp:*',
            'secret-id': secret_id(out, 10),
        }
    ]
    assert password not in json.dumps(peer_app_data(out))


def secret_id(state: testing.State, relation_id: int) -> str:
    (answer,) = responses(state, relation_id)
    return answer['secret-user']


def test_the_version_reaches_the_client_once_the_unit_has_run_valkey(
    ctx: Ctx, fs: UnitFilesystem
) -> None:
    relation = client_relation(10)
    state = leader_state(fs, relations={peer(0), relation})
    first = ctx.run(ctx.on.relation_changed(relation, remote_unit=0), state)
    second = ctx.run(ctx.on.update_status(), first)
    assert responses(second, 10)[0]['version'] == '9.1.0'
    assert credentials(second, 10) == credentials(first, 10)


def test_a_client_without_a_prefix_gets_its_application_name_as_prefix(
    ctx: Ctx, fs: UnitFilesystem
) -> None:
    relation = client_relation(10, 'webapp', [('', 'req1')])
    state = leader_state(fs, relations={peer(0), relation})
    out = ctx.run(ctx.on.relation_changed(relation, remote_unit=0), state)
    assert responses(out, 10)[0]['resource'] == 'webapp:*'
    assert '~webapp:* &webapp:*' in fs.read_config()


def test_a_v0_client_is_served_with_one_user_per_relation(ctx: Ctx, fs: UnitFilesystem) -> None:
    relation = testing.Relation(
        CLIENT, id=12, remote_app_name='old', remote_app_data={'database': 'old:*'}
    )
    state = leader_state(fs, relations={peer(0), relation})
    out = ctx.run(ctx.on.relation_changed(relation, remote_unit=0), state)
    data = out.get_relation(12).local_app_data
    secret = next(s for s in out.secrets if s.id == data['secret-user'])
    assert (secret.latest_content or {})['username'] == 'relation-12'
    assert 'user relation-12 on #' in fs.read_config()


def test_each_request_of_a_client_gets_its_own_user(ctx: Ctx, fs: UnitFilesystem) -> None:
    relation = client_relation(10, requests=[('myapp:cache:*', 'c'), ('myapp:jobs:*', 'j')])
    state = leader_state(fs, relations={peer(0), relation})
    out = ctx.run(ctx.on.relation_changed(relation, remote_unit=0), state)
    assert [r['resource'] for r in responses(out, 10)] == ['myapp:cache:*', 'myapp:jobs:*']
    assert len(client_secrets(out)) == 2
    text = fs.read_config()
    assert 'user relation-10-c on #' in text
    assert '~myapp:cache:* &myapp:cache:*' in text
    assert 'user relation-10-j on #' in text
    assert '~myapp:jobs:* &myapp:jobs:*' in text


def test_a_hook_that_changes_nothing_writes_nothing_to_the_client_or_its_secret(
    ctx: Ctx, fs: UnitFilesystem
) -> None:
    state = serve_two_clients(ctx, fs)
    out = ctx.run(ctx.on.update_status(), state)
    assert out.relations == state.relations
    assert out.secrets == state.secrets


def test_a_relation_with_no_request_yet_gets_nothing(ctx: Ctx, fs: UnitFilesystem) -> None:
    relation = testing.Relation(CLIENT, id=10, remote_app_name='myapp')
    state = leader_state(fs, relations={peer(0), relation})
    out = ctx.run(ctx.on.relation_changed(relation, remote_unit=0), state)
    assert dict(out.get_relation(10).local_app_data) == {}
    assert client_secrets(out) == []
    assert 'client-users' not in peer_app_data(out)


# -------------------------------------------------------------- the followers


def test_a_follower_renders_the_users_the_leader_published(
    ctx: Ctx, fs: UnitFilesystem, tmp_path: Path
) -> None:
    leader = serve_two_clients(ctx, fs)
    follower_ctx, follower_fs = make_context(tmp_path, 1), make_filesystem(tmp_path, 1)
    state = as_unit(leader, 1, follower_fs, leader=False)
    follower_ctx.run(
        follower_ctx.on.relation_changed(state.get_relations(PEERS)[0], remote_unit=0), state
    )
    users = [line for line in fs.read_config().splitlines() if line.startswith('user ')]
    assert len([u for u in users if u.startswith('user relation-')]) == 2
    assert [u for u in follower_fs.read_config().splitlines() if u.startswith('user ')] == users


def test_a_follower_never_writes_client_relation_data_nor_creates_or_grants_a_secret(
    tmp_path: Path,
) -> None:
    ctx, fs = make_context(tmp_path, 1), make_filesystem(tmp_path, 1)
    relation = client_relation(10)
    state = testing.State(
        leader=False,
        relations={peer(1), relation},
        containers={make_container(fs)},
    )
    out = ctx.run(ctx.on.relation_changed(relation, remote_unit=0), state)
    assert dict(out.get_relation(10).local_app_data) == {}
    assert out.secrets == state.secrets


# -------------------------------------------------------------- leadership changes


def test_a_new_leader_keeps_every_clients_credentials(
    ctx: Ctx, fs: UnitFilesystem, tmp_path: Path
) -> None:
    old = serve_two_clients(ctx, fs)
    new_ctx, new_fs = make_context(tmp_path, 1), make_filesystem(tmp_path, 1)
    new = new_ctx.run(new_ctx.on.leader_elected(), as_unit(old, 1, new_fs, leader=True))

    for relation_id in (10, 11):
        assert credentials(new, relation_id) == credentials(old, relation_id)
        assert responses(new, relation_id) == responses(old, relation_id)
    assert client_secrets(new) == client_secrets(old)  # none created, none rewritten
    assert published_users(new) == published_users(old)
    assert [u for u in new_fs.read_config().splitlines() if u.startswith('user ')] == [
        u for u in fs.read_config().splitlines() if u.startswith('user ')
    ]


def test_a_relation_created_while_leadership_moved_is_served_by_the_next_leader(
    tmp_path: Path,
) -> None:
    # The old leader's lease ran out before it saw the client: the new leader's
    # leader-elected serves it, like any other event would.
    ctx, fs = make_context(tmp_path, 0), make_filesystem(tmp_path, 0)
    old = ctx.run(ctx.on.leader_elected(), leader_state(fs, relations={peer(0)}))
    old = dataclass_replace(old, relations={*old.relations, client_relation(10)})
    new_ctx, new_fs = make_context(tmp_path, 1), make_filesystem(tmp_path, 1)
    new = new_ctx.run(new_ctx.on.leader_elected(), as_unit(old, 1, new_fs, leader=True))
    assert credentials(new, 10)['username'] == 'relation-10-req1'
    assert 'user relation-10-req1 on #' in new_fs.read_config()


def test_a_relation_removed_while_leadership_moved_leaves_no_user_nor_secret_behind(
    ctx: Ctx, fs: UnitFilesystem, tmp_path: Path
) -> None:
    old = serve_two_clients(ctx, fs)
    gone = secret_id(old, 10)
    # Relation 10 was removed, and its relation-broken ran on the old leader
    # after its lease had run out: the new leader finds the published user.
    remaining = {r for r in old.relations if r.id != 10}
    old = dataclass_replace(old, relations=remaining)
    new_ctx, new_fs = make_context(tmp_path, 1), make_filesystem(tmp_path, 1)
    new = new_ctx.run(new_ctx.on.leader_elected(), as_unit(old, 1, new_fs, leader=True))
    assert gone not in {s.id for s in new.secrets}
    assert [u['relation-id'] for u in published_users(new)] == [11]
    assert 'relation-10-' not in new_fs.read_config()
    assert 'user relation-11-req1 on #' in new_fs.read_config()


# -------------------------------------------------------------- relation removal


def test_removing_a_relation_removes_its_user_and_its_secret(ctx: Ctx, fs: UnitFilesystem) -> None:
    state = serve_two_clients(ctx, fs)
    gone = secret_id(state, 10)
    out = ctx.run(ctx.on.relation_broken(state.get_relation(10)), state)
    assert gone not in {s.id for s in out.secrets}
    assert [u['relation-id'] for u in published_users(out)] == [11]
    assert 'relation-10-' not in fs.read_config()
    assert 'user relation-11-req1 on #' in fs.read_config()


def test_a_follower_drops_the_user_of_a_removed_relation_at_once(
    ctx: Ctx, fs: UnitFilesystem, tmp_path: Path
) -> None:
    leader = serve_two_clients(ctx, fs)
    follower_ctx, follower_fs = make_context(tmp_path, 1), make_filesystem(tmp_path, 1)
    state = as_unit(leader, 1, follower_fs, leader=False)
    # relation-broken reaches the follower before the leader unpublished the user.
    out = follower_ctx.run(follower_ctx.on.relation_broken(state.get_relation(10)), state)
    assert 'relation-10-' not in follower_fs.read_config()
    assert 'user relation-11-req1 on #' in follower_fs.read_config()
    assert out.secrets == state.secrets


def test_the_leader_removes_obsolete_revisions_of_client_secrets(
    ctx: Ctx, fs: UnitFilesystem
) -> None:
    state = serve_two_clients(ctx, fs)
    secret = client_secrets(state)[0]
    ctx.run(ctx.on.secret_remove(secret, revision=1), state)
    assert ctx.removed_secret_revisions == [1]


# -------------------------------------------------------------- faults


@pytest.mark.parametrize(
    ('request_fields', 'why'),
    [
        ({'resource': '*'}, "resource '*' is not a key prefix"),
        ({'resource': 'a*b:*'}, 'is not a key prefix'),
        ({'resource': 'myapp:* ~*'}, 'is not a key prefix'),
        ({'resource': 'myapp:*', 'extra-user-roles': 'admin'}, 'extra roles are not offered'),
        ({'resource': 'myapp:*', 'entity-type': 'USER'}, 'entity requests) are not offered'),
        ({'resource': 'myapp:*', 'request-id': 'no spaces please'}, 'request-id must be'),
        ({'resource': 'myapp:*', 'request-id': None}, 'without a request-id'),
    ],
)
def test_a_request_the_charm_does_not_offer_is_answered_in_the_relation_and_the_app_status(
    ctx: Ctx, fs: UnitFilesystem, request_fields: dict[str, str | None], why: str
) -> None:
    request = {'request-id': 'req1', 'salt': 'salt'} | request_fields
    relation = testing.Relation(
        CLIENT,
        id=10,
        remote_app_name='myapp',
        remote_app_data={'version': 'v1', 'requests': json.dumps([request])},
    )
    state = leader_state(fs, relations={peer(0), relation})
    out = ctx.run(ctx.on.relation_changed(relation, remote_unit=0), state)

    (status,) = json.loads(out.get_relation(10).local_app_data['status'])
    assert status['code'] == clients.REFUSED
    assert why in status['message']
    assert isinstance(out.app_status, ops.BlockedStatus)
    assert out.app_status.message.startswith('valkey-client:10 (myapp): ')
    assert why in out.app_status.message
    assert out.unit_status == ops.ActiveStatus('primary')  # the unit itself is fine
    assert client_secrets(out) == []
    assert 'user relation-' not in fs.read_config()


def test_a_fixed_request_clears_the_relation_status_and_the_app_status(
    ctx: Ctx, fs: UnitFilesystem
) -> None:
    bad = client_relation(10, requests=[('*', 'req1')])
    state = leader_state(fs, relations={peer(0), bad})
    refused = ctx.run(ctx.on.relation_changed(bad, remote_unit=0), state)
    assert 'status' in refused.get_relation(10).local_app_data
    # The client asks again, for a prefix this time.
    fixed = dataclass_replace(
        refused.get_relation(10),
        remote_app_data=client_relation(10, requests=[('myapp:*', 'req2')]).remote_app_data,
    )
    state = dataclass_replace(refused, relations={*refused.get_relations(PEERS), fixed})
    out = ctx.run(ctx.on.relation_changed(fixed, remote_unit=0), state)
    assert out.app_status == ops.ActiveStatus(f'primary is {APP}/0')
    assert 'status' not in out.get_relation(10).local_app_data
    assert credentials(out, 10)['username'] == 'relation-10-req2'


def test_a_prefix_overlapping_another_clients_keys_is_refused(
    ctx: Ctx, fs: UnitFilesystem
) -> None:
    first = client_relation(10, 'alpha', [('alpha:*', 'r1')])
    second = client_relation(11, 'beta', [('alpha:secrets:*', 'r2')])
    state = leader_state(fs, relations={peer(0), first, second})
    out = ctx.run(ctx.on.relation_changed(second, remote_unit=0), state)
    assert isinstance(out.app_status, ops.BlockedStatus)
    assert 'overlaps the keys of valkey-client:10' in out.app_status.message
    assert [u['relation-id'] for u in published_users(out)] == [10]


@pytest.mark.parametrize(
    'remote_app_data',
    [
        {'version': 'v1', 'requests': 'not json'},
        {'version': 'v1', 'requests': json.dumps([{'resource': 5, 'request-id': ['x']}])},
        {'version': 'v1', 'requests': json.dumps({'not': 'a list'})},
        {'version': 'v1', 'requests': json.dumps([{'entity-type': 'ROBOT'}])},
    ],
)
def test_malformed_client_data_is_reported_never_raised(
    ctx: Ctx, fs: UnitFilesystem, remote_app_data: dict[str, str]
) -> None:
    relation = testing.Relation(
        CLIENT, id=10, remote_app_name='myapp', remote_app_data=remote_app_data
    )
    state = leader_state(fs, relations={peer(0), relation})
    out = ctx.run(ctx.on.relation_changed(relation, remote_unit=0), state)
    assert isinstance(out.app_status, ops.BlockedStatus)
    assert out.app_status.message.startswith('valkey-client:10 (myapp): unreadable request data')
    (status,) = json.loads(out.get_relation(10).local_app_data['status'])
    assert status['code'] == clients.MALFORMED
    assert out.unit_status == ops.ActiveStatus('primary')


def test_a_client_whose_data_turns_malformed_keeps_its_user(ctx: Ctx, fs: UnitFilesystem) -> None:
    state = serve_two_clients(ctx, fs)
    broken = dataclass_replace(
        state.get_relation(10), remote_app_data={'version': 'v1', 'requests': '['}
    )
    state = dataclass_replace(
        state, relations={*(r for r in state.relations if r.id != 10), broken}
    )
    out = ctx.run(ctx.on.relation_changed(broken, remote_unit=0), state)
    assert [u['relation-id'] for u in published_users(out)] == [10, 11]
    assert 'user relation-10-r1 on #' in fs.read_config()


def test_juju_refusing_a_client_write_is_a_waiting_status(
    ctx: Ctx, fs: UnitFilesystem, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_secret = ops.Application.add_secret

    def refuse(app: ops.Application, content: dict[str, str], **kwargs: Any) -> ops.Secret:
        if clients.owns_secret(kwargs.get('label')):
            raise ops.ModelError('ERROR permission denied')
        return add_secret(app, content, **kwargs)

    monkeypatch.setattr(ops.Application, 'add_secret', refuse)
    relation = client_relation(10)
    state = leader_state(fs, relations={peer(0), relation})
    out = ctx.run(ctx.on.relation_changed(relation, remote_unit=0), state)
    assert out.app_status == ops.WaitingStatus(
        'valkey-client:10 (myapp): could not answer (PydanticSerializationError); retrying'
    )
    assert client_secrets(out) == []
    assert 'client-users' not in peer_app_data(out)  # nobody renders a user without credentials


# -------------------------------------------------------------- leader-only writes


def stores(*_: object, **kwargs: object) -> bool:
    """``compute_diff(..., store=True)`` writes; ``store=False`` only reads."""
    return bool(kwargs.get('store', True))


def writes_client_users(_: object, key: str, *__: object) -> bool:
    return key == 'client-users'


def test_every_client_write_comes_right_after_a_leadership_check(
    ctx: Ctx, fs: UnitFilesystem, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    clients.import_library()
    from dpcharmlibs.interfaces import ResourceProviderEventHandler

    trail: list[str] = []
    check = ValkeyLeaderCharm._ensure_still_leader

    def checked(charm: ValkeyLeaderCharm) -> None:
        trail.append('check')
        check(charm)

    monkeypatch.setattr(ValkeyLeaderCharm, '_ensure_still_leader', checked)

    def spy(owner: Any, name: str, when: Any = None) -> None:
        original = getattr(owner, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if when is None or when(*args, **kwargs):
                trail.append(name)
            return original(*args, **kwargs)

        monkeypatch.setattr(owner, name, wrapper)

    # Each hook starts afresh: a check left over from the previous hook guards nothing.
    spy(ValkeyLeaderCharm, '_reconcile')
    spy(ResourceProviderEventHandler, 'set_responses')
    spy(ResourceProviderEventHandler, 'raise_status')
    spy(ResourceProviderEventHandler, 'clear_statuses')
    spy(ResourceProviderEventHandler, 'compute_diff', stores)
    spy(ops.Secret, 'remove_all_revisions')
    spy(ops.RelationDataContent, '__setitem__', writes_client_users)

    state = serve_two_clients(ctx, fs)  # answers, request copies, peer writes
    refused = client_relation(12, 'gamma', [('*', 'r3')])  # a status
    state = dataclass_replace(state, relations={*state.relations, refused})
    state = ctx.run(ctx.on.relation_changed(refused, remote_unit=0), state)
    ctx.run(ctx.on.relation_broken(state.get_relation(10)), state)  # a secret removed

    writes = [i for i, step in enumerate(trail) if step not in ('check', '_reconcile')]
    assert {trail[i] for i in writes} == {
        'set_responses',
        'raise_status',
        'clear_statuses',
        'compute_diff',
        'remove_all_revisions',
        '__setitem__',
    }
    assert all(trail[i - 1] == 'check' for i in writes), trail


def test_no_client_write_once_leadership_is_lost_mid_hook(
    ctx: Ctx, fs: UnitFilesystem, lease: Lease, monkeypatch: pytest.MonkeyPatch
) -> None:
    clients.import_library()
    from dpcharmlibs.interfaces import ResourceProviderEventHandler

    read: Any = getattr(ResourceProviderEventHandler, 'requests')  # noqa: B009 - generic, untyped here

    def slow_read(*args: Any, **kwargs: Any) -> Any:
        lease.run_out()  # the client's data took longer than the lease to read
        return read(*args, **kwargs)

    monkeypatch.setattr(ResourceProviderEventHandler, 'requests', slow_read)
    relation = client_relation(10)
    state = leader_state(fs, relations={peer(0), relation})
    out = ctx.run(ctx.on.relation_changed(relation, remote_unit=0), state)
    assert dict(out.get_relation(10).local_app_data) == {}
    assert client_secrets(out) == []
    assert 'client-users' not in peer_app_data(out)
    assert out.unit_status == ops.WaitingStatus('waiting for the leader to publish its address')


# -------------------------------------------------------------- the published list


@pytest.mark.parametrize(
    'raw',
    [
        'not json',
        '{"a": 1}',
        '[{"relation-id": "10", "name": "relation-10", "password-sha256": "' + 'a' * 64 + '",'
        ' "keys": "x:*", "secret-id": null}]',
        '[{"relation-id": 10, "name": "x\\nrequirepass y", "password-sha256": "'
        + 'a' * 64
        + '", "keys": "x:*", "secret-id": null}]',
        '[{"relation-id": 10, "name": "relation-10", "password-sha256": "plain",'
        ' "keys": "x:*", "secret-id": null}]',
        '[{"relation-id": 10, "name": "relation-10", "password-sha256": "' + 'a' * 64 + '",'
        ' "keys": "*", "secret-id": null}]',
        '[{"relation-id": 10, "name": "relation-10", "password-sha256": "' + 'a' * 64 + '",'
        ' "keys": "x:*", "secret-id": "nope"}]',
        '[{"relation-id": 10}]',
    ],
)
def test_unusable_published_users_are_never_rendered(tmp_path: Path, raw: str) -> None:
    ctx, fs = make_context(tmp_path, 1), make_filesystem(tmp_path, 1)
    leader = make_context(tmp_path, 0)
    published = leader.run(
        leader.on.leader_elected(), leader_state(make_filesystem(tmp_path), relations={peer(0)})
    )
    data = peer_app_data(published) | {'client-users': raw}
    peer_relation = peer(1, app_data=data)
    state = testing.State(
        leader=False,
        relations={peer_relation, client_relation(10)},
        secrets=published.secrets,
        containers={make_container(fs)},
    )
    out = ctx.run(ctx.on.relation_changed(peer_relation, remote_unit=0), state)
    assert 'user relation-' not in fs.read_config()
    assert out.unit_status == ops.ActiveStatus(f'replica of {APP}/0')


# -------------------------------------------------------------- secrecy


def test_a_clients_password_is_only_in_its_secret(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Not in any log line (debug included), status, relation databag, plan or config file."""
    caplog.set_level(logging.DEBUG)
    ctx, fs = make_context(tmp_path, 0), make_filesystem(tmp_path, 0)
    leader = serve_two_clients(ctx, fs)
    follower_ctx, follower_fs = make_context(tmp_path, 1), make_filesystem(tmp_path, 1)
    state = as_unit(leader, 1, follower_fs, leader=False)
    follower = follower_ctx.run(
        follower_ctx.on.relation_changed(state.get_relations(PEERS)[0], remote_unit=0), state
    )
    seen = [*everything_visible(leader), *everything_visible(follower), caplog.text]
    seen += [fs.read_config(), follower_fs.read_config()]
    for relation_id in (10, 11):
        password = credentials(leader, relation_id)['password']
        assert not [text for text in seen if password in text]


def test_a_new_client_user_reaches_the_running_server_live(
    ctx: Ctx, fs: UnitFilesystem, side_effects: SideEffects, live_server: FakeLive
) -> None:
    """Valkey reads `user` lines only at start, and does not replicate users: each unit
    sets them on its own running server, live."""
    running = ctx.run(ctx.on.update_status(), leader_state(fs, relations={peer(0)}))
    side_effects.calls.clear()
    relation = client_relation(10)
    state = dataclass_replace(running, relations={*running.relations, relation})

    ctx.run(ctx.on.relation_changed(relation, remote_unit=0), state)

    assert 'user relation-10-req1 on #' in fs.read_config()
    assert live_server.users == [('relation-10-req1', 'charm-metrics')]
    assert side_effects.count('restart') == 0


def test_users_the_server_refuses_live_restart_it_once(
    ctx: Ctx, fs: UnitFilesystem, side_effects: SideEffects, live_server: FakeLive
) -> None:
    running = ctx.run(ctx.on.update_status(), leader_state(fs, relations={peer(0)}))
    side_effects.calls.clear()
    live_server.users_result = live.LiveResult('refused', reason='ACL SETUSER refused')
    relation = client_relation(10)
    state = dataclass_replace(running, relations={*running.relations, relation})

    ctx.run(ctx.on.relation_changed(relation, remote_unit=0), state)

    assert side_effects.count('restart') == 1


def test_the_charm_names_the_client_endpoint_as_clients_and_metadata_do() -> None:
    """charm.py names it without importing clients.py (hooks without clients skip that import)."""
    metadata = yaml.safe_load((REPO_ROOT / 'metadata.yaml').read_text())
    assert charm.CLIENT_ENDPOINT == clients.ENDPOINT
    assert metadata['provides'][charm.CLIENT_ENDPOINT]['interface'] == 'valkey_client'
