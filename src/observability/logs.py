# Copyright 2026 The valkey-leader-k8s authors
# See LICENSE file for licensing details.

"""``logging`` (interface ``loki_push_api``): Pebble forwards the containers' logs to Loki.

Each Loki unit publishes its push URL in its unit databag, as
``endpoint = {"url": "http://.../loki/api/v1/push"}``; every unit of this
charm adds, in each of its containers, a Pebble layer with one ``loki`` log
target per Loki unit, forwarding every service's output
(https://documentation.ubuntu.com/pebble/reference/log-forwarding). A Loki unit
that left gets its target disabled (``services: [-all]``): a layer can replace
a target, not remove it.

Why Loki's push API rather than OTLP (``send-otlp``): Pebble's ``loki`` target
is in every Pebble that Juju 3.6 ships (log forwarding came with Juju 3.4),
needs no library (the OTLP one brings pydantic), and COS Lite's Loki takes it
as is; Pebble's ``opentelemetry`` target exists only in newer Pebbles, which
early Juju 3.6 releases do not ship.

Adding the layer changes the plan's log targets only: no ``replan``, so no
service restarts. No leadership: each unit forwards its own logs.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from typing import Any, Final

import ops
from ops import pebble

from observability import Topology

logger = logging.getLogger(__name__)

ENDPOINT: Final = 'logging'
LAYER: Final = 'log-forwarding'


def loki_urls(relations: Iterable[ops.Relation]) -> dict[str, str]:
    """Each Loki unit's push URL, by unit name; units without a usable one are skipped."""
    urls: dict[str, str] = {}
    for relation in relations:
        for unit in relation.units:
            raw = relation.data[unit].get('endpoint')
            if not raw:
                continue  # not published yet: its relation-changed runs us again
            try:
                url = json.loads(raw)['url']
            except (ValueError, TypeError, KeyError):
                url = None
            if not isinstance(url, str) or not url.startswith(('http://', 'https://')):
                logger.warning('Ignoring %s: its Loki endpoint is not an http(s) URL', unit.name)
                continue
            urls[unit.name] = url
    return urls


def targets(urls: dict[str, str], planned: Iterable[str], topology: Topology) -> dict[str, Any]:
    """The ``log-targets`` of the layer: one per Loki unit; those planned before and gone, off."""
    labels = {**topology.labels, 'juju_unit': topology.unit, 'product': 'Juju'}
    wanted: dict[str, Any] = {
        name: {
            'override': 'replace',
            'type': 'loki',
            'location': url,
            'services': ['all'],
            'labels': labels,
        }
        for name, url in sorted(urls.items())
    }
    for name in planned:
        if name not in wanted:
            wanted[name] = {
                'override': 'replace',
                'type': 'loki',
                'location': 'http://removed.invalid',  # required; never used with -all
                'services': ['-all'],
            }
    return wanted


def forward(container: ops.Container, urls: dict[str, str], topology: Topology) -> bool:
    """Make the container's plan forward to ``urls``; say whether it changed.

    Raises ``ops.pebble.Error`` (the caller turns it into a status).
    """
    planned: dict[str, Any] = dict(container.get_plan().to_dict().get('log-targets', {}))
    wanted = targets(urls, planned, topology)
    if all(
        _without_override(planned.get(name, {})) == _without_override(spec)
        for name, spec in wanted.items()
    ):
        return False
    container.add_layer(LAYER, pebble.Layer({'log-targets': wanted}), combine=True)
    return True


def _without_override(spec: dict[str, Any]) -> dict[str, Any]:
    # Whether a plan shows ``override`` is Pebble's business: compare without it.
    return {k: v for k, v in spec.items() if k != 'override'}
