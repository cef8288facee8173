# Copyright 2026 The valkey-leader-k8s authors
# See LICENSE file for licensing details.

"""Leadership on three units: the real charm, real servers, Juju's event order.

Each scenario asserts outcomes: who is primary (as the servers report it),
that the data is there and replicates, that ``<app>-primary`` selects the
leader's pod, and that no active status claims a role the unit's file does not
give it. None asserts how many hooks or rounds it took: that depends on the
driver's scheduling, not on what the charm guarantees.

The leadership changes are the ones Juju and Kubernetes produce (see
``driver.py``): the leader's pod deleted and recreated under the same name, a
scale-down that removes the leader, and a lease that runs out in the middle of
a hook.
"""

from __future__ import annotations

import json
import random

import ops
import pytest
import redis.exceptions

from ..workload import valkey_server
from ..workload.charm_unit import unit_name
from .driver import Application, LeaseExpiry, UnitView
from .service_client import ServiceClient

BEFORE = {f'before:{i}': f'written on the first primary {i}' for i in range(50)}

MAX_SLOW_CALLS = 3
"""The most slow calls (Kubernetes requests) a new leader's ``leader-elected``
may make for the lease scenarios to cover every one of them; a test checks it."""
MAX_SLOW_CALLS_ANY = 14
"""The same for Kubernetes and Pebble requests together."""


def write(app: Application, unit_id: int, items: dict[str, str]) -> None:
    """Write on ``unit_id``'s server once every replica is in sync.

    With replicas, a primary takes writes only while one of them is in sync
    (``min-replicas-to-write``): right after a deployment or a failover, not
    before the first one has synchronised.
    """
    wait_in_sync(app)
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
        # An acting primary, or its replica, says why after its role: `replica of X (...)`.
        if isinstance(hook.status, ops.ActiveStatus)
        and hook.status.message.split(' (')[0] != hook.file_role
    ]


def assert_quiescent(app: Application) -> None:
    """What must hold once no unit changes anything, whatever happened before.

    ``<app>-primary`` selects the leader's pod; the leader's server is the only
    primary and every other live server replicates from it; every unit says
    so in its status, and its file agrees; no hook raised.
    """
    leader = app.leader()
    assert leader is not None, 'Juju has a leader'
    # A new leader whose server was still in its first sync left the primary with
    # the data in charge: it takes over on a later hook (update-status) once in sync.
    wait_in_sync(app)
    app.settle()
    assert app.errors == []
    assert app.primary_service_selects() == leader.name.replace('/', '-'), (
        f'<app>-primary must select the leader {leader.name} pod'
    )
    views = {view.unit: view for view in app.observe()}
    for unit in app.live_units():
        view = views[unit.name]
        expected = 'primary' if unit is leader else f'replica of {leader.name}'
        assert (view.role, view.status) == (
            'primary' if unit is leader else 'replica',
            f'active: {expected}',
        ), unit.name
        assert app.file_role(unit.unit_id) == expected
        if unit is not leader:
            assert view.replicating_from == leader.name


def deploy(app: Application, *, leader: int = 0) -> None:
    app.deploy(leader=leader)
    app.settle()
    assert mismatches(app) == []
    write(app, leader, BEFORE)
    assert_everywhere(app, BEFORE)


def test_deploy_three_units_one_primary_two_replicas(app: Application) -> None:
    deploy(app)

    assert_primary_is(app, 0)
    assert [view.keys for view in app.observe()] == [len(BEFORE)] * 3
    assert_quiescent(app)


# ------------------------------------------------- the leader's pod is deleted


