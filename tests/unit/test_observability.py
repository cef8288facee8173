# Copyright 2026 The valkey-leader-k8s authors
# See LICENSE file for licensing details.

"""COS with ops.testing: what each unit writes to the COS relations, and the exporter.

The leader writes the application databags (scrape jobs, metadata, rules; the
dashboard), every unit its own address; a new leader finds them in place and
rewrites nothing unless they changed; the exporter gets its password in a
file, never on its command line, and its Valkey user is in every unit's file.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import lzma
from pathlib import Path
from typing import Any

import ops
import pytest
from ops import testing

from charm import ValkeyLeaderCharm
from leadership import LeadershipLostError
from observability import dashboard, logs, scrape
from workload import exporter

from .conftest import (
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
)

Ctx = testing.Context[ValkeyLeaderCharm]
APP = 'valkey-leader-k8s'
MODEL = testing.Model(name='demo', uuid='6e1b2f3a-7c4d-4e5f-8a9b-0c1d2e3f4a5b')
"""One model for every unit of a test: the topology is the model's."""


def metrics_relation(**kwargs: object) -> testing.Relation:
    return testing.Relation(
        'metrics-endpoint',
        id=901,
        remote_app_name='prometheus',
        remote_units_data={0: {}},
        **kwargs,  # type: ignore[arg-type]
    )


def dashboard_relation(**kwargs: object) -> testing.Relation:
    return testing.Relation('grafana-dashboard', id=902, remote_app_name='grafana', **kwargs)  # type: ignore[arg-type]


def exporter_container(tmp_path: Path, **kwargs: object) -> testing.Container:
    """The exporter's container, its /tmp/redis-exporter backed by a real directory."""
    directory = tmp_path / 'exporter-tmp'
    directory.mkdir(exist_ok=True)
    params: dict[str, object] = {
        'can_connect': True,
        'mounts': {
            'tmp': testing.Mount(
                location=exporter.PASSWORD_FILE.rsplit('/', 1)[0], source=directory
            )
        },
    }
    params.update(kwargs)
    return testing.Container('redis-exporter', **params)  # type: ignore[arg-type]


