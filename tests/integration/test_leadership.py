# Copyright 2026 The valkey-leader-k8s authors
# See LICENSE file for licensing details.

"""The charm on a real controller: the Juju leader is the Valkey primary.

One model for the module (pytest-jubilant's ``juju`` fixture); the tests run
in order and each starts by waiting for a settled primary/replica set, so any
of them can be rerun on a kept model::

    tox -e integration -- --no-juju-teardown
    tox -e integration -- --juju-model <prefix> --no-juju-setup -k leadership

How-to: https://documentation.ubuntu.com/ops/latest/howto/manage-leadership-changes/
"""

from __future__ import annotations

import logging
from pathlib import Path

import jubilant
import pytest

from .helpers import (
    APP,
    APP_LABEL,
    POD_NAME_LABEL,
    PRIMARY_SERVICE,
    Kubectl,
    assert_replication,
    force_leader_change,
    get_leader_unit,
    info_fields,
    leader_of,
    new_key,
    pod_name,
    published_secret_id,
    read_password,
    valkey_cli,
    wait_for_pong,
    wait_for_roles,
    wait_for_value,
    wait_until,
)

logger = logging.getLogger(__name__)

DEPLOY_TIMEOUT = 20 * 60  # image pull and three pods starting, on a cold CI runner
SETTLE_TIMEOUT = 10 * 60
# Juju's leader lease runs for 60 s after the last renewal; a deleted pod
# takes up to 30 s to terminate and may come back and renew it once.
LEADER_CHANGE_TIMEOUT = 5 * 60


def unit_names(status: jubilant.Status) -> list[str]:
    return sorted(status.apps[APP].units)


@pytest.mark.juju_setup
def test_deploy_three_units(juju: jubilant.Juju, charm_path: Path, resources: dict[str, str]):
    """Three units, trusted (the leader manages the <app>-primary Service), all active."""
    assert juju.show_model().model_type == 'caas', 'these tests need a Kubernetes model'
    juju.deploy(
        charm_path,
        APP,
        num_units=3,
        resources=resources,
        trust=True,
    )
    status = wait_for_roles(juju, units=3, timeout=DEPLOY_TIMEOUT)
    assert jubilant.all_active(status, APP)


def test_exactly_one_leader_and_it_is_the_primary(juju: jubilant.Juju):
    status = wait_for_roles(juju, units=3, timeout=SETTLE_TIMEOUT)
    leader = leader_of(status)
    assert get_leader_unit(juju) == leader
    units = status.apps[APP].units
    assert [name for name, unit in units.items() if unit.leader] == [leader]
    assert units[leader].workload_status.message == 'primary'
    for name in unit_names(status):
        if name != leader:
            assert units[name].workload_status.message == f'replica of {leader}'

    password = read_password(juju, leader)
    info = info_fields(valkey_cli(juju, leader, password, 'INFO', 'replication'))
    assert info.get('role') == 'primary', info
    assert info.get('connected_replicas') == '2', info


def test_key_written_on_leader_is_read_on_every_replica(juju: jubilant.Juju):
    status = wait_for_roles(juju, units=3, timeout=SETTLE_TIMEOUT)
    leader = leader_of(status)
    replicas = [u for u in unit_names(status) if u != leader]
    assert_replication(juju, leader, replicas, read_password(juju, leader))


def test_replicas_refuse_writes(juju: jubilant.Juju):
    status = wait_for_roles(juju, units=3, timeout=SETTLE_TIMEOUT)
    leader = leader_of(status)
    password = read_password(juju, leader)
    key, value = new_key()
    for replica in unit_names(status):
        if replica == leader:
            continue
        reply = valkey_cli(juju, replica, password, 'SET', key, value)
        assert 'READONLY' in reply.text, f'SET on {replica}: {reply}'
        assert valkey_cli(juju, replica, password, 'EXISTS', key).lines == ['0']


def test_rotate_password_on_the_leader(juju: jubilant.Juju):
    status = wait_for_roles(juju, units=3, timeout=SETTLE_TIMEOUT)
    leader = leader_of(status)
    old = read_password(juju, leader)

    task = juju.run(leader, 'rotate-password')

    assert task.status == 'completed'
    published = published_secret_id(juju, leader)
    assert jubilant.SecretURI(task.results['secret-id']).unique_identifier == (
        jubilant.SecretURI(published).unique_identifier
    )
    status = wait_for_roles(juju, units=3, timeout=SETTLE_TIMEOUT)
    new = read_password(juju, leader)
    unchanged = new == old
    assert not unchanged, 'rotate-password left the password as it was'
    leaked = new.appears_in(f'{task.results} {task.stdout} {task.stderr} {task.log}')
    assert not leaked, 'the action output contains the new password'

    units = unit_names(status)
    wait_for_pong(juju, units, new)
    reply = valkey_cli(juju, leader, old, 'PING')
    old_refused = reply.lines != ['PONG'] and ('WRONGPASS' in reply.text or 'NOAUTH' in reply.text)
    assert old_refused, f'the leader still accepts the old password: {reply}'
    assert_replication(juju, leader, [u for u in units if u != leader], new)


