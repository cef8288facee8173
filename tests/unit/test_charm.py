# Copyright 2026 The valkey-leader-k8s authors
# See LICENSE file for licensing details.

"""Behaviour of the charm: rendering, restarts, secrets, the action, and faults."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import ops
import pytest
from ops import testing

from charm import ValkeyLeaderCharm
from workload import live

from ..fake_kubernetes import FakeKubernetes
from .conftest import (
    APP,
    PEERS,
    FakeLive,
    Lease,
    SideEffects,
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

Ctx = testing.Context[ValkeyLeaderCharm]


def deploy_leader(ctx: Ctx, fs: UnitFilesystem, **config: str) -> testing.State:
    """Unit 0 elected leader, with Pebble up: the state after its first reconcile."""
    return ctx.run(ctx.on.leader_elected(), leader_state(fs, config=config))


def rerun(state: testing.State, **changes: object) -> testing.State:
    """The output state of one hook, as the input of the next one."""
    return dataclasses.replace(state, **changes)  # type: ignore[arg-type]


def user_secret(password: str | None = 'correct-horse-battery-staple') -> testing.Secret:
    content = {'password': password} if password is not None else {'username': 'admin'}
    return testing.Secret(tracked_content=content)


# ---------------------------------------------------------------- rendering


def test_leader_renders_a_primary_config(ctx: Ctx, fs: UnitFilesystem) -> None:
    out = deploy_leader(ctx, fs, **{'log-level': 'verbose', 'maxmemory': '100mb'})

    text = fs.read_config()
    password = password_secret(out).latest_content['password']
    assert len(password) >= 32
    assert 'port 6379\n' in text
    assert 'protected-mode yes\n' in text
    assert 'dir /var/lib/valkey\n' in text
    assert '\nsave ' in text
    assert 'loglevel verbose\n' in text
    assert 'maxmemory 100mb\n' in text
    assert 'maxmemory-policy noeviction\n' in text
    assert f'requirepass "{password}"\n' in text
    assert f'masterauth "{password}"\n' in text
    assert 'replicaof' not in text
    assert 'replica-read-only' not in text
    assert out.unit_status == ops.ActiveStatus('primary')
    assert out.app_status == ops.ActiveStatus(f'primary is {unit_name(0)}')
    assert out.workload_version == '9.1.0'


def test_with_other_units_the_primary_needs_a_replica_in_sync_to_take_writes(
    ctx: Ctx, fs: UnitFilesystem
) -> None:
    deploy_leader(ctx, fs)

    text = fs.read_config()
    assert 'min-replicas-to-write 1\n' in text
    assert 'min-replicas-max-lag 10\n' in text


def test_a_single_unit_takes_writes_without_a_replica(ctx: Ctx, fs: UnitFilesystem) -> None:
    alone = leader_state(fs, relations={make_peer_relation(0, units=[0])})
    out = ctx.run(ctx.on.leader_elected(), alone)

    assert 'min-replicas-to-write 0\n' in fs.read_config()
    assert out.unit_status == ops.ActiveStatus('primary')


def test_scaling_down_to_one_unit_lets_the_primary_write_alone(
    ctx: Ctx, fs: UnitFilesystem
) -> None:
    out = deploy_leader(ctx, fs)
    (relation,) = out.relations
    alone = dataclasses.replace(relation, peers_data={})  # type: ignore[arg-type]
    departed = rerun(out, relations={alone})

    ctx.run(ctx.on.relation_departed(alone, remote_unit=1, departing_unit=1), departed)

    assert 'min-replicas-to-write 0\n' in fs.read_config()


def test_config_file_is_private_to_the_workload_user(ctx: Ctx, fs: UnitFilesystem) -> None:
    deploy_leader(ctx, fs)
    assert fs.config_file.stat().st_mode & 0o777 == 0o600


def test_pebble_runs_valkey_from_the_file_only(ctx: Ctx, fs: UnitFilesystem) -> None:
    out = deploy_leader(ctx, fs)

    plan = out.get_container('valkey').plan
    service = plan.services['valkey']
    assert service.command == 'valkey-server /run/valkey/valkey.conf'
    assert service.startup == 'enabled'
    assert service.environment == {}
    assert plan.checks['valkey-ready'].level == ops.pebble.CheckLevel.READY
    assert (
        out.get_container('valkey').service_statuses['valkey'] == ops.pebble.ServiceStatus.ACTIVE
    )


def test_follower_renders_replicaof_the_leader(tmp_path: Path) -> None:
    leader = deploy_leader(make_context(tmp_path, 0), make_filesystem(tmp_path, 0))
    fs = make_filesystem(tmp_path, 1)
    ctx = make_context(tmp_path, 1)

    out = ctx.run(
        ctx.on.config_changed(),
        state_for_unit(leader, unit=1, leader=False, container=make_container(fs)),
    )

    text = fs.read_config()
    password = password_secret(leader).latest_content['password']
    assert (
        f'replicaof {APP}-0.{APP}-endpoints.{leader.model.name}.svc.cluster.local 6379\n' in text
    )
    assert 'replica-read-only yes\n' in text
    assert f'masterauth "{password}"\n' in text
    assert f'requirepass "{password}"\n' in text
    assert out.unit_status == ops.ActiveStatus(f'replica of {unit_name(0)}')


def test_follower_without_a_leader_renders_nothing_and_waits(
    follower_ctx: Ctx, tmp_path: Path
) -> None:
    fs = make_filesystem(tmp_path, 1)
    state = testing.State(
        leader=False, relations={make_peer_relation(1)}, containers={make_container(fs)}
    )
    out = follower_ctx.run(follower_ctx.on.config_changed(), state)
    assert not fs.config_file.exists()
    assert out.get_container('valkey').plan.services == {}
    assert out.unit_status == ops.WaitingStatus('waiting for the leader to publish its address')


def test_follower_without_the_peer_relation_waits(follower_ctx: Ctx, tmp_path: Path) -> None:
    fs = make_filesystem(tmp_path, 1)
    state = testing.State(leader=False, containers={make_container(fs)})
    out = follower_ctx.run(follower_ctx.on.config_changed(), state)
    assert not fs.config_file.exists()
    assert out.unit_status == ops.WaitingStatus(f'waiting for the {PEERS} relation')


@pytest.mark.parametrize(
    'app_data',
    [
        {'leader-unit': '"valkey-leader-k8s/0"'},
        {'leader-unit': '"valkey-leader-k8s/0"', 'leader-address': '"x.example"'},
        {
            'leader-unit': '"valkey-leader-k8s/0"',
            'leader-address': '"evil\\nrequirepass x"',
            'password-secret-id': '"secret:abc"',
        },
        {'leader-unit': 'not json', 'leader-address': '"a"', 'password-secret-id': '"secret:a"'},
    ],
    ids=['unit-only', 'no-secret-id', 'address-with-newline', 'not-json'],
)
def test_follower_ignores_partial_or_bad_leader_data(
    follower_ctx: Ctx, tmp_path: Path, app_data: dict[str, str]
) -> None:
    fs = make_filesystem(tmp_path, 1)
    state = testing.State(
        leader=False,
        relations={make_peer_relation(1, app_data=app_data)},
        containers={make_container(fs)},
    )
    out = follower_ctx.run(follower_ctx.on.config_changed(), state)
    assert not fs.config_file.exists()
    assert out.unit_status == ops.WaitingStatus(
        'leader data is incomplete; waiting for the leader to rewrite it'
    )


def test_former_leader_keeps_its_file_until_the_new_leader_publishes(tmp_path: Path) -> None:
    """Unit 0 lost leadership, and the new leader has not written yet."""
    ctx = make_context(tmp_path, 0)
    fs = make_filesystem(tmp_path, 0)
    as_leader = deploy_leader(ctx, fs)
    before = fs.read_config()

    out = ctx.run(ctx.on.config_changed(), rerun(as_leader, leader=False))

    assert fs.read_config() == before
    assert out.unit_status == ops.WaitingStatus('no longer the leader; waiting for the new leader')


def test_a_corrupted_leader_record_is_rewritten_by_the_leader(
    ctx: Ctx, fs: UnitFilesystem
) -> None:
    state = leader_state(fs, relations={make_peer_relation(app_data={'leader-unit': '"x'})})
    out = ctx.run(ctx.on.config_changed(), state)
    assert peer_app_data(out)['leader-unit'] == f'"{unit_name(0)}"'
    assert out.unit_status == ops.ActiveStatus('primary')


def test_leader_without_peer_relation_is_primary_and_says_peers_cannot_follow(
    ctx: Ctx, fs: UnitFilesystem
) -> None:
    out = ctx.run(
        ctx.on.leader_elected(), leader_state(fs, relations=frozenset[testing.Relation]())
    )
    assert 'replicaof' not in fs.read_config()
    assert out.unit_status == ops.ActiveStatus('primary')
    assert out.app_status == ops.WaitingStatus(f'waiting for the {PEERS} relation')


# ------------------------------------------------- restarts and side effects


def test_first_start_is_one_replan_and_no_restart(
    ctx: Ctx, fs: UnitFilesystem, side_effects: SideEffects
) -> None:
    deploy_leader(ctx, fs)
    assert side_effects.count('push') == 1
    assert side_effects.count('replan') == 1
    assert side_effects.count('restart') == 0


def test_identical_events_change_nothing(
    ctx: Ctx, fs: UnitFilesystem, side_effects: SideEffects, kubernetes: FakeKubernetes
) -> None:
    state = deploy_leader(ctx, fs)
    side_effects.calls.clear()
    ctx.exec_history.clear()
    kubernetes.requests.clear()
    before = state.secrets

    for event in (ctx.on.config_changed(), ctx.on.update_status(), ctx.on.config_changed()):
        state = ctx.run(event, state)

    assert side_effects.calls == []
    assert kubernetes.requests == []
    assert state.secrets == before
    assert state.unit_status == ops.ActiveStatus('primary')


def test_a_real_change_is_applied_live_without_a_restart(
    ctx: Ctx, fs: UnitFilesystem, side_effects: SideEffects, live_server: FakeLive
) -> None:
    state = deploy_leader(ctx, fs)
    side_effects.calls.clear()
    ctx.exec_history.clear()

    ctx.run(ctx.on.config_changed(), rerun(state, config={'maxmemory': '1gb'}))

    assert 'maxmemory 1gb\n' in fs.read_config()
    # Same container, same binary: no need to ask for its version again.
    assert ctx.exec_history.get('valkey', []) == []
    assert side_effects.count('push') == 1
    assert side_effects.count('restart') == 0
    assert side_effects.count('replan') == 0
    (settings, passwords) = live_server.calls[-1]
    assert settings.maxmemory == '1gb'
    assert passwords == 2, 'the new password, then the one in the file it replaced'


@pytest.mark.parametrize('status', ['not-running', 'auth-refused', 'refused'])
def test_a_change_the_server_cannot_take_live_restarts_it_once(
    ctx: Ctx,
    fs: UnitFilesystem,
    side_effects: SideEffects,
    live_server: FakeLive,
    status: live.LiveStatus,
    caplog: pytest.LogCaptureFixture,
) -> None:
    state = deploy_leader(ctx, fs)
    side_effects.calls.clear()
    live_server.result = live.LiveResult(status, reason='why it could not')

    out = ctx.run(ctx.on.config_changed(), rerun(state, config={'log-level': 'debug'}))

    assert 'loglevel debug\n' in fs.read_config()
    assert side_effects.count('restart') == 1
    assert 'Restarting Valkey: why it could not' in caplog.text
    assert out.unit_status == ops.ActiveStatus('primary')


def test_nothing_is_applied_live_when_the_file_did_not_change(
    ctx: Ctx, fs: UnitFilesystem, live_server: FakeLive
) -> None:
    """A leader alone: no other unit's hook can have changed its server."""
    alone = leader_state(fs, relations={make_peer_relation(0, units=(0,))})
    state = ctx.run(ctx.on.leader_elected(), alone)
    live_server.calls.clear()

    ctx.run(ctx.on.config_changed(), state)

    assert live_server.calls == []