@pytest.fixture
def app_writes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The keys written to any application databag during a run (what reaches Juju)."""
    writes: list[str] = []
    original = ops.model.RelationDataContent._commit  # pyright: ignore[reportPrivateUsage]

    def recording(self: ops.model.RelationDataContent, changes: dict[str, str]) -> None:
        if isinstance(self._entity, ops.Application):  # pyright: ignore[reportPrivateUsage]
            writes.extend(changes)
        original(self, changes)

    monkeypatch.setattr(ops.model.RelationDataContent, '_commit', recording)
    return writes


def follower_of(leader_out: testing.State, fs: UnitFilesystem, *relations: testing.Relation):
    """Unit 1's view once the leader's hook ended (the shared databag and secrets)."""
    return testing.State(
        leader=False,
        relations={
            make_peer_relation(1, app_data=peer_app_data(leader_out), relation_id=1),
            *relations,
        },
        secrets=leader_out.secrets,
        containers={make_container(fs)},
    )


# -------------------------------------------------------------- metrics-endpoint


def test_the_leader_publishes_the_jobs_the_metadata_and_the_rules(ctx: Ctx, fs: UnitFilesystem):
    relation = metrics_relation()
    out = ctx.run(ctx.on.relation_joined(relation, remote_unit=0), leader_state(fs, relations={
        make_peer_relation(0, relation_id=1), relation}))  # fmt: skip
    app_data = out.get_relation(901).local_app_data
    assert json.loads(app_data['scrape_jobs'])[0]['static_configs'] == [{'targets': ['*:9121']}]
    metadata = json.loads(app_data['scrape_metadata'])
    assert (metadata['application'], metadata['unit'], metadata['charm_name']) == (
        APP,
        f'{APP}/0',
        APP,
    )
    groups = json.loads(app_data['alert_rules'])['groups']
    assert all(rule['labels']['juju_application'] == APP for g in groups for rule in g['rules'])
    unit_data = out.get_relation(901).local_unit_data
    assert unit_data['prometheus_scrape_unit_name'] == f'{APP}/0'
    assert unit_data['prometheus_scrape_unit_address'].startswith(f'{APP}-0.{APP}-endpoints.')


def test_a_follower_writes_its_own_address_and_nothing_else(tmp_path: Path, fs: UnitFilesystem):
    leader_ctx = make_context(tmp_path, 0)
    leader_out = leader_ctx.run(leader_ctx.on.leader_elected(), leader_state(fs))
    follower_ctx, follower_fs = make_context(tmp_path, 1), make_filesystem(tmp_path, 1)
    relation = metrics_relation()
    out = follower_ctx.run(
        follower_ctx.on.relation_joined(relation, remote_unit=0),
        follower_of(leader_out, follower_fs, relation),
    )
    assert dict(out.get_relation(901).local_app_data) == {}
    unit_data = out.get_relation(901).local_unit_data
    assert unit_data['prometheus_scrape_unit_name'] == f'{APP}/1'
    assert unit_data['prometheus_scrape_unit_address'].startswith(f'{APP}-1.{APP}-endpoints.')


def test_a_new_leader_finds_the_data_in_place_and_rewrites_nothing(
    tmp_path: Path, fs: UnitFilesystem, app_writes: list[str]
):
    first_ctx = make_context(tmp_path, 0)
    relation = metrics_relation()
    first = first_ctx.run(
        first_ctx.on.relation_joined(relation, remote_unit=0),
        leader_state(fs, relations={make_peer_relation(0, relation_id=1), relation}, model=MODEL),
    )
    published = dict(first.get_relation(901).local_app_data)
    # Unit 2 is elected; the relation's app databag is what unit 0 left.
    new_ctx, new_fs = make_context(tmp_path, 2), make_filesystem(tmp_path, 2)
    inherited = metrics_relation(local_app_data=published)
    state = testing.State(
        leader=True,
        relations={make_peer_relation(2, app_data=peer_app_data(first), relation_id=1), inherited},
        secrets=first.secrets,
        containers={make_container(new_fs)},
        model=MODEL,
    )
    app_writes.clear()
    out = new_ctx.run(new_ctx.on.leader_elected(), state)
    assert dict(out.get_relation(901).local_app_data) == published  # unit 0 still named
    assert [key for key in app_writes if key in published] == []
    assert json.loads(published['scrape_metadata'])['unit'] == f'{APP}/0'


def test_a_new_leader_rewrites_what_changed(tmp_path: Path, fs: UnitFilesystem):
    stale = scrape.app_data(
        scrape.Topology(
            model='m', model_uuid='u', application=APP, charm_name=APP, unit=f'{APP}/0'
        )
    )
    ctx = make_context(tmp_path, 2)
    relation = metrics_relation(local_app_data=stale)
    out = ctx.run(
        ctx.on.leader_elected(),
        leader_state(fs, 2, relations={make_peer_relation(2, relation_id=1), relation}),
    )
    metadata = json.loads(out.get_relation(901).local_app_data['scrape_metadata'])
    assert metadata['unit'] == f'{APP}/2'
    assert metadata['model'] != 'm'


def test_a_leader_that_lost_its_lease_writes_no_app_data(
    ctx: Ctx, fs: UnitFilesystem, lease: Lease
):
    relation = metrics_relation()
    state = leader_state(fs, relations={make_peer_relation(0, relation_id=1), relation})
    lease.run_out()
    out = ctx.run(ctx.on.relation_joined(relation, remote_unit=0), state)
    assert dict(out.get_relation(901).local_app_data) == {}
    # Its own address is its own business.
    assert out.get_relation(901).local_unit_data['prometheus_scrape_unit_name'] == f'{APP}/0'


# -------------------------------------------------------------- grafana-dashboard


def test_the_leader_publishes_the_dashboard_and_a_new_leader_keeps_it(
    tmp_path: Path, fs: UnitFilesystem, app_writes: list[str]
):
    ctx = make_context(tmp_path, 0)
    relation = dashboard_relation()
    out = ctx.run(
        ctx.on.relation_joined(relation, remote_unit=0),
        leader_state(fs, relations={make_peer_relation(0, relation_id=1), relation}, model=MODEL),
    )
    published = dict(out.get_relation(902).local_app_data)
    (template,) = json.loads(published['dashboards'])['templates'].values()
    assert json.loads(dashboard.decompress(template['content']))['uid'] == 'valkey-leader-k8s'

    new_ctx, new_fs = make_context(tmp_path, 2), make_filesystem(tmp_path, 2)
    state = testing.State(
        leader=True,
        relations={
            make_peer_relation(2, app_data=peer_app_data(out), relation_id=1),
            dashboard_relation(local_app_data=published),
        },
        secrets=out.secrets,
        containers={make_container(new_fs)},
        model=MODEL,
    )
    app_writes.clear()
    new_out = new_ctx.run(new_ctx.on.leader_elected(), state)
    assert dict(new_out.get_relation(902).local_app_data) == published
    assert 'dashboards' not in app_writes


def test_a_new_leader_keeps_a_dashboard_compressed_differently(
    tmp_path: Path, fs: UnitFilesystem, app_writes: list[str]
):
    """Another build of liblzma may compress the same dashboard to other bytes."""
    wanted = json.loads(dashboard.app_data(APP)['dashboards'])
    for template in wanted['templates'].values():
        text = dashboard.decompress(template['content'])
        template['content'] = base64.b64encode(lzma.compress(text.encode(), preset=0)).decode()
    inherited = {'dashboards': json.dumps(wanted)}
    ctx = make_context(tmp_path, 2)
    state = leader_state(
        fs,
        2,
        relations={
            make_peer_relation(2, relation_id=1),
            dashboard_relation(local_app_data=inherited),
        },
    )
    out = ctx.run(ctx.on.leader_elected(), state)
    assert dict(out.get_relation(902).local_app_data) == inherited
    assert 'dashboards' not in app_writes


def test_publishing_checks_leadership_right_before_each_app_write(ctx: Ctx, fs: UnitFilesystem):
    relations = {make_peer_relation(0, relation_id=1), metrics_relation(), dashboard_relation()}
    with ctx(ctx.on.update_status(), leader_state(fs, relations=relations)) as manager:
        charm = manager.charm
        topology = scrape.Topology.of(charm)

        def lost() -> None:
            raise LeadershipLostError

        scraped = charm.model.relations['metrics-endpoint']
        with pytest.raises(LeadershipLostError):
            scrape.publish(scraped, charm.app, charm.unit, topology, 'a', before_write=lost)
        with pytest.raises(LeadershipLostError):
            dashboard.publish(
                charm.model.relations['grafana-dashboard'], charm.app, APP, before_write=lost
            )
        assert dict(scraped[0].data[charm.app]) == {}
        assert dict(charm.model.relations['grafana-dashboard'][0].data[charm.app]) == {}


def test_a_follower_never_writes_the_dashboard(tmp_path: Path, fs: UnitFilesystem):
    leader_ctx = make_context(tmp_path, 0)
    leader_out = leader_ctx.run(leader_ctx.on.leader_elected(), leader_state(fs))
    ctx, follower_fs = make_context(tmp_path, 1), make_filesystem(tmp_path, 1)
    relation = dashboard_relation()
    out = ctx.run(
        ctx.on.relation_joined(relation, remote_unit=0),
        follower_of(leader_out, follower_fs, relation),
    )
    assert dict(out.get_relation(902).local_app_data) == {}


# -------------------------------------------------------------- logging


def loki_relation(*urls: str, **kwargs: object) -> testing.Relation:
    return testing.Relation(
        'logging',
        id=903,
        remote_app_name='loki',
        remote_units_data={i: {'endpoint': json.dumps({'url': u})} for i, u in enumerate(urls)},
        **kwargs,  # type: ignore[arg-type]
    )


def log_targets(state: testing.State) -> dict[str, dict[str, Any]]:
    plan: dict[str, Any] = dict(state.get_container('valkey').plan.to_dict())
    return plan['log-targets']


def test_every_unit_forwards_valkey_logs_to_each_loki_unit_without_a_restart(
    ctx: Ctx, fs: UnitFilesystem, side_effects: SideEffects
):
    running = ctx.run(ctx.on.update_status(), leader_state(fs))
    side_effects.calls.clear()
    relation = loki_relation('http://loki-0:3100/loki/api/v1/push')
    state = dataclasses.replace(running, relations={*running.relations, relation})
    out = ctx.run(ctx.on.relation_changed(relation, remote_unit=0), state)
    target = log_targets(out)['loki/0']
    assert (target['type'], target['location'], target['services']) == (
        'loki',
        'http://loki-0:3100/loki/api/v1/push',
        ['all'],
    )
    assert target['labels']['juju_unit'] == f'{APP}/0'
    assert side_effects.count('add_layer') == 1
    for call in ('replan', 'restart', 'start'):
        assert side_effects.count(call) == 0


def test_the_last_loki_leaving_switches_its_target_off(ctx: Ctx, fs: UnitFilesystem):
    relation = loki_relation('http://loki-0:3100/loki/api/v1/push')
    running = ctx.run(
        ctx.on.relation_changed(relation, remote_unit=0),
        leader_state(fs, relations={make_peer_relation(0, relation_id=1), relation}),
    )
    out = ctx.run(ctx.on.relation_broken(relation), running)
    target = log_targets(out)['loki/0']
    assert target['services'] == ['-all']


def test_a_loki_endpoint_that_is_not_a_url_is_ignored(ctx: Ctx, fs: UnitFilesystem):
    relation = loki_relation('file:///etc/passwd')
    out = ctx.run(
        ctx.on.relation_changed(relation, remote_unit=0),
        leader_state(fs, relations={make_peer_relation(0, relation_id=1), relation}),
    )
    assert 'log-targets' not in out.get_container('valkey').plan.to_dict()


# -------------------------------------------------------------- the exporter


def exporter_files(tmp_path: Path) -> dict[str, str]:
    return json.loads((tmp_path / 'exporter-tmp' / 'password.json').read_text())


def test_the_exporter_gets_its_password_in_a_file_and_its_user_on_every_unit(
    ctx: Ctx, fs: UnitFilesystem, tmp_path: Path
):
    state = leader_state(fs, containers={make_container(fs), exporter_container(tmp_path)})
    out = ctx.run(ctx.on.pebble_ready(exporter_container(tmp_path)), state)
    admin = password_secret(out).latest_content['password']
    ((url, password),) = exporter_files(tmp_path).items()
    assert url == 'redis://localhost:6379'
    assert password != admin
    assert len(password) == 64
    # Valkey checks the password against the SHA-256 in the unit's file.
    digest = hashlib.sha256(password.encode()).hexdigest()
    user_lines = [line for line in fs.read_config().splitlines() if line.startswith('user ')]
    assert user_lines == [f'user charm-metrics on #{digest} resetkeys resetchannels '
                          f'{exporter.COMMANDS}']  # fmt: skip
    service = out.get_container('redis-exporter').plan.services['redis-exporter']
    assert password not in service.command
    assert admin not in service.command
    assert not service.environment
    assert '-redis.password-file=/tmp/redis-exporter/password.json' in service.command
    assert isinstance(out.unit_status, ops.ActiveStatus)


def test_a_rotated_password_reaches_the_exporter_which_restarts(
    ctx: Ctx, fs: UnitFilesystem, tmp_path: Path, side_effects: SideEffects
):
    state = leader_state(fs, containers={make_container(fs), exporter_container(tmp_path)})
    running = ctx.run(ctx.on.pebble_ready(exporter_container(tmp_path)), state)
    before = exporter_files(tmp_path)
    side_effects.calls.clear()
    ctx.run(ctx.on.action('rotate-password'), running)
    assert exporter_files(tmp_path) != before
    assert side_effects.count('restart') >= 1


def test_a_follower_configures_its_exporter_from_the_password_it_reads(
    tmp_path: Path, fs: UnitFilesystem
):
    leader_ctx = make_context(tmp_path, 0)
    leader_out = leader_ctx.run(leader_ctx.on.leader_elected(), leader_state(fs))
    ctx, follower_fs = make_context(tmp_path, 1), make_filesystem(tmp_path, 1)
    follower = follower_of(leader_out, follower_fs)
    follower = dataclasses.replace(
        follower, containers={make_container(follower_fs), exporter_container(tmp_path)}
    )
    ctx.run(ctx.on.pebble_ready(exporter_container(tmp_path)), follower)
    ((_, password),) = exporter_files(tmp_path).items()
    assert password == exporter.password(password_secret(leader_out).latest_content['password'])


def test_an_exporter_pebble_error_is_a_waiting_status_not_a_traceback(
    ctx: Ctx, fs: UnitFilesystem, tmp_path: Path
):
    metrics = exporter_container(tmp_path)
    state = leader_state(fs, containers={make_container(fs), metrics})
    out = ctx.run(ctx.on.pebble_ready(metrics), state)
    gone = dataclasses.replace(out.get_container('redis-exporter'), can_connect=False)
    later = ctx.run(
        ctx.on.update_status(),
        dataclasses.replace(out, containers={out.get_container('valkey'), gone}),
    )
    assert later.unit_status == ops.WaitingStatus(
        'waiting for Pebble in the redis-exporter container'
    )


@pytest.mark.parametrize('rules', ['on #00 ~* +@all', 'on #' + '0' * 64 + ' ~* -@all +get'])
def test_a_metrics_user_that_could_read_keys_is_refused(rules: str):
    from workload.config import MetricsUser

    with pytest.raises(ValueError, match='not a read-only metrics user'):
        MetricsUser(name='charm-metrics', acl_rules=rules)


def test_the_log_module_names_the_endpoint_the_charm_observes():
    import charm

    assert (charm.METRICS_ENDPOINT, charm.DASHBOARD_ENDPOINT, charm.LOGGING_ENDPOINT) == (
        scrape.ENDPOINT,
        dashboard.ENDPOINT,
        logs.ENDPOINT,
    )


def test_the_exporter_logs_are_forwarded_too_once_its_pebble_answers(
    ctx: Ctx, fs: UnitFilesystem, tmp_path: Path
):
    relation = loki_relation('http://loki-0:3100/loki/api/v1/push')
    metrics = exporter_container(tmp_path)
    state = leader_state(
        fs,
        relations={make_peer_relation(0, relation_id=1), relation},
        containers={make_container(fs), metrics},
    )
    out = ctx.run(ctx.on.pebble_ready(metrics), state)
    plan: dict[str, Any] = dict(out.get_container('redis-exporter').plan.to_dict())
    assert plan['log-targets']['loki/0']['services'] == ['all']
    assert log_targets(out)['loki/0']['services'] == ['all']
