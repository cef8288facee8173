# Copyright 2026 The valkey-leader-k8s authors
# See LICENSE file for licensing details.

"""The charm related to COS on a real controller: metrics, alert rules, dashboard, logs.

Deploys the set beside Prometheus, Grafana and Loki (Canonical's ``*-k8s``
charms, in the same model rather than a full COS Lite bundle), relates them,
and asks each what it received: Prometheus scrapes every unit's exporter and
loaded the charm's rules, Grafana has the dashboard, Loki has Valkey's log.
Prometheus and Loki are queried inside their pods (``promtool query``, and
HTTP with ``wget``, through ``kubectl exec``); Grafana with the admin password
its charm's action gives. Like every module here, skipped without a reachable controller.
"""

from __future__ import annotations

import json
from pathlib import Path

import jubilant
import pytest

from .helpers import APP, Kubectl, leader_of, wait_for_roles, wait_until

DEPLOY_TIMEOUT = 20 * 60
SETTLE_TIMEOUT = 10 * 60
COS_CHANNEL = '1/stable'
PROMETHEUS, GRAFANA, LOKI = 'prometheus-k8s', 'grafana-k8s', 'loki-k8s'


@pytest.mark.juju_setup
def test_deploy_with_cos(juju: jubilant.Juju, charm_path: Path, resources: dict[str, str]):
    assert juju.show_model().model_type == 'caas', 'these tests need a Kubernetes model'
    juju.deploy(charm_path, APP, num_units=2, resources=resources, trust=True)
    for charm in (PROMETHEUS, GRAFANA, LOKI):
        juju.deploy(charm, channel=COS_CHANNEL, trust=True)
    juju.integrate(f'{APP}:metrics-endpoint', PROMETHEUS)
    juju.integrate(f'{APP}:grafana-dashboard', GRAFANA)
    juju.integrate(f'{APP}:logging', LOKI)
    juju.wait(jubilant.all_active, timeout=DEPLOY_TIMEOUT)
    wait_for_roles(juju, units=2, timeout=SETTLE_TIMEOUT)


def promql(kubectl: Kubectl, expr: str) -> list[dict[str, object]]:
    """An instant query, run by promtool inside the Prometheus pod."""
    out = kubectl.run(
        'exec', f'{PROMETHEUS}-0', '-c', 'prometheus', '--',
        'promtool', 'query', 'instant', '-o', 'json', 'http://localhost:9090', expr,
    )  # fmt: skip
    return json.loads(out)


def test_prometheus_scrapes_every_unit_and_sees_one_primary(juju: jubilant.Juju, kubectl: Kubectl):
    status = wait_for_roles(juju, units=2, timeout=SETTLE_TIMEOUT)
    leader = leader_of(status)

    wait_until(
        lambda: promql(kubectl, f'redis_up{{juju_application="{APP}"}} == 1'),
        lambda up: len(up) == 2,
        timeout=SETTLE_TIMEOUT,
        what='both units scraped, with Valkey answering its exporter',
    )
    primaries = promql(kubectl, f'redis_instance_info{{juju_application="{APP}",role="master"}}')
    assert [p['metric']['juju_unit'] for p in primaries] == [leader]  # type: ignore[index]


def test_prometheus_loaded_the_rules_and_nothing_fires(kubectl: Kubectl):
    rules = json.loads(
        kubectl.run(
            'exec',
            f'{PROMETHEUS}-0',
            '-c',
            'prometheus',
            '--',
            'wget',
            '-qO-',
            'http://localhost:9090/api/v1/rules',
        )
    )
    names = {r['name'] for g in rules['data']['groups'] for r in g['rules']}
    assert {'ValkeyNoPrimary', 'ValkeyMultiplePrimaries', 'ValkeyReplicaLinkDown'} <= names
    firing = promql(kubectl, f'ALERTS{{juju_application="{APP}",alertstate="firing"}}')
    assert firing == []


def test_grafana_has_the_dashboard(juju: jubilant.Juju):
    task = juju.run(f'{GRAFANA}/0', 'get-admin-password')
    assert task.status == 'completed'
    # The dashboard's uid is Grafana's business; its title is ours.
    out = juju.ssh(
        f'{GRAFANA}/0',
        'curl', '-s', '-u', f'admin:{task.results["admin-password"]}',
        'http://localhost:3000/api/search?query=Valkey',
        container='grafana',
    )  # fmt: skip
    assert 'Valkey (leader is primary)' in out


def test_loki_receives_valkey_logs(kubectl: Kubectl):
    wait_until(
        lambda: kubectl.run(
            'exec',
            f'{LOKI}-0',
            '-c',
            'loki',
            '--',
            'wget',
            '-qO-',
            'http://localhost:3100/loki/api/v1/label/juju_application/values',
        ),
        lambda values: APP in values,
        timeout=SETTLE_TIMEOUT,
        what='logs labelled with the application in Loki',
    )