def test_the_leaders_pod_dies_and_leader_elected_makes_the_new_primary(
    app: Application,
) -> None:
    """The lease runs out before the pod is back; unit 1 is elected.

    Unit 0's ``stop`` handed the role to unit 1's server already (the replica
    in sync with the lowest number) and pointed ``<app>-primary`` at it; unit
    1's ``leader-elected`` finds its own server primary and publishes itself.
    """
    deploy(app)
    password, revisions = app.password(), app.password_revisions()
    hooks_before = len(app.hooks)
    survivors = {i: app.server(i).pid for i in (1, 2)}

    app.delete_pod(0)
    (stop,) = [h for h in app.hooks[hooks_before:] if h.event == 'stop']
    assert stop.handover is not None
    assert stop.handover.status == 'switched'
    assert stop.service_selects == 'valkey-leader-k8s-1'
    app.elect(1)
    app.settle()

    # The surviving servers changed role live; neither restarted.
    assert {i: app.server(i).pid for i in (1, 2)} == survivors

    # Nobody left the relation; unit 1 did the leader's work (in the relation-changed
    # the stop's record queued, which Juju may deliver before leader-elected).
    events = [(hook.unit, hook.event) for hook in app.hooks[hooks_before:] if not hook.check]
    assert not any('relation-departed' in event for _, event in events)
    (elected,) = [h for h in app.hooks[hooks_before:] if h.event == 'leader-elected']
    assert elected.unit == unit_name(1)
    assert json.loads(app.app_data['leader-unit']) == unit_name(1)
    assert app.primary_service_selects() == 'valkey-leader-k8s-1'
    assert app.file_role(1) == 'primary'
    assert_primary_is(app, 1)
    assert app.password() == password
    assert app.password_revisions() == revisions
    assert_everywhere(app, BEFORE)
    after = {f'after:{i}': f'written on the new primary {i}' for i in range(20)}
    write(app, 1, after)
    assert_everywhere(app, after)
    assert mismatches(app, since=hooks_before) == []
    assert_quiescent(app)


def test_a_lease_moved_between_live_units_hands_over_without_losing_a_write(
    app: Application,
) -> None:
    """Juju moves the lease while the old leader's pod keeps running.

    One client writes through the primary Service all along. Unit 1's
    ``leader-elected`` asks unit 0's server to hand over (writes paused, unit
    1 caught up, roles swapped), before it re-points the Service. No server
    restarts, and every write a server acknowledged is on the new primary.
    """
    deploy(app)
    pids = {unit_id: app.server(unit_id).pid for unit_id in range(3)}
    hooks_before = len(app.hooks)

    with ServiceClient(app, probe=1) as client:
        app.elect(1)
        app.settle()

    (elected,) = [h for h in app.hooks[hooks_before:] if h.event == 'leader-elected']
    assert elected.handover is not None
    assert elected.handover.status == 'switched', elected.handover
    assert elected.handover.from_unit == unit_name(0)
    assert elected.workload in (None, 'applied live: no restart')
    assert {unit_id: app.server(unit_id).pid for unit_id in range(3)} == pids
    assert client.lost == 0, 'an acknowledged write was lost'
    assert client.writable_at is not None
    assert_primary_is(app, 1)
    assert mismatches(app, since=hooks_before) == []
    assert_quiescent(app)


def test_the_recreated_pod_comes_back_as_a_replica_with_its_storage(app: Application) -> None:
    """The StatefulSet recreates pod 0: same unit, same data volume, new containers."""
    deploy(app)
    app.delete_pod(0)
    app.elect(1)
    app.settle()
    while_away = {f'away:{i}': f'written while pod 0 was gone {i}' for i in range(20)}
    write(app, 1, while_away)
    hooks_before = len(app.hooks)

    app.recreate_pod(0)
    app.settle()

    # Its start-up sequence, then whatever the others told it meanwhile.
    mine = [h.event for h in app.hooks[hooks_before:] if h.unit == unit_name(0) and not h.check]
    assert mine[:4] == ['upgrade-charm', 'config-changed', 'start', 'pebble-ready']
    assert mismatches(app, since=hooks_before) == []
    assert_primary_is(app, 1)
    assert_everywhere(app, {**BEFORE, **while_away})
    with (
        app.server(0).client(app.password()) as client,
        pytest.raises(redis.exceptions.ReadOnlyError),
    ):
        client.set('on-the-old-leader', 'refused')
    assert_quiescent(app)


