# Copyright 2026 The valkey-leader-k8s authors
# See LICENSE file for licensing details.

"""What the leader tells its peers, and how a unit is addressed.

The leader writes one :class:`LeaderRecord` into the ``valkey-peers``
application databag. Only the leader can write that databag, and every write
fires ``valkey-peers-relation-changed`` on the other units: this is how Juju
charms announce a leadership change today (``leader-settings-changed`` is
deprecated). See ``manage-leadership-changes`` in the ops documentation.

Nothing here knows about Juju events; it can be tested without a charm.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Final

PEER_ENDPOINT: Final = 'valkey-peers'

_UNIT_NAME = re.compile(r'[a-z][a-z0-9-]*/[0-9]+')
_DNS_NAME = re.compile(
    r'(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*',
    re.IGNORECASE,
)
_SECRET_ID = re.compile(r'secret:[0-9A-Za-z/:._-]+')


def pod_name(unit_name: str) -> str:
    """Kubernetes names a unit's pod after the unit: ``app/0`` runs in ``app-0``."""
    return unit_name.replace('/', '-')


def unit_address(unit_name: str, app_name: str, model_name: str) -> str:
    """The stable DNS name of a unit's pod, through the app's headless Service.

    Pod IPs change when a pod is rescheduled; this name does not.
    """
    return f'{pod_name(unit_name)}.{app_name}-endpoints.{model_name}.svc.cluster.local'


def _alias(key: str) -> dict[str, str]:
    return {'alias': key}


@dataclasses.dataclass(frozen=True, kw_only=True)
class LeaderRecord:
    """The leader's entry in the peer application databag.

    Loaded and saved with ``Relation.load``/``Relation.save``; each field is
    stored under its dashed key, JSON-encoded. Any unit may read it; only the
    leader may write it.
    """

    unit: str = dataclasses.field(metadata=_alias('leader-unit'))
    """The leader's unit name, such as ``valkey-leader-k8s/0``."""
    address: str = dataclasses.field(metadata=_alias('leader-address'))
    """The leader's stable DNS name: replicas point ``replicaof`` at it."""
    password_secret_id: str = dataclasses.field(metadata=_alias('password-secret-id'))
    """The id of the app secret holding the password: never the password itself."""
    password_revision: int = dataclasses.field(default=0, metadata=_alias('password-revision'))
    """The newest revision of the password secret the leader knows of.

    It moves with every new revision (``rotate-password``), and the change is
    what wakes the replicas up: they re-read the secret with ``refresh=True``
    and restart with the new password."""
    primary_service_selects: str = dataclasses.field(
        default='', metadata=_alias('primary-service-selects')
    )
    """The pod the ``<app>-primary`` Service was last pointed at, by the leader.

    The leader's own bookkeeping, kept where a successor finds it: when it
    already names this leader's pod, there is no Kubernetes call to make."""

    def __post_init__(self) -> None:
        """Refuse data that would put something unsafe into a replica's config file."""
        # The values come from JSON in relation data: check types, not just text.
        if not _matches(_UNIT_NAME, self.unit):
            raise ValueError(f'leader-unit is not a unit name: {self.unit!r}')
        if not _matches(_DNS_NAME, self.address):
            raise ValueError(f'leader-address is not a DNS name: {self.address!r}')
        if not _matches(_SECRET_ID, self.password_secret_id):
            raise ValueError('password-secret-id is not a secret id')
        if self.primary_service_selects and not _matches(_DNS_NAME, self.primary_service_selects):
            raise ValueError('primary-service-selects is not a pod name')
        revision: object = self.password_revision
        if type(revision) is not int or revision < 0:
            raise ValueError('password-revision is not a non-negative integer')


def _matches(pattern: re.Pattern[str], value: object) -> bool:
    return isinstance(value, str) and pattern.fullmatch(value) is not None
