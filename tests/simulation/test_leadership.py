# Copyright 2026 The valkey-leader-k8s authors
# See LICENSE file for licensing details.

"""Leadership on three units: the real charm, real servers, Juju's event order.

Each scenario asserts the outcome on the running servers and how many hooks
the application needed to converge. The hook counts are exact: the driver is
deterministic, so a change in them means the charm reacts differently.
"""

from __future__ import annotations

import json

import ops
import pytest
import redis.exceptions

from ..workload import valkey_server
from ..workload.charm_unit import APP, unit_name
from .driver import Application, Settled, UnitView

BEFORE = {f'before:{i}': f'written on the first primary {i}' for i in range(50)}


def write(app: Application, unit_id: int, items: dict[str, str]) -> None:
    with app.server(unit_id).client(app.password()) as client:
        for key, value in items.items():
            client.set(key, value)


def assert_everywhere(app: Application, items: dict[str, str], *, timeout: float = 20.0) -> None:
    """Every live unit's server holds every key (replication is asynchronous: wait)."""
    password = app.password()

    def holds_all(server: valkey_server.ValkeyServer) -> bool | None:
        with server.client(password) as client:
            return True if all(client.get(k) == v for k, v in items.items()) else None

    for unit in app.live_units():
        valkey_server.eventually(
            lambda server=unit.server: holds_all(server),
            timeout=timeout,
            what=f'{len(items)} keys on {unit.name}',
        )


def wait_in_sync(app: Application) -> list[UnitView]:
    """Wait until every replica's link to its primary is up; return what the servers say."""

    def synced() -> list[UnitView] | None:
        views = [view for view in app.observe() if view.role != 'down']
        return views if all(v.role == 'primary' or v.link == 'up' for v in views) else None

    return valkey_server.eventually(synced, timeout=20, what='replicas in sync')


def assert_primary_is(app: Application, leader_id: int) -> None:
    """The leader's server is the only primary; every other live server replicates from it."""
    leader = unit_name(leader_id)
    for view in wait_in_sync(app):
        if view.unit == leader:
            assert (view.role, view.status) == ('primary', 'active: primary')
        else:
            assert (view.role, view.replicating_from, view.link) == ('replica', leader, 'up')
            assert view.status == f'active: replica of {leader}'


def mismatches(app: Application, *, since: int = 0) -> list[str]:
    """Hooks after which an active unit's status claims a role its file does not give it."""
    return [
        f'#{hook.number} {hook.unit} {hook.event}: status {hook.status.message!r}, '
        f'file makes it {hook.file_role!r}'
        for hook in app.hooks[since:]
        if isinstance(hook.status, ops.ActiveStatus) and hook.status.message != hook.file_role
    ]


def deploy(app: Application) -> Settled:
    app.deploy(leader=0)
    settled = app.settle()
    assert mismatches(app) == []
    write(app, 0, BEFORE)
    assert_everywhere(app, BEFORE)
    return settled


def test_deploy_three_units_one_primary_two_replicas(app: Application) -> None:
    settled = deploy(app)

    # 3 units x (install, relation-created, config-changed, start, pebble-ready)
    # + leader-elected on unit 0; then one update-status each changes nothing.
    assert settled == Settled(hooks=16, rounds=7, checks=3)
    assert_primary_is(app, 0)
    assert [view.keys for view in app.observe()] == [len(BEFORE)] * 3
    # The leader pointed <app>-primary at its own pod.
    selector = app.kubernetes.services[f'{APP}-primary']['spec']['selector']
    assert selector['statefulset.kubernetes.io/pod-name'] == f'{APP}-0'


def test_a_new_leader_becomes_primary_and_nothing_is_lost(app: Application) -> None:
    deploy(app)
    password = app.password()
    secret_revisions = app.password_revisions()

    app.remove_unit(0)
    app.elect(1)
    settled = app.settle()

    # relation-departed on units 1 and 2 (unit 1 already leads, so it takes over
    # right there), leader-elected on unit 1 (nothing left to do), and
    # relation-changed on unit 2 when unit 1 published itself.
    assert settled == Settled(hooks=4, rounds=3, checks=2)
    assert_primary_is(app, 1)
    assert app.password() == password
    assert app.password_revisions() == secret_revisions
    assert json.loads(app.app_data['leader-unit']) == unit_name(1)
    assert_everywhere(app, BEFORE)
    after = {f'after:{i}': f'written on the new primary {i}' for i in range(20)}
    write(app, 1, after)
    assert_everywhere(app, after)
    selector = app.kubernetes.services[f'{APP}-primary']['spec']['selector']
    assert selector['statefulset.kubernetes.io/pod-name'] == f'{APP}-1'


