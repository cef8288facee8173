# Copyright 2026 The valkey-leader-k8s authors
# See LICENSE file for licensing details.

"""``metrics-endpoint`` (interface ``prometheus_scrape``): tell Prometheus what to scrape.

The wire format (canonical/charm-relation-interfaces,
``interfaces/prometheus_scrape/v0``), all values JSON strings:

* application databag (the leader): ``scrape_jobs`` (Prometheus
  ``scrape_config`` entries whose target ``*:<port>`` means "every unit, on
  this port"), ``scrape_metadata`` (the Juju topology) and ``alert_rules``
  (a Prometheus rules file, each rule labelled with the topology);
* unit databag (every unit): ``prometheus_scrape_unit_address`` and
  ``prometheus_scrape_unit_name``.

Prometheus's side expands ``*`` into each unit's address, labels every series
with ``juju_model``, ``juju_model_uuid``, ``juju_application``, ``juju_charm``
and ``juju_unit``, and adds the topology to every selector of the rules.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Final

import ops
import yaml

from observability import Topology

ENDPOINT: Final = 'metrics-endpoint'
EXPORTER_PORT: Final = 9121
"""Where each unit's ``redis_exporter`` serves ``/metrics``."""
RULES_DIR: Final = Path(__file__).parent / 'alert_rules'
JOBS: Final = (
    {
        'job_name': 'valkey',
        'metrics_path': '/metrics',
        'static_configs': [{'targets': [f'*:{EXPORTER_PORT}']}],
    },
)


def alert_rules(topology: Topology, rules_dir: Path = RULES_DIR) -> dict[str, Any]:
    """The charm's rules files as one rules file, labelled with the application's topology.

    The labels say which application an alert is about; the group names are
    prefixed with the topology so that two applications' groups never clash.
    """
    groups: list[dict[str, Any]] = []
    for path in sorted(rules_dir.glob('*.rules.yaml')):
        for group in yaml.safe_load(path.read_text())['groups']:
            rules = [
                {**rule, 'labels': {**rule.get('labels', {}), **topology.labels}}
                for rule in group['rules']
            ]
            groups.append({'name': f'{topology.identifier}_{group["name"]}', 'rules': rules})
    return {'groups': groups}


def app_data(topology: Topology) -> dict[str, str]:
    """What the leader writes to the application databag."""
    metadata = {
        'model': topology.model,
        'model_uuid': topology.model_uuid,
        'application': topology.application,
        'unit': topology.unit,
        'charm_name': topology.charm_name,
    }
    return {
        'scrape_jobs': json.dumps(list(JOBS), sort_keys=True),
        'scrape_metadata': json.dumps(metadata, sort_keys=True),
        'alert_rules': json.dumps(alert_rules(topology), sort_keys=True),
    }


def unit_data(unit_name: str, address: str) -> dict[str, str]:
    """What each unit writes to its own unit databag: where Prometheus finds it."""
    return {'prometheus_scrape_unit_address': address, 'prometheus_scrape_unit_name': unit_name}


def same_app_data(current: dict[str, str], wanted: dict[str, str]) -> bool:
    """Whether ``current`` already says what ``wanted`` says, whoever wrote it.

    ``scrape_metadata`` names the unit that wrote it (the schema requires a
    ``unit``); Prometheus's side labels nothing with it (each series gets
    ``juju_unit`` from the unit databag of the unit it was scraped from). So
    a new leader finding its predecessor's name there, and all else equal,
    rewrites nothing.
    """
    if current.keys() & wanted.keys() != wanted.keys():
        return False
    for key, value in wanted.items():
        if key == 'scrape_metadata':
            if _without_unit(current[key]) != _without_unit(value):
                return False
        elif current[key] != value:
            return False
    return True


def publish(
    relations: Iterable[ops.Relation],
    app: ops.Application,
    unit: ops.Unit,
    topology: Topology,
    address: str,
    *,
    before_write: Callable[[], None] | None,
) -> None:
    """Write this unit's address to every relation; the leader (``before_write``) the app data.

    ``before_write`` is the charm's "am I still the leader?" check; ``None`` on
    a unit that does not lead. Only what differs is written.
    """
    wanted_app = app_data(topology)
    wanted_unit = unit_data(unit.name, address)
    for relation in relations:
        unit_bag = relation.data[unit]
        if any(unit_bag.get(k) != v for k, v in wanted_unit.items()):
            unit_bag.update(wanted_unit)
        if before_write is None:
            continue
        app_bag = relation.data[app]
        if not same_app_data(dict(app_bag), wanted_app):
            before_write()
            app_bag.update(wanted_app)


def _without_unit(metadata: str) -> object:
    try:
        decoded = json.loads(metadata)
    except ValueError:
        return None
    if isinstance(decoded, dict):
        decoded.pop('unit', None)  # pyright: ignore[reportUnknownMemberType]
    return decoded  # pyright: ignore[reportUnknownVariableType]
