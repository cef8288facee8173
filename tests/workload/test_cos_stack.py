# Copyright 2026 The valkey-leader-k8s authors
# See LICENSE file for licensing details.

"""The charm's exporter, jobs, rules and dashboard, run by real programs.

Three units of the charm on real Valkey servers, each with Debian's
``redis_exporter`` run with the charm's command line and password file, and a
real Prometheus scraping them with the jobs the charm publishes and
evaluating the rules it publishes (``cos_stack``). One stack for the module:
the tests run in order, the last one cuts a replica's link.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import cast

import pytest
import redis.exceptions

from workload import exporter

from .charm_unit import APP
from .cos_stack import Stack, dashboard_queries, metric_names
from .observability_stack import missing_programs
from .valkey_server import eventually

pytestmark = pytest.mark.skipif(
    bool(missing_programs()),
    reason=f"{', '.join(missing_programs())} not found: install Debian's prometheus and "
    'prometheus-redis-exporter packages (.ci/run does)',
)


@pytest.fixture(scope='module')
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with Stack(tmp_path_factory.mktemp('cos')) as started:
        yield started


def alert_rules(stack: Stack) -> list[dict[str, str]]:
    groups = json.loads(stack.app_data['alert_rules'])['groups']
    return [rule for group in groups for rule in group['rules']]


def test_prometheus_scrapes_every_unit_with_the_published_job(stack: Stack) -> None:
    assert stack.prom.targets_up() == {f'{APP}/{u}': 'up' for u in (0, 1, 2)}
    up = stack.prom.query('redis_up')
    assert sorted((r['metric']['juju_unit'], r['value'][1]) for r in up) == [
        (f'{APP}/0', '1'),
        (f'{APP}/1', '1'),
        (f'{APP}/2', '1'),
    ]


def test_the_leader_is_the_only_primary(stack: Stack) -> None:
    primaries = stack.prom.query('redis_instance_info{role="master"}')
    assert [p['metric']['juju_unit'] for p in primaries] == [f'{APP}/0']


def test_the_exporter_user_reads_server_state_and_nothing_else(stack: Stack) -> None:
    # What the exporter was refused so far: only what it may not have, by design
    # (CONFIG GET would show requirepass, SLOWLOG GET clients' arguments).
    with stack.server(0).client(stack.admin_password) as admin:
        entries = cast('list[list[object]]', admin.command('ACL', 'LOG'))
    refused = {str(e[e.index('object') + 1]) for e in entries if exporter.USER in e}
    assert refused <= {'config|get', 'slowlog|get'}, refused
    unit = stack.units[0]
    password = json.loads((unit.password_dir / 'password.json').read_text())[exporter.VALKEY_URL]
    with stack.server(0).client(password, username=exporter.USER) as client:
        assert client.replication()['role'] == 'master'  # INFO
        for command in (('GET', 'k'), ('SET', 'k', 'v'), ('CONFIG', 'GET', 'requirepass')):
            with pytest.raises(redis.exceptions.NoPermissionError):
                client.command(*command)


def test_every_dashboard_query_returns_data(stack: Stack) -> None:
    queries = dashboard_queries(stack.dashboard)
    assert len(queries) >= 12
    for title, expr in queries:
        eventually(
            lambda expr=expr: stack.prom.query(expr) or None,
            timeout=40,
            what=f'data for {title!r}: {expr}',
        )


def test_every_alert_expression_evaluates_and_every_metric_it_reads_has_data(
    stack: Stack,
) -> None:
    rules = alert_rules(stack)
    assert len(rules) == 11
    for rule in rules:
        stack.prom.query(rule['expr'])  # Prometheus accepts it (raises otherwise)
        for metric in metric_names(rule['expr']):
            assert stack.prom.query(metric), f'{rule["alert"]}: no {metric}'


def test_a_healthy_set_raises_no_alert(stack: Stack) -> None:
    assert stack.prom.alerts() == set()


def test_cutting_a_replicas_link_raises_that_alert_and_no_other(stack: Stack) -> None:
    stack.cut_replica_link(2)
    pending = eventually(
        lambda: stack.prom.alerts() or None, timeout=30, what='an alert once the link is cut'
    )
    assert pending == {('ValkeyReplicaLinkDown', 'pending', f'{APP}/2')}
    link = stack.prom.query(f'redis_master_link_up{{juju_unit="{APP}/2"}}')
    assert [r['value'][1] for r in link] == ['0']
    stack.restore_replica_link(2)
    eventually(
        lambda: True if not stack.prom.alerts() else None,
        timeout=30,
        what='the alert to clear once the link is back',
    )


def test_the_stack_reads_only_what_the_charm_wrote(stack: Stack) -> None:
    """The exporter's command line is the charm's, with addresses and the file path only."""
    for unit in stack.units.values():
        assert unit.exporter is not None
        argv = unit.exporter.argv
        assert f'-redis.user={exporter.USER}' in argv
        assert not any('password=' in arg for arg in argv)