def test_a_leader_with_peers_checks_its_server_on_every_hook(
    ctx: Ctx, fs: UnitFilesystem, live_server: FakeLive
) -> None:
    """Another unit's handover, or a lost lease, may have changed its role with no event here."""
    state = deploy_leader(ctx, fs)
    live_server.calls.clear()

    ctx.run(ctx.on.update_status(), state)

    ((settings, _),) = live_server.calls
    assert settings.primary_address is None


def test_a_stopped_service_is_started_without_rewriting_the_file(
    ctx: Ctx, fs: UnitFilesystem, side_effects: SideEffects
) -> None:
    state = deploy_leader(ctx, fs)
    container = state.get_container('valkey')
    stopped = dataclasses.replace(
        container, service_statuses={'valkey': ops.pebble.ServiceStatus.INACTIVE}
    )
    side_effects.calls.clear()

    out = ctx.run(ctx.on.update_status(), rerun(state, containers={stopped}))

    assert side_effects.calls.count('start') == 1
    assert side_effects.count('push') == 0
    assert (
        out.get_container('valkey').service_statuses['valkey'] == ops.pebble.ServiceStatus.ACTIVE
    )


# ----------------------------------------------------------------- bad config


@pytest.mark.parametrize(
    ('option', 'value', 'message'),
    [
        ('log-level', 'loud', "log-level='loud': use one of debug, verbose, notice, warning"),
        ('maxmemory', '10 mb', "maxmemory='10 mb': use empty for no limit, or a size"),
        ('maxmemory', '-1', "maxmemory='-1': use empty"),
        ('maxmemory', '1tb', "maxmemory='1tb': use empty"),
        ('maxmemory', '99999999999gb', "maxmemory='99999999999gb': use empty"),
        ('maxmemory-policy', 'lru', "maxmemory-policy='lru': use one of noeviction, allkeys-lru"),
    ],
)
def test_invalid_config_blocks_and_keeps_the_last_good_file(
    ctx: Ctx,
    fs: UnitFilesystem,
    side_effects: SideEffects,
    option: str,
    value: str,
    message: str,
) -> None:
    state = deploy_leader(ctx, fs)
    last_good = fs.read_config()
    side_effects.calls.clear()

    out = ctx.run(ctx.on.config_changed(), rerun(state, config={option: value}))

    assert isinstance(out.unit_status, ops.BlockedStatus)
    assert out.unit_status.message.startswith(f'invalid config: {message}')
    assert isinstance(out.app_status, ops.BlockedStatus)
    assert fs.read_config() == last_good
    assert side_effects.count('push') == side_effects.count('restart') == 0

    # Fixing the value recovers without any other event.
    fixed = ctx.run(ctx.on.config_changed(), rerun(out, config={}))
    assert fixed.unit_status == ops.ActiveStatus('primary')


