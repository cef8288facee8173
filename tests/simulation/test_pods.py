# Copyright 2026 The valkey-leader-k8s authors
# See LICENSE file for licensing details.

"""The simulation in pods: network namespaces, cluster DNS, the charm unpatched.

Each unit's pod is a network namespace with its own ``127.0.0.1:6379`` and
pod address (``pods.py``); every hook runs inside its unit's pod and nothing
of the charm's addressing is patched: the ``replicaof`` and
``replica-announce-ip`` lines hold stable DNS names, and the servers resolve
them. Skipped where network namespaces cannot be made (not root).

Here: the leadership scenarios of ``test_leadership.py`` in pods, the names
Kubernetes gives (announced by name, a deleted pod's name that fails at
once), and a partition: the old primary cut off while a client in its own
pod keeps writing to it.
"""

from __future__ import annotations

import functools
import socket
import time
import typing
from collections.abc import Callable

import pytest

from workload import client
from workload.config import MIN_REPLICAS_MAX_LAG
from workload.election import STALE_LINK_SECONDS

from ..workload import valkey_server
from ..workload.charm_unit import unit_dns_name, unit_name
from ..workload.continuous_writes import Writer
from . import pods
from . import test_leadership as scenarios
from .driver import PRIMARY_DNS_NAME, Application
from .test_leadership import (
    BEFORE,
    assert_everywhere,
    assert_primary_is,
    assert_quiescent,
    deploy,
    wait_in_sync,
)

IN_PODS: tuple[Callable[[Application], None], ...] = (
    scenarios.test_deploy_three_units_one_primary_two_replicas,
    scenarios.test_the_leaders_pod_dies_and_leader_elected_makes_the_new_primary,
    scenarios.test_a_lease_moved_between_live_units_hands_over_without_losing_a_write,
    scenarios.test_the_recreated_pod_comes_back_as_a_replica_with_its_storage,
    scenarios.test_pod_comes_back_while_the_new_leader_takes_over,
    scenarios.test_rotate_password_reaches_every_unit_and_the_old_one_is_refused,
    functools.partial(
        scenarios.test_scaling_down_removes_the_leader_and_another_unit_takes_over,
        elected='while-it-leaves',
    ),
    functools.partial(
        scenarios.test_a_second_leadership_change_during_a_switchover_ends_with_one_primary,
        then=2,
        noticed=True,
    ),
)


def _name(scenario: Callable[[Application], None]) -> str:
    inner = scenario.func if isinstance(scenario, functools.partial) else scenario
    return inner.__name__.removeprefix('test_')


@pytest.mark.parametrize('scenario', IN_PODS, ids=_name)
def test_leadership_scenario_in_pods(
    pod_app: Application, scenario: Callable[[Application], None]
) -> None:
    """The same scenario, its assertions unchanged, with each unit in its pod."""
    scenario(pod_app)


def test_replicas_follow_and_announce_stable_dns_names(pod_app: Application) -> None:
    """``replicaof`` and ``replica-announce-ip`` hold names, resolved by the servers themselves."""
    app = pod_app
    deploy(app)
    password = app.password()
    leader_name = unit_dns_name(0)

    with app.server(0).client(password) as primary:
        info = primary.command('INFO', 'replication')
    # The primary lists each replica by the name it announced, not its pod address.
    assert isinstance(info, dict)
    replicas = [v for k, v in typing.cast('dict[str, object]', info).items() if 'slave' in k]
    listed = {typing.cast('dict[str, object]', v)['ip'] for v in replicas if isinstance(v, dict)}
    assert listed == {unit_dns_name(1), unit_dns_name(2)}
    for unit_id in (1, 2):
        with app.server(unit_id).client(password) as replica:
            assert replica.config_get('replica-announce-ip') == unit_dns_name(unit_id)
            assert replica.replication()['master_host'] == leader_name
    # The name resolves, in every pod, to the leader's pod address.
    assert app.pods is not None
    for unit_id in (1, 2):
        with app.pods.inside(app.pod_name(unit_id)):
            (found,) = {a[4][0] for a in socket.getaddrinfo(leader_name, 6379, socket.AF_INET)}
        assert found == app.pods.address_of(app.pod_name(0))


def test_a_deleted_pods_name_fails_at_once_and_the_new_leader_goes_on(
    pod_app: Application,
) -> None:
    """A deleted pod's stable name stops resolving: the charm's connection fails, not waits.

    Kubernetes removes the pod's DNS record with the pod; the charm's connection
    to the old primary then ends with a resolution error (reported as a refused
    connection), not with a connect timeout. ``bench/pods.py`` times it.
    """
    app = pod_app
    assert app.pods is not None
    deploy(app)
    password = app.password()
    old_address = app.pods.address_of(app.pod_name(0))

    app.delete_pod(0)
    with app.pods.inside(app.pod_name(1)):
        with pytest.raises(socket.gaierror):
            socket.getaddrinfo(unit_dns_name(0), 6379)
        address = (unit_dns_name(0), 6379)
        with client.authenticated(address, [password], client.PEER_CONNECT_TIMEOUT) as connected:
            assert isinstance(connected, client.NoConnection)
            assert connected.status == 'not-running'
            assert 'connection refused' in connected.reason, connected.reason

    app.elect(1)
    app.settle()
    assert_primary_is(app, 1)

    app.recreate_pod(0)
    app.settle()
    # The recreated pod has a new address; its name resolves to it again.
    new_address = app.pods.address_of(app.pod_name(0))
    assert new_address not in (None, old_address)
    assert app.pods.names[unit_dns_name(0)] == new_address
    assert_primary_is(app, 1)
    assert_everywhere(app, BEFORE)
    assert_quiescent(app)