def test_no_status_claims_a_role_the_file_does_not_give_during_a_leader_change(
    app: Application,
) -> None:
    deploy(app)
    hooks_before = len(app.hooks)
    app.remove_unit(0)
    app.elect(1)
    app.settle()

    assert mismatches(app, since=hooks_before) == []


def test_the_old_leader_comes_back_as_a_replica_and_catches_up(app: Application) -> None:
    deploy(app)
    app.remove_unit(0)
    app.elect(1)
    app.settle()
    while_away = {f'away:{i}': f'written while unit 0 was away {i}' for i in range(20)}
    write(app, 1, while_away)

    hooks_before = len(app.hooks)
    app.rejoin(0)
    settled = app.settle()

    # Only the returning unit's own deploy events: it does not lead, so the
    # databag does not change and no other unit is woken up.
    assert settled == Settled(hooks=5, rounds=6, checks=3)
    assert mismatches(app, since=hooks_before) == []
    assert_primary_is(app, 1)
    assert_everywhere(app, {**BEFORE, **while_away})
    with (
        app.server(0).client(app.password()) as client,
        pytest.raises(redis.exceptions.ReadOnlyError),
    ):
        client.set('on-the-old-leader', 'refused')


def test_rotate_password_reaches_every_unit_and_the_old_one_is_refused(
    app: Application,
) -> None:
    deploy(app)
    old = app.password()

    results = app.run_action(0, 'rotate-password')
    settled = app.settle()

    new = app.password()
    assert new != old
    assert results['result'] == 'password rotated; every unit restarts with it'
    # The action, relation-changed on the two replicas (the generation bump),
    # and secret-remove of revision 1 once every unit tracks revision 2.
    assert settled == Settled(hooks=4, rounds=4, checks=6)
    assert mismatches(app) == []
    assert app.password_revisions() == {2: new}
    for unit in app.live_units():
        with (
            unit.server.client(old) as client,
            pytest.raises(redis.exceptions.AuthenticationError),
        ):
            client.ping()
        with unit.server.client(new) as client:
            assert client.ping()
    assert_primary_is(app, 0)
    assert_everywhere(app, BEFORE)
    rotated = {f'rotated:{i}': str(i) for i in range(10)}
    write(app, 0, rotated)
    assert_everywhere(app, rotated)
    # Neither password ever left the secret store and the files.
    said = [repr(hook) for hook in app.hooks]
    said += [line.message for unit in app.units.values() for line in unit.charm.ctx.juju_log]
    said += [*app.app_data.values(), json.dumps(results)]
    for text in said:
        assert old not in text
        assert new not in text


def test_invalid_config_blocks_every_unit_and_keeps_the_servers_running(
    app: Application,
) -> None:
    deploy(app)
    files = {unit.name: unit.charm.read_config() for unit in app.live_units()}
    pids = {unit.name: unit.server.pid for unit in app.live_units()}

    app.configure(maxmemory='lots')
    blocked = app.settle()

    assert blocked == Settled(hooks=3, rounds=2, checks=3)
    for unit in app.live_units():
        assert app.status(unit.unit_id) == ops.BlockedStatus(
            "invalid config: maxmemory='lots': use empty for no limit, "
            'or a size such as 100mb or 1gb'
        )
        assert unit.charm.read_config() == files[unit.name]
        assert unit.server.running
        assert unit.server.pid == pids[unit.name]
    assert_primary_is_still_serving(app)

    app.configure(maxmemory='64mb')
    recovered = app.settle()

    assert recovered == Settled(hooks=3, rounds=2, checks=3)
    assert mismatches(app) == []
    assert_primary_is(app, 0)
    for unit in app.live_units():
        assert unit.server.pid != pids[unit.name]
        with unit.server.client(app.password()) as client:
            assert client.config_get('maxmemory') == str(64 * 1024 * 1024)
    assert_everywhere(app, BEFORE)


def assert_primary_is_still_serving(app: Application) -> None:
    """Blocked units keep their last good file: data is there and replication still works."""
    assert_everywhere(app, BEFORE)
    during = {'while-blocked': 'still replicated'}
    write(app, 0, during)
    assert_everywhere(app, during)
    views = {view.unit: view for view in app.observe()}
    assert views[unit_name(0)].role == 'primary'
    assert {views[unit_name(i)].replicating_from for i in (1, 2)} == {unit_name(0)}