def test_rotate_password_on_a_replica_fails_naming_the_leader(juju: jubilant.Juju):
    status = wait_for_roles(juju, units=3, timeout=SETTLE_TIMEOUT)
    leader = leader_of(status)
    replica = next(u for u in unit_names(status) if u != leader)
    before = read_password(juju, leader)

    with pytest.raises(jubilant.TaskError) as caught:
        juju.run(replica, 'rotate-password')

    assert caught.value.task.status == 'failed'
    assert leader in caught.value.task.message
    unchanged = read_password(juju, leader) == before
    assert unchanged, 'a failed rotate-password changed the password'


def test_leadership_change_moves_the_primary(juju: jubilant.Juju, kubectl: Kubectl):
    """The how-to's leadership test, with jubilant and a real Valkey behind it."""
    status = wait_for_roles(juju, units=3, timeout=SETTLE_TIMEOUT)
    old_leader = leader_of(status)
    password = read_password(juju, old_leader)
    key, value = new_key()
    assert valkey_cli(juju, old_leader, password, 'SET', key, value).lines == ['OK']
    for unit in unit_names(status):
        wait_for_value(juju, unit, password, key, value)
    # Before the change the Service selects the old leader: the check below
    # names one pod, so it fails if the Service does not follow.
    wait_until(
        lambda: kubectl.service_selector(PRIMARY_SERVICE),
        lambda selector: selector == {APP_LABEL: APP, POD_NAME_LABEL: pod_name(old_leader)},
        timeout=60,
        what=f'{PRIMARY_SERVICE} to select {pod_name(old_leader)}',
    )

    new_leader = force_leader_change(juju, kubectl, old_leader, timeout=LEADER_CHANGE_TIMEOUT)

    status = wait_for_roles(juju, units=3, timeout=SETTLE_TIMEOUT)
    assert leader_of(status) == new_leader != old_leader
    assert status.apps[APP].units[new_leader].workload_status.message == 'primary'
    assert status.apps[APP].units[old_leader].workload_status.message == f'replica of {new_leader}'
    wait_until(
        lambda: kubectl.service_selector(PRIMARY_SERVICE),
        lambda selector: selector == {APP_LABEL: APP, POD_NAME_LABEL: pod_name(new_leader)},
        timeout=60,
        what=f'{PRIMARY_SERVICE} to select {pod_name(new_leader)}',
    )
    wait_until(
        lambda: kubectl.endpoint_pods(PRIMARY_SERVICE),
        lambda pods: pods == {pod_name(new_leader)},
        timeout=120,
        what=f'{PRIMARY_SERVICE} to route to {pod_name(new_leader)} only',
    )
    unchanged = read_password(juju, new_leader) == password
    assert unchanged, 'the password changed with the leader'
    for unit in unit_names(status):
        wait_for_value(juju, unit, password, key, value)
    replicas = [u for u in unit_names(status) if u != new_leader]
    assert_replication(juju, new_leader, replicas, password)
    demoted = valkey_cli(juju, old_leader, password, 'SET', key, 'from the old leader')
    assert 'READONLY' in demoted.text, f'the old leader still takes writes: {demoted}'


def test_invalid_log_level_blocks_every_unit_until_reset(juju: jubilant.Juju):
    status = wait_for_roles(juju, units=3, timeout=SETTLE_TIMEOUT)
    leader = leader_of(status)
    password = read_password(juju, leader)

    juju.config(APP, {'log-level': 'shouting'})
    try:

        def blocked_naming_the_option(status: jubilant.Status) -> bool:
            units = status.apps[APP].units.values()
            return jubilant.all_blocked(status, APP) and all(
                unit.workload_status.message.startswith("invalid config: log-level='shouting'")
                for unit in units
            )

        status = juju.wait(blocked_naming_the_option, timeout=SETTLE_TIMEOUT)
        assert status.apps[APP].app_status.message.startswith('invalid config: log-level=')
        # Blocked, but still serving, with the last good file.
        reply = valkey_cli(juju, leader, password, 'CONFIG', 'GET', 'loglevel')
        assert reply.lines == ['loglevel', 'notice'], reply
    finally:
        juju.config(APP, reset='log-level')

    status = wait_for_roles(juju, units=3, timeout=SETTLE_TIMEOUT)
    assert leader_of(status) == leader


def test_scale_to_one_and_back_to_three(juju: jubilant.Juju):
    wait_for_roles(juju, units=3, timeout=SETTLE_TIMEOUT)

    juju.remove_unit(APP, num_units=2)
    status = wait_for_roles(juju, units=1, timeout=SETTLE_TIMEOUT)
    (remaining,) = unit_names(status)
    assert leader_of(status) == remaining
    assert status.apps[APP].units[remaining].workload_status.message == 'primary'
    password = read_password(juju, remaining)
    key, value = new_key()
    assert valkey_cli(juju, remaining, password, 'SET', key, value).lines == ['OK']

    juju.add_unit(APP, num_units=2)
    status = wait_for_roles(juju, units=3, timeout=DEPLOY_TIMEOUT)
    assert leader_of(status) == remaining
    joined = [u for u in unit_names(status) if u != remaining]
    for unit in joined:
        assert status.apps[APP].units[unit].workload_status.message == f'replica of {remaining}'
        wait_for_value(juju, unit, password, key, value)
    unchanged = read_password(juju, remaining) == password
    assert unchanged, 'scaling changed the password'
    assert_replication(juju, remaining, joined, password)