def test_invalid_config_on_a_follower_blocks_it_too(tmp_path: Path) -> None:
    leader = deploy_leader(make_context(tmp_path, 0), make_filesystem(tmp_path, 0))
    ctx = make_context(tmp_path, 1)
    fs = make_filesystem(tmp_path, 1)
    state = state_for_unit(leader, unit=1, leader=False, container=make_container(fs))
    good = ctx.run(ctx.on.config_changed(), state)
    last_good = fs.read_config()

    out = ctx.run(ctx.on.config_changed(), rerun(good, config={'log-level': 'LOUD'}))

    assert out.unit_status == ops.BlockedStatus(
        "invalid config: log-level='LOUD': use one of debug, verbose, notice, warning"
    )
    assert fs.read_config() == last_good


# ------------------------------------------------------ user admin-password


def test_user_admin_password_replaces_the_generated_one(tmp_path: Path) -> None:
    secret = user_secret('my own pa$$word "quoted"')
    ctx = make_context(tmp_path, 0)
    fs = make_filesystem(tmp_path, 0)
    state = leader_state(fs, config={'admin-password': secret.id}, secrets={secret})

    leader = ctx.run(ctx.on.config_changed(), state)

    assert 'requirepass "my own pa$$word \\"quoted\\""\n' in fs.read_config()
    # The follower uses the same user secret (granted to the app), not the generated one.
    follower_fs = make_filesystem(tmp_path, 1)
    follower_ctx = make_context(tmp_path, 1)
    follower_ctx.run(
        follower_ctx.on.config_changed(),
        state_for_unit(leader, unit=1, leader=False, container=make_container(follower_fs)),
    )
    assert 'masterauth "my own pa$$word \\"quoted\\""\n' in follower_fs.read_config()