def test_a_pod_back_before_its_lease_runs_out_is_still_the_primary(app: Application) -> None:
    """Kubernetes was quicker than Juju's lease: unit 0 still leads in its new pod."""
    deploy(app)

    app.delete_pod(0)
    app.recreate_pod(0)
    app.settle()

    assert_primary_is(app, 0)
    # Its data came back from the RDB file on its storage, and replicates again.
    assert_everywhere(app, BEFORE)
    assert_quiescent(app)


def test_pod_comes_back_while_the_new_leader_takes_over(app: Application) -> None:
    """The new pod's hooks and unit 1's leader-elected run at the same time."""
    deploy(app)

    app.delete_pod(0)
    app.recreate_pod(0)
    app.elect(1)
    app.settle()

    assert mismatches(app) == []
    assert_primary_is(app, 1)
    assert_everywhere(app, BEFORE)
    assert_quiescent(app)


# ------------------------------------------------------------------ scale-down


@pytest.mark.parametrize('elected', ['after-it-left', 'while-it-leaves'])
def test_scaling_down_removes_the_leader_and_another_unit_takes_over(
    app: Application, elected: str
) -> None:
    """Scale-down: the highest-numbered unit leads and is removed.

    Its lease runs out after it has gone, or while the others still process
    its departure (then unit 0 already leads in its ``relation-departed``).
    """
    deploy(app, leader=2)
    hooks_before = len(app.hooks)

    assert app.scale_down() == 2
    if elected == 'while-it-leaves':
        app.elect(0)
    app.settle()
    departed = {
        h.unit for h in app.hooks[hooks_before:] if h.event.startswith('relation-departed')
    }
    assert {unit_name(0), unit_name(1)} <= departed
    if elected == 'after-it-left':
        app.elect(0)
        app.settle()

    assert mismatches(app, since=hooks_before) == []
    assert_primary_is(app, 0)
    assert_everywhere(app, BEFORE)
    assert_quiescent(app)


# ----------------------------------------------------------- rotate and config


def test_rotate_password_reaches_every_unit_and_the_old_one_is_refused(
    app: Application,
) -> None:
    deploy(app)
    old = app.password()
    pids = {unit.name: unit.server.pid for unit in app.live_units()}

    results = app.run_action(0, 'rotate-password')
    app.settle()

    # Every server took the new password live, none restarted.
    assert {unit.name: unit.server.pid for unit in app.live_units()} == pids

    new = app.password()
    assert new != old
    assert results['result'] == 'password rotated; every unit applies it live'
    assert mismatches(app) == []
    # Juju removed revision 1 once no unit tracked it.
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
    app.settle()

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
    app.settle()

    assert mismatches(app) == []
    assert_primary_is(app, 0)
    for unit in app.live_units():
        # The new option reached each running server live: the same process.
        assert unit.server.pid == pids[unit.name]
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


# ------------------------------------------------- the lease runs out mid-hook


def deploy_and_hand_over_to_1(app: Application, expiry: LeaseExpiry | None) -> None:
    """Unit 0 leads and has published; Juju moves the lease to unit 1.

    Unit 0's pod keeps running (its unit agent restarted, or the controller
    could not renew its lease in time). ``expiry`` lets unit 1's lease run out
    during its ``leader-elected``.
    """
    app.deploy(leader=0)
    app.settle()
    assert app.primary_service_selects() == 'valkey-leader-k8s-0'
    app.elect(1)
    if expiry is not None:
        app.expire_lease(expiry)
    app.settle()


def test_every_slow_call_of_a_new_leaders_hook_is_covered(app: Application) -> None:
    """The lease scenarios below let the lease run out at each of these calls."""
    deploy_and_hand_over_to_1(app, None)

    (elected,) = [h for h in app.hooks if h.event == 'leader-elected' and h.unit == unit_name(1)]
    kubernetes = [call for call in elected.slow_calls if call.startswith('kubernetes ')]
    assert 1 <= len(kubernetes) <= MAX_SLOW_CALLS, elected.slow_calls
    assert len(elected.slow_calls) <= MAX_SLOW_CALLS_ANY, elected.slow_calls
    assert_quiescent(app)


