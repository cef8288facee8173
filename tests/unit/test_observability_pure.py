# Copyright 2026 The valkey-leader-k8s authors
# See LICENSE file for licensing details.

"""The COS wire formats, without Juju: what each databag says, and when it differs."""

from __future__ import annotations

import json

from observability import Topology, dashboard, logs, scrape

TOPOLOGY = Topology(
    model='demo',
    model_uuid='00000000-0000-4000-8000-000000000000',
    application='valkey',
    charm_name='valkey-leader-k8s',
    unit='valkey/0',
)


def test_the_scrape_job_asks_for_every_unit_on_the_exporter_port() -> None:
    jobs = json.loads(scrape.app_data(TOPOLOGY)['scrape_jobs'])
    assert jobs == [
        {
            'job_name': 'valkey',
            'metrics_path': '/metrics',
            'static_configs': [{'targets': ['*:9121']}],
        }
    ]


def test_the_scrape_metadata_is_the_topology_the_schema_asks_for() -> None:
    metadata = json.loads(scrape.app_data(TOPOLOGY)['scrape_metadata'])
    assert metadata == {
        'model': 'demo',
        'model_uuid': '00000000-0000-4000-8000-000000000000',
        'application': 'valkey',
        'unit': 'valkey/0',
        'charm_name': 'valkey-leader-k8s',
    }


def test_the_alert_rules_go_as_one_rules_file() -> None:
    rules = json.loads(scrape.app_data(TOPOLOGY)['alert_rules'])
    names = {rule['alert'] for group in rules['groups'] for rule in group['rules']}
    assert {'ValkeyNoPrimary', 'ValkeyMultiplePrimaries', 'ValkeyReplicaLinkDown'} <= names
    assert {'ValkeyReplicationLag', 'ValkeyMemoryNearMax', 'ValkeyRejectedConnections'} <= names
    assert 'ValkeyRdbSaveFailed' in names


def test_another_leader_writing_the_same_data_is_the_same_data() -> None:
    first = scrape.app_data(TOPOLOGY)
    other_leader = Topology(**{**TOPOLOGY.__dict__, 'unit': 'valkey/2'})
    assert scrape.app_data(other_leader) != first  # it names itself
    assert scrape.same_app_data(first, scrape.app_data(other_leader))


def test_anything_else_that_differs_is_different() -> None:
    wanted = scrape.app_data(TOPOLOGY)
    assert not scrape.same_app_data({}, wanted)
    assert not scrape.same_app_data({**wanted, 'alert_rules': '{}'}, wanted)
    assert not scrape.same_app_data({**wanted, 'scrape_metadata': 'not json'}, wanted)
    moved = Topology(**{**TOPOLOGY.__dict__, 'model': 'elsewhere'})
    assert not scrape.same_app_data(scrape.app_data(moved), wanted)


def test_each_unit_says_where_it_is_scraped() -> None:
    assert scrape.unit_data('valkey/1', 'valkey-1.valkey-endpoints.demo.svc.cluster.local') == {
        'prometheus_scrape_unit_address': 'valkey-1.valkey-endpoints.demo.svc.cluster.local',
        'prometheus_scrape_unit_name': 'valkey/1',
    }


def test_the_dashboard_travels_compressed_and_comes_back_whole() -> None:
    data = json.loads(dashboard.app_data('valkey-leader-k8s')['dashboards'])
    (template,) = data['templates'].values()
    assert template['charm'] == 'valkey-leader-k8s'
    assert template['inject_dropdowns'] is False
    assert template['juju_topology'] == {}
    content = json.loads(dashboard.decompress(template['content']))
    original = json.loads((dashboard.DASHBOARDS_DIR / 'valkey.json').read_text())
    assert content == original


def test_the_dashboard_names_no_unit_so_any_leader_writes_the_same() -> None:
    assert dashboard.app_data('valkey-leader-k8s') == dashboard.app_data('valkey-leader-k8s')
    wanted = dashboard.app_data('valkey-leader-k8s')['dashboards']
    assert dashboard.same_dashboards(wanted, wanted)
    assert not dashboard.same_dashboards(None, wanted)
    assert not dashboard.same_dashboards('{"templates": 3}', wanted)
    assert not dashboard.same_dashboards('{"templates": {"file:x": {"content": "AA=="}}}', wanted)


def test_every_dashboard_query_filters_by_the_topology_variables() -> None:
    board = json.loads((dashboard.DASHBOARDS_DIR / 'valkey.json').read_text())
    exprs = [t['expr'] for p in board['panels'] for t in p.get('targets', [])]
    assert exprs
    for expr in exprs:
        assert 'juju_application=~"$juju_application"' in expr, expr
    variables = {v['name'] for v in board['templating']['list']}
    assert {'prometheusds', 'juju_model', 'juju_application', 'juju_unit'} <= variables


def test_each_loki_unit_gets_a_target_for_every_service() -> None:
    wanted = logs.targets({'loki/0': 'http://loki-0:3100/loki/api/v1/push'}, (), TOPOLOGY)
    assert wanted == {
        'loki/0': {
            'override': 'replace',
            'type': 'loki',
            'location': 'http://loki-0:3100/loki/api/v1/push',
            'services': ['all'],
            'labels': {
                'juju_model': 'demo',
                'juju_model_uuid': '00000000-0000-4000-8000-000000000000',
                'juju_application': 'valkey',
                'juju_charm': 'valkey-leader-k8s',
                'juju_unit': 'valkey/0',
                'product': 'Juju',
            },
        }
    }


def test_a_loki_unit_that_left_is_switched_off_not_forgotten() -> None:
    wanted = logs.targets({}, ['loki/0'], TOPOLOGY)
    assert wanted['loki/0']['services'] == ['-all']
