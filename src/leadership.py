# Copyright 2026 The valkey-leader-k8s authors
# See LICENSE file for licensing details.

"""What the leader tells its peers, and how a unit is addressed.

The leader writes one :class:`LeaderRecord` into the ``valkey-peers``
application databag. Only the leader can write that databag, and every write
fires ``valkey-peers-relation-changed`` on the other units: this is how Juju
charms announce a leadership change today (``leader-settings-changed`` is
deprecated). See ``manage-leadership-changes`` in the ops documentation.

This module knows ops' relations, but no Juju events.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from typing import ClassVar, Final, Literal

import ops

logger = logging.getLogger(__name__)

PEER_ENDPOINT: Final = 'valkey-peers'
CLIENT_USERS_KEY: Final = 'client-users'
"""The peer application databag's key where the leader lists the client users."""

_UNIT_NAME = re.compile(r'[a-z][a-z0-9-]*/[0-9]+')
_DNS_NAME = re.compile(
    r'(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*',
    re.IGNORECASE,
)
_SECRET_ID = re.compile(r'secret:[0-9A-Za-z/:._-]+')
_REASON = re.compile(r'[^\x00-\x1f\x7f]{1,200}')


class LeadershipLostError(Exception):
    """This unit stopped being the leader in the middle of the hook."""


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
    and apply the new password live."""
    primary_unit: str = dataclasses.field(default='', metadata=_alias('primary-unit'))
    """The unit whose server acts as primary for the leader; empty: the leader's own.

    Leadership is not data: a new leader's server may still be syncing, behind,
    or unable to take over. Until it can, the server that has the writes stays
    primary, and every unit (and ``<app>-primary``) must know which one it is."""
    primary_address: str = dataclasses.field(default='', metadata=_alias('primary-address'))
    """The acting primary's stable DNS name; empty without ``primary_unit``."""
    primary_reason: str = dataclasses.field(default='', metadata=_alias('primary-reason'))
    """Why the leader's server is not the primary, in words for a status."""

    @property
    def primary(self) -> str:
        """The unit whose server accepts writes: the acting primary's, or the leader's."""
        return self.primary_unit or self.unit

    def __post_init__(self) -> None:
        """Refuse data that would put something unsafe into a replica's config file."""
        # The values come from JSON in relation data: check types, not just text.
        if not _matches(_UNIT_NAME, self.unit):
            raise ValueError(f'leader-unit is not a unit name: {self.unit!r}')
        if not _matches(_DNS_NAME, self.address):
            raise ValueError(f'leader-address is not a DNS name: {self.address!r}')
        if not _matches(_SECRET_ID, self.password_secret_id):
            raise ValueError('password-secret-id is not a secret id')
        revision: object = self.password_revision
        if type(revision) is not int or revision < 0:
            raise ValueError('password-revision is not a non-negative integer')
        if self.primary_unit == '':
            if self.primary_address != '' or self.primary_reason != '':
                raise ValueError('primary-address and primary-reason need a primary-unit')
            return
        if not _matches(_UNIT_NAME, self.primary_unit):
            raise ValueError(f'primary-unit is not a unit name: {self.primary_unit!r}')
        if not _matches(_DNS_NAME, self.primary_address):
            raise ValueError(f'primary-address is not a DNS name: {self.primary_address!r}')
        if not _matches(_REASON, self.primary_reason):
            raise ValueError('primary-reason is not one line of 1 to 200 characters')


def _matches(pattern: re.Pattern[str], value: object) -> bool:
    return isinstance(value, str) and pattern.fullmatch(value) is not None


def read_record(
    relation: ops.Relation | None, app: ops.Application
) -> LeaderRecord | ops.StatusBase:
    """What the leader published in the peer databag, or why there is nothing usable."""
    if relation is None:
        return ops.WaitingStatus(f'waiting for the {PEER_ENDPOINT} relation')
    if not relation.data[app]:
        return ops.WaitingStatus('waiting for the leader to publish its address')
    try:
        return relation.load(LeaderRecord, app)
    except (TypeError, ValueError) as e:
        logger.warning('Ignoring unusable leader data in %s: %s', PEER_ENDPOINT, e)
        return ops.WaitingStatus('leader data is incomplete; waiting for the leader to rewrite it')


def leader_to_follow(
    record: LeaderRecord | ops.StatusBase, unit_name: str
) -> LeaderRecord | ops.StatusBase:
    """The leader a non-leader must replicate from, or why it cannot yet."""
    if isinstance(record, LeaderRecord) and record.unit == unit_name:
        # This unit led until recently. Replicating from itself would be
        # absurd; it keeps its last file until the new leader publishes.
        return ops.WaitingStatus('no longer the leader; waiting for the new leader')
    return record