@pytest.mark.parametrize('then', [0, 1, 2], ids=['returns-to-0', 'regained-by-1', 'moves-to-2'])
@pytest.mark.parametrize('k', range(1, MAX_SLOW_CALLS + 1))
def test_a_lease_that_runs_out_mid_hook_leaves_nothing_outside_juju_drifting(
    app: Application, k: int, then: int
) -> None:
    """Unit 1's lease runs out during the k-th slow call of its leader-elected.

    ops' 30 s cache has expired by then, so the rest of the hook sees
    ``is_leader() == False``; Juju elects ``then``. Whatever unit 1 already
    applied to Kubernetes stays; the next leader must reconcile against the
    world, not against what the peer databag says it did.
    """
    deploy_and_hand_over_to_1(app, LeaseExpiry(unit_id=1, at_slow_call=k, then=then))

    first = next(h for h in app.hooks if h.event == 'leader-elected' and h.unit == unit_name(1))
    kubernetes = [call for call in first.slow_calls if call.startswith('kubernetes ')]
    assert first.lease_ran_out == (k <= len(kubernetes))
    assert app.leader() is app.units[then if first.lease_ran_out else 1]
    assert mismatches(app) == []
    assert_quiescent(app)


@pytest.mark.parametrize('noticed', [True, False], ids=['noticed', 'unnoticed'])
@pytest.mark.parametrize('then', [0, 2], ids=['returns-to-0', 'moves-to-2'])
def test_a_second_leadership_change_during_a_switchover_ends_with_one_primary(
    app: Application, then: int, *, noticed: bool
) -> None:
    """Unit 1's lease runs out while the old primary hands over to it.

    Its server is the primary by then, but unit 1 publishes nothing (it sees
    the lease gone, or Juju refuses its commit) and Juju elects ``then``. Its
    server follows unit 0's (directly, or unit 0's own), which follows unit
    1's now: its handover asks unit 1's server, the primary at the top. A
    client writing through the Service all along loses no acknowledged write,
    and the application ends with one primary, on the leader.
    """
    expiry = LeaseExpiry(unit_id=1, at_slow_call=1, then=then, noticed=noticed, points=('valkey',))
    deploy(app)  # every replica connected and in sync
    with ServiceClient(app) as client:
        app.elect(1)
        app.expire_lease(expiry)
        app.settle()

    first = next(h for h in app.hooks if h.event == 'leader-elected' and h.unit == unit_name(1))
    assert first.lease_ran_out
    assert 'valkey hand_over: switched' in first.slow_calls
    second = next(
        h
        for h in app.hooks
        if h.event == 'leader-elected' and h.unit == unit_name(then) and h.number > first.number
    )
    if second.handover is None:
        # The new leader's server was not in sync yet (it resyncs after the first
        # switch): it leaves the primary in charge, says so, and takes over later.
        assert 'not the primary yet' in second.status.message, second.status
    else:
        # Unnoticed, Juju retries unit 1's failed hook, as a follower of the last
        # published leader (unit 0): unit 1's server may follow unit 0's before the
        # new leader's hook runs. Then no primary is left to hand over (a loop):
        # the new leader promotes directly, with nothing to lose.
        handed = second.handover.status == 'switched'
        assert handed or second.handover.reason == 'no primary within 3 servers', second.handover
    assert client.lost == 0, 'two primaries took writes'
    assert app.leader() is app.units[then]
    assert mismatches(app) == []
    assert_quiescent(app)
    assert_everywhere(app, BEFORE)