def test_a_new_revision_of_the_user_secret_is_picked_up(ctx: Ctx, fs: UnitFilesystem) -> None:
    secret = user_secret('first')
    state = ctx.run(
        ctx.on.config_changed(),
        leader_state(fs, config={'admin-password': secret.id}, secrets={secret}),
    )
    updated = dataclasses.replace(secret, latest_content={'password': 'second'})
    others = {s for s in state.secrets if s.id != secret.id}

    ctx.run(ctx.on.secret_changed(updated), rerun(state, secrets={*others, updated}))

    assert 'requirepass "second"\n' in fs.read_config()


def test_a_newline_in_the_user_password_cannot_inject_directives(
    ctx: Ctx, fs: UnitFilesystem
) -> None:
    secret = user_secret('x\nreplicaof evil.example 6379')
    ctx.run(
        ctx.on.config_changed(),
        leader_state(fs, config={'admin-password': secret.id}, secrets={secret}),
    )
    lines = fs.read_config().splitlines()
    assert 'requirepass "x\\x0areplicaof evil.example 6379"' in lines
    assert not any(line.startswith('replicaof') for line in lines)


@pytest.mark.parametrize(
    ('config_value', 'secrets', 'message'),
    [
        ('secret:0123456789abcdefghij', set[testing.Secret](), 'admin-password secret not found'),
        (None, {user_secret(None)}, "admin-password secret has no 'password' key"),
        (None, {user_secret('')}, "admin-password secret has no 'password' key"),
    ],
    ids=['unknown', 'no-password-key', 'empty-password'],
)
def test_bad_admin_password_blocks_with_what_to_do(
    ctx: Ctx,
    fs: UnitFilesystem,
    config_value: str | None,
    secrets: set[testing.Secret],
    message: str,
) -> None:
    state = deploy_leader(ctx, fs)
    last_good = fs.read_config()
    secret_id = config_value if config_value is not None else next(iter(secrets)).id

    out = ctx.run(
        ctx.on.config_changed(),
        rerun(state, config={'admin-password': secret_id}, secrets={*state.secrets, *secrets}),
    )

    assert isinstance(out.unit_status, ops.BlockedStatus)
    assert out.unit_status.message.startswith(message)
    assert fs.read_config() == last_good