def test_a_partitioned_primary_refuses_writes_once_its_replicas_fall_behind(
    pod_app: Application,
) -> None:
    """The leader's pod is cut off the pod network; a client inside it keeps writing.

    Juju's agent in that pod is cut off too: another unit is elected. Its
    handover cannot reach the old primary, and the replicas' links still say
    "up", so the old primary stays in charge until no server has heard from
    it for ``STALE_LINK_SECONDS``; then the leader promotes its own server and
    ``<app>-primary`` moves. The old primary still serves the client in its
    own pod. With ``min-replicas-to-write 1`` it accepts writes only while a
    replica acknowledged the stream within ``min-replicas-max-lag`` seconds,
    then refuses them (``NOREPLICAS``). What it accepted after the cut is
    lost when the partition heals: its server follows the new primary and
    resynchronises from it. Nothing acknowledged before the cut, nor by the
    new primary, is lost.
    """
    app = pod_app
    pods = app.pods
    assert pods is not None
    deploy(app)
    wait_in_sync(app)
    password = app.password()
    writer = Writer(
        6379,
        password,
        key_prefix='cut-off:',
        follow_endpoint=False,
        seconds=90,
        host=PRIMARY_DNS_NAME,
        network=functools.partial(pods.inside, app.pod_name(0)),
    )
    writer.start()
    try:
        valkey_server.eventually(lambda: len(writer.acknowledged) > 100 or None, what='writes')
        cut_at = time.monotonic()
        app.partition(0)
        app.elect(1)
        app.settle()
        # The new leader cannot read unit 0's server, but the replicas' links still
        # say it streams to them (until repl-timeout): it may be alive, and it stays
        # the acting primary until no server has heard from it for long.
        assert app.primary_service_selects() == app.pod_name(0)
        # The old primary refuses the client in its pod once no replica is in sync.
        valkey_server.eventually(
            lambda: writer.errors['NOREPLICAS'] or None,
            timeout=MIN_REPLICAS_MAX_LAG + 20,
            what='NOREPLICAS from the cut-off primary',
        )
        refused_at = writer.first_error_at['NOREPLICAS']
        time.sleep(max(0.0, cut_at + STALE_LINK_SECONDS + 1 - time.monotonic()))
        app.settle()  # the leader's next hook: update-status at the latest
        assert app.primary_service_selects() == app.pod_name(1)
        with app.server(0).client(password) as old:
            assert old.replication()['role'] == 'master'
        accepted_while_cut = [
            i
            for i, at in zip(writer.acknowledged, writer.acknowledged_at, strict=True)
            if at > cut_at
        ]
        acknowledged_before_heal = len(writer.acknowledged)

        app.heal(0)
        app.settle()
        valkey_server.eventually(
            lambda: len(writer.acknowledged) > acknowledged_before_heal + 50 or None,
            what='writes on the new primary after the partition healed',
        )
    finally:
        writer.finish()

    assert_primary_is(app, 1)
    assert_everywhere(app, BEFORE)
    # From the first refusal until the heal, the cut-off primary acknowledged nothing.
    late = [
        i
        for i, at in zip(writer.acknowledged, writer.acknowledged_at, strict=True)
        if refused_at < at and i < acknowledged_before_heal
    ]
    assert late == []
    keys = [f'cut-off:{i}' for i in writer.acknowledged]
    with app.server(1).client(password) as new:
        present = {k for k, found in zip(keys, _exists_each(new, keys), strict=True) if found}
    lost = [i for i in writer.acknowledged if f'cut-off:{i}' not in present]
    # Only writes the cut-off primary accepted after the cut are lost.
    assert set(lost) <= set(accepted_while_cut)
    assert_quiescent(app)
    print(
        f'partition: {len(accepted_while_cut)} writes accepted by the cut-off primary, '
        f'{len(lost)} lost, first NOREPLICAS {refused_at - cut_at:.1f} s after the cut'
    )


def _exists_each(connected: valkey_server.Client, keys: list[str]) -> list[bool]:
    found: list[bool] = []
    for start in range(0, len(keys), 5000):
        reply = connected.command('MGET', *keys[start : start + 5000])
        assert isinstance(reply, list)
        found += [value is not None for value in typing.cast('list[object]', reply)]
    return found


def test_every_unit_name_resolves_in_every_pod_and_only_there(pod_app: Application) -> None:
    """The pods' names come from the cluster's hosts file, which the machine never reads."""
    app = pod_app
    assert app.pods is not None
    app.deploy()
    app.settle()
    # The machine's /etc/hosts, read outside this process's private mounts, knows none of them.
    assert 'svc.cluster.local' not in pods.run('cat', '/etc/hosts').stdout
    with open('/etc/hosts', encoding='utf-8') as seen_here:
        assert unit_dns_name(0) in seen_here.read()
    for unit in app.units.values():
        assert app.pods.names[unit_dns_name(unit.unit_id)] == app.pods.address_of(
            app.pod_name(unit.unit_id)
        ), unit_name(unit.unit_id)
    assert app.pods.names[PRIMARY_DNS_NAME] == app.pods.address_of(app.pod_name(0))