@pytest.mark.parametrize('then', [0, 2], ids=['returns-to-0', 'moves-to-2'])
@pytest.mark.parametrize('k', range(1, MAX_SLOW_CALLS + 1))
def test_a_lease_that_runs_out_unnoticed_fails_the_hook_and_juju_retries_it(
    app: Application, k: int, then: int
) -> None:
    """The slow call took less than 30 s: ``is_leader()`` still answers True from ops' cache.

    The charm publishes; Juju refuses the commit because unit 1 no longer
    leads: the hook fails (not a charm error) and runs again later.
    """
    deploy_and_hand_over_to_1(
        app, LeaseExpiry(unit_id=1, at_slow_call=k, then=then, noticed=False)
    )

    first = next(h for h in app.hooks if h.event == 'leader-elected' and h.unit == unit_name(1))
    if first.lease_ran_out:
        assert first.failed is not None
        assert 'Juju refused to commit' in first.failed
        # It ran again, as a non-leader, and succeeded.
        retried = [h for h in app.hooks if h.number > first.number and h.unit == first.unit]
        assert retried[0].event == 'leader-elected'
        assert retried[0].failed is None
    assert app.leader() is app.units[then if first.lease_ran_out else 1]
    assert mismatches(app) == []
    assert_quiescent(app)


@pytest.mark.parametrize('k', range(1, MAX_SLOW_CALLS_ANY + 1))
def test_a_lease_that_runs_out_during_any_kubernetes_or_pebble_call_raises_nothing(
    app: Application, k: int
) -> None:
    """The lease runs out during the k-th Kubernetes *or Pebble* request of the hook.

    That includes the Pebble calls made while collect-status runs: ops checks
    leadership again before it sets the app status, and raises if the charm set
    one after the lease ran out (``RuntimeError: cannot set application status
    as a non-leader unit``). No hook may raise; the Service must follow the leader.
    """
    deploy_and_hand_over_to_1(
        app,
        LeaseExpiry(unit_id=1, at_slow_call=k, then=0, points=('kubernetes', 'pebble')),
    )

    first = next(h for h in app.hooks if h.event == 'leader-elected' and h.unit == unit_name(1))
    counted = [call for call in first.slow_calls if call.split()[0] in ('kubernetes', 'pebble')]
    assert first.lease_ran_out == (k <= len(counted))
    assert app.leader() is app.units[0 if first.lease_ran_out else 1]
    assert mismatches(app) == []
    assert_quiescent(app)


# ---------------------------- any sequence of leadership changes, any expiry


@pytest.mark.parametrize('seed', range(20))
def test_any_sequence_of_leadership_changes_settles_with_the_service_on_the_leader(
    app: Application, seed: int
) -> None:
    """Random leadership moves, pod deletions and lease expiries at random slow calls.

    After each move settles, the quiescent invariant holds (see
    :func:`assert_quiescent`).
    """
    rng = random.Random(seed)  # noqa: S311 - a reproducible test sequence, not a secret
    app.deploy(leader=rng.randrange(3))
    app.settle()
    for _ in range(2):
        current = app.leader()
        assert current is not None
        others = [u.unit_id for u in app.units.values() if u is not current]
        move = rng.choice(['elect', 'pod-dies', 'pod-dies-and-returns'])
        if move == 'pod-dies':
            app.delete_pod(current.unit_id)
            app.elect(rng.choice(others))
            app.recreate_pod(current.unit_id)
        elif move == 'pod-dies-and-returns':
            app.delete_pod(current.unit_id)
            app.recreate_pod(current.unit_id)
        new = app.leader()
        assert new is not None
        if move == 'elect':
            app.elect(rng.choice(others))
            new = app.leader()
            assert new is not None
        if rng.random() < 0.7:
            with_pebble = rng.random() < 0.5
            app.expire_lease(
                LeaseExpiry(
                    unit_id=new.unit_id,
                    at_slow_call=rng.randint(
                        1, MAX_SLOW_CALLS_ANY if with_pebble else MAX_SLOW_CALLS
                    ),
                    then=rng.randrange(3),
                    noticed=rng.random() < 0.7,
                    points=('kubernetes', 'pebble') if with_pebble else ('kubernetes',),
                )
            )
        app.settle()
        assert mismatches(app) == []
        assert_quiescent(app)
