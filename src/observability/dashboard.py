# Copyright 2026 The valkey-leader-k8s authors
# See LICENSE file for licensing details.

"""``grafana-dashboard`` (interface ``grafana_dashboard``): give Grafana the charm's dashboard.

The wire format (Grafana's charm library, ``grafana_k8s.v0.grafana_dashboard``,
which both sides of COS use): one key in the application databag,
``dashboards``, a JSON object ``{"templates": {<id>: <template>}, "uuid": ...}``
where each template is ``{"charm", "content", "juju_topology",
"inject_dropdowns", "dashboard_alt_uid"}`` and ``content`` is the dashboard
JSON compressed with LZMA (``.xz``), then base64-encoded. ``uuid`` only has to
change when the templates do.

``inject_dropdowns`` is false and ``juju_topology`` empty: the dashboard
carries its own ``juju_model``, ``juju_application`` and ``juju_unit``
variables and filters every query by them, so nothing in it names the unit
that wrote it, and a new leader finds exactly what it would write.
"""

from __future__ import annotations

import base64
import hashlib
import json
import lzma
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Final, cast

import ops

ENDPOINT: Final = 'grafana-dashboard'
KEY: Final = 'dashboards'
DASHBOARDS_DIR: Final = Path(__file__).parent / 'dashboards'


def compress(text: str) -> str:
    """LZMA, then base64: how the interface carries a dashboard."""
    return base64.b64encode(lzma.compress(text.encode())).decode()


def decompress(content: str) -> str:
    """The dashboard JSON a template's ``content`` carries."""
    return lzma.decompress(base64.b64decode(content)).decode()


def templates(charm_name: str, dashboards_dir: Path = DASHBOARDS_DIR) -> dict[str, Any]:
    """Every dashboard file, keyed ``file:<name>`` as the library keys files."""
    result: dict[str, Any] = {}
    for path in sorted(dashboards_dir.glob('*.json')):
        key = f'file:{path.stem}'
        result[key] = {
            'charm': charm_name,
            'content': compress(json.dumps(json.loads(path.read_text()), sort_keys=True)),
            'juju_topology': {},
            'inject_dropdowns': False,
            # What the library derives from the charm name and the key, for Grafana's uid.
            'dashboard_alt_uid': hashlib.shake_256(f'{charm_name}-{key}'.encode()).hexdigest(8),
        }
    return result


def app_data(charm_name: str) -> dict[str, str]:
    """The ``dashboards`` value the leader writes."""
    wanted = templates(charm_name)
    uuid = hashlib.sha256(json.dumps(_decoded(wanted), sort_keys=True).encode()).hexdigest()
    return {KEY: json.dumps({'templates': wanted, 'uuid': uuid[:32]}, sort_keys=True)}


def same_dashboards(current: str | None, wanted: str) -> bool:
    """Whether ``current`` holds the same dashboards, compared decompressed.

    The compressed bytes could differ between two builds of liblzma for the
    same dashboard; what Grafana shows could not.
    """
    try:
        current_templates = json.loads(current or '{}').get('templates')
        return _decoded(current_templates) == _decoded(json.loads(wanted)['templates'])
    except (ValueError, TypeError, AttributeError, KeyError, lzma.LZMAError):
        return False


def publish(
    relations: Iterable[ops.Relation],
    app: ops.Application,
    charm_name: str,
    *,
    before_write: Callable[[], None],
) -> None:
    """Write the dashboards to every relation where they differ (the leader only)."""
    wanted = app_data(charm_name)
    for relation in relations:
        bag = relation.data[app]
        if not same_dashboards(bag.get(KEY), wanted[KEY]):
            before_write()
            bag.update(wanted)


def _decoded(templates: Any) -> dict[str, Any]:
    """The templates with each ``content`` decompressed and parsed; raises if unreadable."""
    if not isinstance(templates, dict):
        raise TypeError('templates is not an object')
    decoded: dict[str, Any] = {}
    for key, template in cast('dict[str, dict[str, Any]]', templates).items():
        content = json.loads(decompress(str(template['content'])))
        decoded[key] = {**template, 'content': content}
    return decoded
