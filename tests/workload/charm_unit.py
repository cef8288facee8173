# Copyright 2026 The valkey-leader-k8s authors
# See LICENSE file for licensing details.

"""One unit of the charm, run by ops.testing on real directories.

The workload container's ``/run/valkey`` and ``/var/lib/valkey`` are mounts
backed by directories under the unit's root, so the config file a real
``valkey-server`` reads is exactly the one the charm pushed: never a template
rendered separately.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Final

import ops
from ops import testing

from charm import ValkeyLeaderCharm

from . import valkey_server

REPO_ROOT: Final = Path(__file__).resolve().parents[2]
APP: Final = 'valkey-leader-k8s'
PEERS: Final = 'valkey-peers'
PEER_RELATION_ID: Final = 7
MODEL: Final = testing.Model(name='demo', uuid='6e1b2f3a-7c4d-4e5f-8a9b-0c1d2e3f4a5b')
"""Every unit of one application is in the same model."""

ConfigValues = Mapping[str, str | int | float | bool]


def unit_name(unit_id: int) -> str:
    return f'{APP}/{unit_id}'


def unit_dns_name(unit_id: int) -> str:
    """The stable DNS name the charm writes into a follower's ``replicaof`` line."""
    return f'{APP}-{unit_id}.{APP}-endpoints.{MODEL.name}.svc.cluster.local'


def peer_relation(
    unit_id: int, app_data: Mapping[str, str], peers: Iterable[int]
) -> testing.PeerRelation:
    """The peer relation as ``unit_id`` sees it: the shared app databag, and its peers."""
    return testing.PeerRelation(
        PEERS,
        id=PEER_RELATION_ID,
        local_app_data=dict(app_data),
        peers_data={peer: {} for peer in peers if peer != unit_id},
    )


@dataclasses.dataclass
class CharmUnit:
    """A unit's charm (an ops.testing Context) and the directories behind its container."""

    unit_id: int
    root: Path
    ctx: testing.Context[ValkeyLeaderCharm] = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        charm_root = self.root / 'charm'
        if not charm_root.exists():
            # What the packed charm ships besides code: the templates.
            shutil.copytree(REPO_ROOT / 'templates', charm_root / 'templates')
        self.etc_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.ctx = testing.Context(ValkeyLeaderCharm, charm_root=charm_root, unit_id=self.unit_id)

    @property
    def name(self) -> str:
        return unit_name(self.unit_id)

    @property
    def etc_dir(self) -> Path:
        """Behind the container's ``/run/valkey``: a new pod starts with it empty."""
        return self.root / 'etc'

    @property
    def data_dir(self) -> Path:
        """Behind ``/var/lib/valkey``: the ``data`` storage, kept across pods."""
        return self.root / 'data'

    @property
    def config_file(self) -> Path:
        return self.etc_dir / 'valkey.conf'

    def read_config(self) -> str | None:
        return self.config_file.read_text() if self.config_file.exists() else None

    def container(self, *, can_connect: bool = True) -> testing.Container:
        """A new workload container (empty Pebble plan) with the unit's mounts."""
        return testing.Container(
            'valkey',
            can_connect=can_connect,
            mounts={
                'etc': testing.Mount(location='/run/valkey', source=self.etc_dir),
                'data': testing.Mount(location='/var/lib/valkey', source=self.data_dir),
            },
            execs={
                # The charm reads the workload version from the real binary's answer.
                testing.Exec(
                    ['valkey-server', '--version'], stdout=valkey_server.version_output()
                ),
            },
        )


def leader_state(
    unit: CharmUnit,
    *,
    config: ConfigValues | None = None,
    secrets: Iterable[testing.Secret] = (),
    peers: Iterable[int] = (0, 1),
) -> testing.State:
    """A freshly elected leader, before it has published anything."""
    return testing.State(
        leader=True,
        model=MODEL,
        config=dict(config or {}),
        relations={peer_relation(unit.unit_id, {}, peers)},
        secrets=frozenset(secrets),
        containers={unit.container()},
    )


def follower_state(
    unit: CharmUnit, leader_out: testing.State, *, config: ConfigValues | None = None
) -> testing.State:
    """What a follower sees once the leader's hook ended: its databag and the app's secrets."""
    relation = leader_out.get_relation(PEER_RELATION_ID)
    peers = {*relation.peers_data, 0} if isinstance(relation, testing.PeerRelation) else {0}
    return testing.State(
        leader=False,
        model=MODEL,
        config=dict(leader_out.config if config is None else config),
        relations={peer_relation(unit.unit_id, relation.local_app_data, peers)},
        secrets=leader_out.secrets,
        containers={unit.container()},
    )


def app_password(state: testing.State) -> str:
    """The password in the charm's ``admin-password`` app secret, as the leader left it."""
    (secret,) = [s for s in state.secrets if s.label == 'admin-password']
    return secret.latest_content['password']


def is_active(state: testing.State) -> bool:
    return isinstance(state.unit_status, ops.ActiveStatus)
