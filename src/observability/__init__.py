# Copyright 2026 The valkey-leader-k8s authors
# See LICENSE file for licensing details.

"""The Canonical Observability Stack (COS) integrations: one module per relation.

* :mod:`observability.scrape`: ``metrics-endpoint`` (``prometheus_scrape``):
  where Prometheus scrapes each unit's ``redis_exporter``, and the alert rules.
* :mod:`observability.dashboard`: ``grafana-dashboard`` (``grafana_dashboard``):
  the dashboard.
* :mod:`observability.logs`: ``logging`` (``loki_push_api``): Pebble forwards
  both containers' logs to Loki.

Written from the interfaces' wire formats rather than with Canonical's charm
libraries, which are not on PyPI. Leadership as everywhere in this charm: only
the leader writes the application databags, checking ``before_write`` right
before, and never rewrites what its predecessor left when it is unchanged;
each unit writes its own unit databag. Each module is imported only by a hook
in which its relation exists.

This package knows ops' relations, but no Juju events.
"""

from __future__ import annotations

import dataclasses

import ops


@dataclasses.dataclass(frozen=True, kw_only=True)
class Topology:
    """Where the data comes from, as COS labels it (``juju_model``, ``juju_application``...)."""

    model: str
    model_uuid: str
    application: str
    charm_name: str
    unit: str

    @classmethod
    def of(cls, charm: ops.CharmBase) -> Topology:
        """The charm's own topology, this unit included."""
        return cls(
            model=charm.model.name,
            model_uuid=charm.model.uuid,
            application=charm.app.name,
            charm_name=charm.meta.name,
            unit=charm.unit.name,
        )

    @property
    def labels(self) -> dict[str, str]:
        """The application's labels: what the alert rules carry, and Prometheus matches on."""
        return {
            'juju_model': self.model,
            'juju_model_uuid': self.model_uuid,
            'juju_application': self.application,
            'juju_charm': self.charm_name,
        }

    @property
    def identifier(self) -> str:
        """Unique to the application across models: prefixes the alert rule group names."""
        return f'{self.model}_{self.model_uuid}_{self.application}'