def test_malformed_admin_password_blocks(
    ctx: Ctx, fs: UnitFilesystem, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Juju refuses a value that is not a secret URI before the charm sees it, and
    # so does ops.testing's consistency checker; the charm still copes if one slips through.
    monkeypatch.setenv('SCENARIO_SKIP_CONSISTENCY_CHECKS', '1')
    state = deploy_leader(ctx, fs)
    last_good = fs.read_config()
    out = ctx.run(ctx.on.config_changed(), rerun(state, config={'admin-password': 'hunter2'}))
    assert out.unit_status == ops.BlockedStatus(
        'invalid config: admin-password is not a secret URI: run `juju add-secret`, '
        '`juju grant-secret`, then set admin-password to the secret:... URI it printed'
    )
    assert fs.read_config() == last_good


def test_admin_password_not_granted_says_how_to_grant(
    ctx: Ctx, fs: UnitFilesystem, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = user_secret()
    state = deploy_leader(ctx, fs)
    original = ops.Secret.get_content

    def get_content(self: ops.Secret, *, refresh: bool = False) -> dict[str, str]:
        if self.id == secret.id:
            raise ops.ModelError('ERROR permission denied')
        return original(self, refresh=refresh)

    monkeypatch.setattr(ops.Secret, 'get_content', get_content)
    out = ctx.run(
        ctx.on.config_changed(),
        rerun(state, config={'admin-password': secret.id}, secrets={*state.secrets, secret}),
    )
    assert out.unit_status == ops.BlockedStatus(
        f'admin-password secret not granted: run `juju grant-secret <secret> {APP}`'
    )


# ------------------------------------------------------------ rotate-password


def test_rotate_password_on_the_leader_and_the_followers_follow(tmp_path: Path) -> None:
    ctx = make_context(tmp_path, 0)
    fs = make_filesystem(tmp_path, 0)
    leader = deploy_leader(ctx, fs)
    old = password_secret(leader).latest_content['password']

    rotated = ctx.run(ctx.on.action('rotate-password'), leader)

    new = password_secret(rotated).latest_content['password']
    assert new != old
    assert len(new) >= 32
    assert ctx.action_results == {
        'result': 'password rotated; every unit applies it live',
        'secret-id': password_secret(rotated).id,
    }
    assert peer_app_data(leader)['password-revision'] == '1'
    assert peer_app_data(rotated)['password-revision'] == '2'
    assert f'requirepass "{new}"' in fs.read_config()

    # The generation bump fires relation-changed on a follower, which re-reads
    # the secret with refresh=True: it still tracks the old revision before that.
    follower_fs = make_filesystem(tmp_path, 1)
    follower_ctx = make_context(tmp_path, 1)
    follower_in = state_for_unit(
        leader, unit=1, leader=False, container=make_container(follower_fs)
    )
    follower = follower_ctx.run(follower_ctx.on.config_changed(), follower_in)
    assert f'masterauth "{old}"' in follower_fs.read_config()
    follower_after = state_for_unit(
        rotated, unit=1, leader=False, container=follower.get_container('valkey')
    )
    follower_ctx.run(
        follower_ctx.on.relation_changed(follower_after.get_relations(PEERS)[0], remote_unit=0),
        follower_after,
    )
    assert f'masterauth "{new}"' in follower_fs.read_config()


def test_rotate_password_on_a_follower_fails_naming_the_leader(tmp_path: Path) -> None:
    leader = deploy_leader(make_context(tmp_path, 0), make_filesystem(tmp_path, 0))
    ctx = make_context(tmp_path, 1)
    state = state_for_unit(
        leader, unit=1, leader=False, container=make_container(make_filesystem(tmp_path, 1))
    )

    with pytest.raises(testing.ActionFailed) as failure:
        ctx.run(ctx.on.action('rotate-password'), state)

    assert failure.value.message == (
        f'Only the leader can rotate the password (the leader is {unit_name(0)}). '
        f'Run: juju run {APP}/leader rotate-password'
    )


def test_rotate_password_is_refused_while_admin_password_is_set(
    ctx: Ctx, fs: UnitFilesystem, side_effects: SideEffects
) -> None:
    secret = user_secret()
    state = ctx.run(
        ctx.on.config_changed(),
        leader_state(fs, config={'admin-password': secret.id}, secrets={secret}),
    )
    side_effects.calls.clear()

    with pytest.raises(testing.ActionFailed) as failure:
        ctx.run(ctx.on.action('rotate-password'), state)

    assert 'admin-password is set' in failure.value.message
    assert 'set_content' not in side_effects.calls


def test_rotate_password_fails_if_leadership_is_lost_before_the_write(
    ctx: Ctx, fs: UnitFilesystem, side_effects: SideEffects, lease: Lease
) -> None:
    state = deploy_leader(ctx, fs)
    before = password_secret(state).latest_content
    side_effects.calls.clear()
    lease.run_out_after(1)  # the action's own check; the lease runs out before the write
    with pytest.raises(testing.ActionFailed) as failure:
        ctx.run(ctx.on.action('rotate-password'), state)
    # Leadership is moving and no new leader has published yet: never "run it here".
    assert failure.value.message == (
        'Only the leader can rotate the password '
        f'(leadership is moving to another unit). Run: juju run {APP}/leader rotate-password'
    )
    assert 'set_content' not in side_effects.calls
    assert isinstance(failure.value.state, testing.State)
    assert password_secret(failure.value.state).latest_content == before


def test_obsolete_revisions_of_the_password_are_removed(ctx: Ctx, fs: UnitFilesystem) -> None:
    rotated = ctx.run(ctx.on.action('rotate-password'), deploy_leader(ctx, fs))
    # The leader's next hook reads (and so tracks) the new revision 2; Juju then
    # tells the owner that nobody tracks revision 1 any more.
    state = ctx.run(ctx.on.update_status(), rotated)
    secret = password_secret(state)

    ctx.run(ctx.on.secret_remove(secret, revision=1), state)

    assert ctx.removed_secret_revisions == [1]


def test_a_password_secret_without_its_key_is_repaired_by_the_leader(
    ctx: Ctx, fs: UnitFilesystem
) -> None:
    broken = testing.Secret(tracked_content={'other': 'x'}, owner='app', label='admin-password')
    out = ctx.run(ctx.on.config_changed(), leader_state(fs, secrets={broken}))
    password = password_secret(out).latest_content['password']
    assert len(password) >= 32
    assert f'requirepass "{password}"' in fs.read_config()


# ------------------------------------------------------------- Pebble faults


def test_pebble_not_ready_waits_and_writes_nothing(ctx: Ctx, fs: UnitFilesystem) -> None:
    state = leader_state(fs, containers={make_container(fs, can_connect=False)})
    out = ctx.run(ctx.on.config_changed(), state)
    assert not fs.config_file.exists()
    assert out.unit_status == ops.WaitingStatus('waiting for Pebble in the valkey container')
    # The application is only as ready as its primary.
    assert out.app_status == out.unit_status
    # The leader duties do not wait for Pebble: peers can already follow.
    assert peer_app_data(out)['leader-unit'] == f'"{unit_name(0)}"'


@pytest.mark.parametrize(
    ('method', 'error'),
    [
        ('push', ops.pebble.PathError('generic-file-error', 'no space left on device')),
        ('replan', ops.pebble.ChangeError('cannot start service', None)),  # type: ignore[arg-type]
        ('pull', ops.pebble.ConnectionError('socket closed')),
        ('get_plan', ops.pebble.APIError({}, 500, 'Internal Server Error', 'boom')),
    ],
    ids=['push', 'replan', 'pull', 'get-plan'],
)
def test_pebble_errors_become_a_status_not_a_traceback(
    ctx: Ctx,
    fs: UnitFilesystem,
    monkeypatch: pytest.MonkeyPatch,
    method: str,
    error: Exception,
) -> None:
    def fail(*_: object, **__: object) -> None:
        raise error

    monkeypatch.setattr(ops.Container, method, fail)
    out = ctx.run(ctx.on.config_changed(), leader_state(fs))
    assert out.unit_status == ops.WaitingStatus(
        f'Pebble error ({type(error).__name__}); retrying on the next event'
    )


def test_a_failed_push_keeps_the_last_good_file(
    ctx: Ctx, fs: UnitFilesystem, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = deploy_leader(ctx, fs)
    last_good = fs.read_config()

    def fail(*_: object, **__: object) -> None:
        raise ops.pebble.PathError('generic-file-error', 'read-only file system')

    monkeypatch.setattr(ops.Container, 'push', fail)
    out = ctx.run(ctx.on.config_changed(), rerun(state, config={'maxmemory': '5mb'}))

    assert fs.read_config() == last_good
    assert isinstance(out.unit_status, ops.WaitingStatus)


def test_the_charm_runs_no_command_but_the_version_check(ctx: Ctx, fs: UnitFilesystem) -> None:
    # No chown: Juju's fsGroup makes the storage writable by the workload user,
    # and Pebble (running as that user) owns what it creates.
    deploy_leader(ctx, fs)
    assert [e.command for e in ctx.exec_history['valkey']] == [['valkey-server', '--version']]


# ------------------------------------------------------- the shared secret


def test_a_stale_published_secret_id_falls_back_to_the_label(ctx: Ctx, fs: UnitFilesystem) -> None:
    """The previous leader published an id that no longer exists: the label still finds it."""
    secret = testing.Secret({'password': 'q' * 48}, owner='app', label='admin-password')
    stale = make_peer_relation(
        app_data={
            'leader-unit': f'"{unit_name(1)}"',
            'leader-address': '"old-leader.example"',
            'password-secret-id': '"secret:0000000000000000000a"',
            'password-revision': '3',
        }
    )
    out = ctx.run(ctx.on.leader_elected(), leader_state(fs, relations={stale}, secrets={secret}))
    assert out.secrets == frozenset({secret})
    assert peer_app_data(out)['password-secret-id'] == f'"{secret.id}"'
    assert peer_app_data(out)['password-revision'] == '3'
    assert f'requirepass "{"q" * 48}"' in fs.read_config()


def test_a_follower_that_cannot_read_the_secret_waits(tmp_path: Path) -> None:
    leader = deploy_leader(make_context(tmp_path, 0), make_filesystem(tmp_path, 0))
    fs = make_filesystem(tmp_path, 1)
    ctx = make_context(tmp_path, 1)
    state = state_for_unit(leader, unit=1, leader=False, container=make_container(fs))

    out = ctx.run(ctx.on.config_changed(), rerun(state, secrets=frozenset[testing.Secret]()))

    assert out.unit_status == ops.WaitingStatus('waiting for access to the password secret')
    assert not fs.config_file.exists()


def test_a_follower_waits_while_the_secret_has_no_password(tmp_path: Path) -> None:
    leader = deploy_leader(make_context(tmp_path, 0), make_filesystem(tmp_path, 0))
    secret = password_secret(leader)
    emptied = dataclasses.replace(
        secret, tracked_content={'other': 'x'}, latest_content={'other': 'x'}
    )
    fs = make_filesystem(tmp_path, 1)
    ctx = make_context(tmp_path, 1)
    state = state_for_unit(leader, unit=1, leader=False, container=make_container(fs))

    out = ctx.run(ctx.on.config_changed(), rerun(state, secrets={emptied}))

    assert out.unit_status == ops.WaitingStatus(
        'waiting for the leader to repair the password secret'
    )


def test_other_secrets_removal_is_left_alone(ctx: Ctx, fs: UnitFilesystem) -> None:
    state = deploy_leader(ctx, fs)
    other = testing.Secret({'token': 'x'}, owner='app', label='something-else')
    ctx.run(ctx.on.secret_remove(other, revision=1), rerun(state, secrets={*state.secrets, other}))
    assert ctx.removed_secret_revisions == []


# ------------------------------------------------ leadership while Blocked


def test_a_leader_change_while_blocked_still_makes_a_primary(tmp_path: Path) -> None:
    """A typo in the config must not leave the application without a primary."""
    leader = deploy_leader(
        make_context(tmp_path, 0), make_filesystem(tmp_path, 0), maxmemory='5mb'
    )
    ctx = make_context(tmp_path, 1)
    fs = make_filesystem(tmp_path, 1)
    follower = ctx.run(
        ctx.on.config_changed(),
        state_for_unit(leader, unit=1, leader=False, container=make_container(fs)),
    )
    blocked = ctx.run(ctx.on.config_changed(), rerun(follower, config={'maxmemory': '5 mb'}))
    assert 'replicaof' in fs.read_config()

    # Unit 0 goes away; Juju elects unit 1 while its config is still invalid.
    out = ctx.run(ctx.on.leader_elected(), rerun(blocked, leader=True))

    text = fs.read_config()
    assert 'replicaof' not in text
    assert 'maxmemory 5mb\n' in text, 'the last good options, not the invalid ones'
    assert peer_app_data(out)['leader-unit'] == f'"{unit_name(1)}"'
    assert out.unit_status == ops.BlockedStatus(
        "invalid config: maxmemory='5 mb': use empty for no limit, or a size such as 100mb or 1gb"
    )


def test_an_invalid_password_source_is_never_guessed(
    ctx: Ctx, fs: UnitFilesystem, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With admin-password itself invalid, any password would be a guess: keep the file."""
    monkeypatch.setenv('SCENARIO_SKIP_CONSISTENCY_CHECKS', '1')
    secret = user_secret('users-own')
    state = ctx.run(
        ctx.on.config_changed(),
        leader_state(fs, config={'admin-password': secret.id}, secrets={secret}),
    )
    last_good = fs.read_config()

    out = ctx.run(
        ctx.on.config_changed(),
        rerun(state, config={'admin-password': 'hunter2', 'log-level': 'loud'}),
    )

    assert fs.read_config() == last_good
    assert isinstance(out.unit_status, ops.BlockedStatus)


def test_no_last_good_config_means_nothing_is_rendered(ctx: Ctx, fs: UnitFilesystem) -> None:
    out = ctx.run(ctx.on.leader_elected(), leader_state(fs, config={'log-level': 'loud'}))
    assert not fs.config_file.exists()
    assert isinstance(out.unit_status, ops.BlockedStatus)


# ------------------------------------------------------------ the app secret


def test_a_secret_without_its_label_is_found_by_the_published_id_and_labelled(
    tmp_path: Path,
) -> None:
    unlabelled = testing.Secret({'password': 'z' * 48}, owner='app')
    ctx = make_context(tmp_path, 1)
    fs = make_filesystem(tmp_path, 1)
    published = make_peer_relation(
        1,
        app_data={
            'leader-unit': f'"{unit_name(0)}"',
            'leader-address': '"old.example"',
            'password-secret-id': f'"{unlabelled.id}"',
        },
    )

    out = ctx.run(
        ctx.on.leader_elected(),
        leader_state(fs, relations={published}, secrets={unlabelled}),
    )

    (secret,) = out.secrets
    assert secret.id == unlabelled.id
    assert secret.label == 'admin-password'
    assert f'requirepass "{"z" * 48}"' in fs.read_config()


def test_leader_duties_that_juju_refuses_become_a_status(
    ctx: Ctx, fs: UnitFilesystem, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*_: object, **__: object) -> None:
        raise ops.RelationDataAccessError('relation data is read-only')

    monkeypatch.setattr(ops.Relation, 'save', refuse)
    out = ctx.run(ctx.on.leader_elected(), leader_state(fs))
    assert out.unit_status == ops.WaitingStatus(
        'leader duties failed (RelationDataAccessError); retrying'
    )


# ---------------------------------------------------- review follow-ups


def test_a_rotation_whose_announcement_failed_is_announced_by_the_next_hook(
    ctx: Ctx, fs: UnitFilesystem, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = deploy_leader(ctx, fs)
    save = ops.Relation.save

    def refuse(*_: object, **__: object) -> None:
        raise ops.RelationDataAccessError('relation data is read-only right now')

    monkeypatch.setattr(ops.Relation, 'save', refuse)
    with pytest.raises(testing.ActionFailed) as failure:
        ctx.run(ctx.on.action('rotate-password'), state)
    assert failure.value.message.startswith(
        'The password was rotated, but the other units were not told yet'
    )
    after_action = failure.value.state
    assert isinstance(after_action, testing.State)
    assert peer_app_data(after_action)['password-revision'] == '1'

    monkeypatch.setattr(ops.Relation, 'save', save)
    out = ctx.run(ctx.on.update_status(), after_action)

    assert peer_app_data(out)['password-revision'] == '2'
    new = password_secret(out).latest_content['password']
    assert f'requirepass "{new}"' in fs.read_config()


def test_the_label_wins_over_a_published_id(tmp_path: Path) -> None:
    """Two live secrets: the app's labelled one is the password, whatever was published."""
    labelled = testing.Secret({'password': 'l' * 48}, owner='app', label='admin-password')
    other = testing.Secret({'password': 'o' * 48}, owner='app')
    fs = make_filesystem(tmp_path)
    relation = make_peer_relation(
        app_data={
            'leader-unit': f'"{unit_name(1)}"',
            'leader-address': '"old.example"',
            'password-secret-id': f'"{other.id}"',
        }
    )
    ctx = make_context(tmp_path)
    out = ctx.run(
        ctx.on.leader_elected(), leader_state(fs, relations={relation}, secrets={labelled, other})
    )
    assert peer_app_data(out)['password-secret-id'] == f'"{labelled.id}"'
    assert f'requirepass "{"l" * 48}"' in fs.read_config()


def test_with_neither_label_nor_published_secret_a_new_password_is_made(
    ctx: Ctx, fs: UnitFilesystem
) -> None:
    """The secret was removed by hand: nothing is left to reuse, so the leader makes one."""
    relation = make_peer_relation(
        app_data={
            'leader-unit': f'"{unit_name(1)}"',
            'leader-address': '"old.example"',
            'password-secret-id': '"secret:0000000000000000000b"',
        }
    )
    out = ctx.run(ctx.on.leader_elected(), leader_state(fs, relations={relation}))
    secret = password_secret(out)
    assert peer_app_data(out)['password-secret-id'] == f'"{secret.id}"'
    assert f'requirepass "{secret.latest_content["password"]}"' in fs.read_config()


def test_repairing_the_secret_also_checks_leadership_first(
    ctx: Ctx, fs: UnitFilesystem, side_effects: SideEffects, lease: Lease
) -> None:
    broken = testing.Secret({'other': 'x'}, owner='app', label='admin-password')
    lease.run_out_after(1)
    out = ctx.run(ctx.on.config_changed(), leader_state(fs, secrets={broken}))
    assert 'set_content' not in side_effects.calls
    assert out.unit_status == ops.WaitingStatus('waiting for the leader to publish its address')


def test_a_follower_never_removes_secret_revisions(
    tmp_path: Path, side_effects: SideEffects, caplog: pytest.LogCaptureFixture
) -> None:
    leader = deploy_leader(make_context(tmp_path, 0), make_filesystem(tmp_path, 0))
    ctx = make_context(tmp_path, 1)
    state = state_for_unit(
        leader, unit=1, leader=False, container=make_container(make_filesystem(tmp_path, 1))
    )
    side_effects.calls.clear()
    ctx.run(ctx.on.secret_remove(password_secret(leader), revision=1), state)
    assert ctx.removed_secret_revisions == []
    # Not even tried: Juju would refuse it (the app owns the secret), and the log would warn.
    assert 'remove_revision' not in side_effects.calls
    assert 'Could not remove' not in caplog.text


def test_stored_options_from_an_older_revision_do_not_break_hooks(
    ctx: Ctx, fs: UnitFilesystem
) -> None:
    state = deploy_leader(ctx, fs)
    stale = testing.StoredState(
        '_stored',
        owner_path='ValkeyLeaderCharm',
        content={'last_good_options': {'log_level': 'notice', 'io_threads': '4'}},
    )
    others = {s for s in state.stored_states if s.owner_path != 'ValkeyLeaderCharm'}
    out = ctx.run(
        ctx.on.config_changed(),
        rerun(state, config={'log-level': 'loud'}, stored_states={*others, stale}),
    )
    assert isinstance(out.unit_status, ops.BlockedStatus)


def test_a_fault_does_not_hide_an_invalid_config(
    ctx: Ctx, fs: UnitFilesystem, kubernetes: FakeKubernetes
) -> None:
    kubernetes.fail_with = 500
    out = ctx.run(ctx.on.leader_elected(), leader_state(fs, config={'log-level': 'loud'}))
    assert isinstance(out.unit_status, ops.BlockedStatus)
    assert out.unit_status.message.startswith("invalid config: log-level='loud'")


def test_an_unreadable_version_is_not_a_fault(tmp_path: Path) -> None:
    ctx = make_context(tmp_path)
    fs = make_filesystem(tmp_path)
    failing = make_container(
        fs,
        execs={
            testing.Exec(['valkey-server', '--version'], return_code=1, stderr='boom'),
        },
    )
    out = ctx.run(ctx.on.leader_elected(), leader_state(fs, containers={failing}))
    assert out.unit_status == ops.ActiveStatus('primary')
    assert out.workload_version == ''


def test_rotate_password_with_an_invalid_admin_password_says_to_fix_the_config(
    ctx: Ctx, fs: UnitFilesystem, side_effects: SideEffects, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As in test_malformed_admin_password_blocks: Juju would refuse it first.
    monkeypatch.setenv('SCENARIO_SKIP_CONSISTENCY_CHECKS', '1')
    state = rerun(deploy_leader(ctx, fs), config={'admin-password': 'hunter2'})
    side_effects.calls.clear()

    with pytest.raises(testing.ActionFailed) as failure:
        ctx.run(ctx.on.action('rotate-password'), state)

    assert failure.value.message.startswith('Fix the config first: admin-password is not')
    assert 'set_content' not in side_effects.calls


def test_rotate_password_that_juju_refuses_says_it_was_not_rotated(
    ctx: Ctx, fs: UnitFilesystem, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = deploy_leader(ctx, fs)
    before = password_secret(state).latest_content

    def refuse(secret: ops.Secret, content: dict[str, str]) -> None:
        raise ops.ModelError('secret-set refused')

    monkeypatch.setattr(ops.Secret, 'set_content', refuse)
    with pytest.raises(testing.ActionFailed) as failure:
        ctx.run(ctx.on.action('rotate-password'), state)

    assert failure.value.message == 'The password was not rotated: Juju refused (ModelError)'
    assert isinstance(failure.value.state, testing.State)
    assert password_secret(failure.value.state).latest_content == before


def test_a_revision_juju_will_not_remove_is_left_for_the_next_secret_remove(
    ctx: Ctx, fs: UnitFilesystem, monkeypatch: pytest.MonkeyPatch
) -> None:
    rotated = ctx.run(ctx.on.action('rotate-password'), deploy_leader(ctx, fs))
    state = ctx.run(ctx.on.update_status(), rotated)

    def refuse(event: ops.SecretRemoveEvent) -> None:
        raise ops.ModelError('secret-remove refused')

    monkeypatch.setattr(ops.SecretRemoveEvent, 'remove_revision', refuse)
    out = ctx.run(ctx.on.secret_remove(password_secret(state), revision=1), state)

    assert ctx.removed_secret_revisions == []
    assert out.unit_status == ops.ActiveStatus('primary')