@dataclasses.dataclass(frozen=True)
class Role:
    """What a unit's config file makes its server.

    ``Role.PRIMARY``, or ``Role.replica_of(record)`` (of the published primary):
    said in words by ``str(role)``.
    """

    kind: Literal['primary', 'replica']
    primary_unit: str = ''
    """For a replica: the unit whose server it replicates from."""
    primary_address: str = ''
    """For a replica: that unit's stable DNS name, for the file's ``replicaof`` line."""

    PRIMARY: ClassVar[Role]

    acting_because: str = ''
    """For a replica of a server acting for the leader: why the leader's is not primary."""

    @classmethod
    def replica_of(cls, leader: LeaderRecord) -> Role:
        """A replica of the published primary: the leader's server, or the one acting for it."""
        if leader.primary_unit:
            return cls(
                'replica',
                primary_unit=leader.primary_unit,
                primary_address=leader.primary_address,
                acting_because=leader.primary_reason,
            )
        return cls('replica', primary_unit=leader.unit, primary_address=leader.address)

    @classmethod
    def in_record(cls, record: LeaderRecord, unit_name: str) -> Role:
        """What the published record makes ``unit_name``: the primary, or a replica of it."""
        return cls.PRIMARY if record.primary == unit_name else cls.replica_of(record)

    @property
    def replicaof(self) -> str | None:
        """What the file's ``replicaof`` line names: nothing on the primary."""
        return self.primary_address if self.kind == 'replica' else None

    def __str__(self) -> str:
        """The role in the words of the unit's status."""
        return 'primary' if self.kind == 'primary' else f'replica of {self.primary_unit}'


Role.PRIMARY = Role('primary')


_SEVERITY: Final = ('active', 'waiting', 'maintenance', 'blocked', 'error')


def most_severe(*statuses: ops.StatusBase | None) -> ops.StatusBase | None:
    """The status ops would show of these (its priority order), the first among equals."""
    present = [status for status in statuses if status is not None]
    return max(present, key=lambda status: _SEVERITY.index(status.name), default=None)


def statuses(
    *,
    config_problem: ops.StatusBase | None,
    last_problem: ops.StatusBase | None,
    record: LeaderRecord | ops.StatusBase | None,
    unit_name: str,
    leading: bool,
    file_role: str,
) -> list[ops.StatusBase]:
    """A unit's statuses, most telling first: ops reports the highest priority, first among equals.

    ``record`` is what the leader published (``None``: nothing yet, on the
    leader itself) or why it is not usable; ``file_role`` is what the unit's
    config file makes it.
    """
    found = [status for status in (config_problem, last_problem) if status is not None]
    if isinstance(record, ops.StatusBase):
        return [*found, record]
    # A leader aims at the primary role until its own record says otherwise.
    if record is None or (leading and record.unit != unit_name):
        role = Role.PRIMARY
    else:
        role = Role.in_record(record, unit_name)
    wanted = str(role)
    if file_role != wanted:
        if not file_role:
            return [*found, ops.WaitingStatus('no config file yet')]
        # Seen on events the charm does not act on: the next one it acts on moves the role.
        return [*found, ops.WaitingStatus(f'still {file_role}; about to become {wanted}')]
    if record is not None and record.primary_unit == unit_name and not leading:
        acting = f'primary (acting for {record.unit}: {record.primary_reason})'
        return [*found, ops.ActiveStatus(acting)]
    if leading and role.kind == 'replica':
        why = f'not the primary yet: {role.acting_because}; {role.primary_unit} acts for it'
        return [*found, ops.WaitingStatus(why)]
    if role.acting_because:
        return [*found, ops.ActiveStatus(f'{wanted} (acting primary: {role.acting_because})')]
    return [*found, ops.ActiveStatus(wanted)]


def run_on_the_leader_instead(leader: LeaderRecord | ops.StatusBase, app: ops.Application) -> str:
    """What a non-leader answers an action only the leader can run.

    ``leader`` is never this unit: it may have led until just now.
    """
    where = 'leadership is moving to another unit'
    if isinstance(leader, LeaderRecord):
        where = f'the leader is {leader.unit}'
    run = f'juju run {app.name}/leader rotate-password'
    return f'Only the leader can rotate the password ({where}). Run: {run}'
