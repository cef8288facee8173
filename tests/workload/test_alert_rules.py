# Copyright 2026 The valkey-leader-k8s authors
# See LICENSE file for licensing details.

"""The shipped alert rules, as the charm publishes them, under ``promtool test rules``.

``promtool`` comes with Debian's ``prometheus`` package (``.ci/run`` installs it).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from observability import Topology, scrape

TESTS: Path = Path(__file__).with_name('alert_rules_test.yaml')
TOPOLOGY = Topology(
    model='demo',
    model_uuid='00000000-0000-4000-8000-000000000000',
    application='valkey',
    charm_name='valkey-leader-k8s',
    unit='valkey/0',
)

needs_promtool = pytest.mark.skipif(
    shutil.which('promtool') is None,
    reason="promtool not found: install Debian's prometheus package (.ci/run does)",
)


def published_rules(tmp_path: Path, *, descriptions: bool = True) -> Path:
    """The rules as the leader writes them to the relation, beside a copy of the tests.

    ``descriptions=False`` leaves each rule's description (prose) out: promtool
    compares every annotation, and the tests state the summaries only.
    """
    published = scrape.alert_rules(TOPOLOGY)
    if not descriptions:
        for group in published['groups']:
            for rule in group['rules']:
                del rule['annotations']['description']
    rules = tmp_path / 'published.rules.yaml'
    rules.write_text(yaml.safe_dump(published, sort_keys=False))
    shutil.copy(TESTS, tmp_path / TESTS.name)
    return rules


def alert_names() -> set[str]:
    return {
        rule['alert']
        for group in scrape.alert_rules(TOPOLOGY)['groups']
        for rule in group['rules']
    }


@needs_promtool
def test_promtool_accepts_the_published_rules(tmp_path: Path) -> None:
    rules = published_rules(tmp_path)
    result = subprocess.run(
        ['promtool', 'check', 'rules', str(rules)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f'SUCCESS: {len(alert_names())} rules found' in result.stdout


@needs_promtool
def test_every_rule_fires_when_it_should_and_only_then(tmp_path: Path) -> None:
    published_rules(tmp_path, descriptions=False)
    result = subprocess.run(
        ['promtool', 'test', 'rules', TESTS.name],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_case_where_it_fires_and_one_where_it_does_not() -> None:
    cases: list[dict[str, Any]] = yaml.safe_load(TESTS.read_text())['tests']
    checks = [check for case in cases for check in case['alert_rule_test']]
    fires = {c['alertname'] for c in checks if c['exp_alerts']}
    silent = {c['alertname'] for c in checks if not c['exp_alerts']}
    assert fires == alert_names()
    assert silent == alert_names()


def test_every_published_rule_carries_the_topology_and_a_severity() -> None:
    for group in scrape.alert_rules(TOPOLOGY)['groups']:
        assert group['name'].startswith('demo_00000000-0000-4000-8000-000000000000_valkey_')
        for rule in group['rules']:
            assert rule['labels'] | TOPOLOGY.labels == rule['labels']
            assert rule['labels']['severity'] in {'warning', 'critical'}
            assert rule['annotations']['summary']
            assert rule['annotations']['description']
