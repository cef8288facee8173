# Copyright 2026 The valkey-leader-k8s authors
# See LICENSE file for licensing details.

"""A deterministic, single-process stand-in for Juju running a 3-unit application.

Test code only: the charm does not know it exists. Each unit is the real
charm run by ops.testing (one ``Context`` and one ``State`` per unit, see
``tests/workload/charm_unit.py``) and one real ``valkey-server`` started from
the file the charm pushed into that unit's container.

What the driver holds, as Juju would:

* the peer relation's **application databag**, one for the application; only
  the leader's hooks can change it (ops.testing refuses a write from any other
  unit), and when a leader's hook changed it, every other unit in the relation
  gets ``valkey-peers-relation-changed``;
* the application's **secrets** and their revisions: the latest content, as
  the owner (the leader) left it, and which revision each unit tracks. A unit
  sees a new revision only when it reads with ``refresh=True``. Once no unit
  tracks an old revision, the leader gets ``secret-remove`` for it;
* who is **leader**, and the **config**, which is the application's;
* the **client relations** (:meth:`Application.integrate_client`): a client
  application that is not run, whose application databag holds its request;
  this application's databag in the relation (only the leader's hooks can
  change it); the grants of the app secrets the leader made to the client,
  which :meth:`Application.client_credentials` honours as Juju does for the
  client's ``secret-get``;
* one **event queue** per unit, delivered in the order Juju uses:

  - deploy: ``install``, ``valkey-peers-relation-created``, ``leader-elected``
    (the leader only), ``config-changed``, ``start``, ``valkey-pebble-ready``
    (Pebble answers from then on);
  - ``juju config``: ``config-changed`` on every unit;
  - ``juju integrate <client> <app>``: ``valkey-client-relation-created``,
    then ``valkey-client-relation-changed`` on every unit;
    ``juju remove-relation``: ``valkey-client-relation-departed``, then
    ``valkey-client-relation-broken`` on every unit;
  - a pod deleted (``kubectl delete pod``, eviction, node failure): ``stop`` on
    the dying pod; the StatefulSet recreates it under the same unit name, with
    its storage but a new charm container (no StoredState) and a new workload
    container, and the new pod runs ``upgrade-charm``, ``config-changed``,
    ``start``, ``valkey-pebble-ready``. The unit never leaves the peer
    relation: no other unit sees ``relation-departed``. See :meth:`Application.delete_pod`;
  - scale-down (``juju scale-application <app> <n>``): the highest-numbered
    unit leaves; the others get ``valkey-peers-relation-departed``;
  - Juju electing another leader once the old one's lease ran out:
    ``leader-elected`` on it.

  Events the charm does not act on and that carry no state it uses are left
  out: ``storage-attached``, ``leader-settings-changed`` (deprecated, not
  observed, and not in ops.testing), and ``relation-joined`` with the peers'
  empty unit databags.

* the **leader's lease** inside a hook (:class:`LeaseExpiry`): a test can let
  it run out during the k-th slow call of a unit's next hook. Slow calls are
  the points where a hook waits on something outside the charm: today every
  Kubernetes API request (``FakeKubernetes.on_request``); a fake of another
  slow service calls :meth:`Application.slow_call` to become one more.

Rounds: each round delivers the next queued event of every unit that has one,
in unit order: Juju runs the units' hooks concurrently, so a round is "every
unit that has something to do does the next thing". When no event is left, every
unit gets ``update-status``; if none of those changes anything (no file
pushed, no server restarted, no databag or secret write, no event queued), the
application has converged. A bound on rounds turns a loop into a failure.

Addresses: a client connects to the ``<host>:6379`` it was given through
:meth:`Application.resolve`: ``<app>-primary`` goes to the pod the Service
selects now, a unit's DNS name to that unit's server. A follower's file says
``replicaof <leader pod>.<app>-endpoints.<model>.svc.cluster.local 6379``.
Each unit's server listens on its own free port on 127.0.0.1; the driver maps
the DNS name in the file to that port and passes ``--replicaof 127.0.0.1
<port>`` on the command line, which overrides the file's line (see
``tests/workload/valkey_server.py``).

In pods (``Application(..., pods=Cluster(...))``, see ``pods.py``) none of
that mapping is needed: each unit's pod is a network namespace with the
server on its own ``127.0.0.1:6379`` and pod address, its stable DNS name
resolves to that address while the pod exists, ``<app>-primary`` to the pod
the Service selects, and every hook runs inside the unit's pod with nothing
of the charm patched: the file's ``replicaof`` and ``replica-announce-ip``
names are used as written.

Workload: after every hook, if the charm's Pebble plan runs the ``valkey``
service, the unit's server is started if it is not running, and restarted
if the charm pushed a different file since it started: what Pebble does on
``replan``/``restart``, with the real file.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import functools
import json
import shutil
import time
from collections.abc import Callable, Generator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Final

import ops
from ops import testing

import clients
import primary_service
from workload import client, handover
from workload import config as valkey_config

from ..fake_kubernetes import FakeKubernetes, Request
from ..workload.charm_unit import (
    APP,
    MODEL,
    PEER_RELATION_ID,
    CharmUnit,
    ConfigValues,
    peer_relation,
    unit_dns_name,
    unit_name,
)
from ..workload.valkey_server import ValkeyServer
from .pods import Cluster, PodServer

MAX_ROUNDS: Final = 30
PASSWORD_LABEL: Final = 'admin-password'
_HAND_OVER: Final = handover.hand_over
PRIMARY_SERVICE: Final = primary_service.service_name(APP)
CLIENT_ENDPOINT: Final = clients.ENDPOINT
PRIMARY_DNS_NAME: Final = f'{PRIMARY_SERVICE}.{MODEL.name}.svc.cluster.local'
"""The name clients write to: the ``<app>-primary`` Service."""
FIRST_CLIENT_RELATION_ID: Final = 20
"""Client relations get ids from here on (the peer relation is ``PEER_RELATION_ID``)."""

DEPLOY_EVENTS: Final = ('install', 'relation-created', 'config-changed', 'start', 'pebble-ready')
POD_START_UP_EVENTS: Final = ('upgrade-charm', 'config-changed', 'start', 'pebble-ready')
"""What a recreated pod of an existing unit runs, in this order.

The Kubernetes row of the upgrade-charm event's page (juju.is/docs/sdk/upgrade-charm-event,
discourse.charmhub.io/t/event-upgrade-charm/6485): ``stop`` (old pod) ->
``upgrade-charm`` -> ``config-changed`` -> ``leader-settings-changed`` (if not
leader) -> ``start`` -> ``<container>-pebble-ready``, with no relation events
and no ``leader-elected``. That Juju runs this sequence also when a pod is
deleted and recreated without a refresh is LP#2021891, as quoted in the
canonical/charm-refresh specification ("If, at any time, a pod is deleted and
re-created, Juju may emit an upgrade-charm event on that unit"), and what
canonical/pgbouncer-k8s-operator#134 relies on ("upgrade-charm ... is executed
after a pod is rescheduled (like when we manually delete the pod)").
``stop`` runs in the dying pod (:meth:`Application.delete_pod`);
``leader-settings-changed`` is left out (see the module docstring)."""


SLOW_PEBBLE_CALLS: Final = (
    'can_connect',
    'get_plan',
    'get_services',
    'list_files',
    'make_dir',
    'pull',
    'push',
    'exec',
    'add_layer',
    'replan',
    'start',
    'restart',
)
"""The ``ops.Container`` methods that make one Pebble API request each.

``get_service`` is left out: it calls ``get_services``, which is counted."""


class NotConvergedError(AssertionError):
    """The units kept changing things for longer than the bound on rounds."""


@dataclasses.dataclass(frozen=True)
class Pending:
    """An event queued for one unit."""

    kind: str
    remote: int | None = None
    """The other unit of a relation event."""
    departing: int | None = None
    """The unit leaving the relation, in a relation-departed event."""
    revision: int | None = None
    """The revision of a secret-remove event."""
    relation_id: int | None = None
    """The client relation of a relation event; ``None`` for the peer relation."""
    secret_id: str | None = None
    """The secret of a secret-remove event; ``None`` for the admin password's."""


@dataclasses.dataclass(frozen=True)
class LeaseExpiry:
    """The lease of ``unit_id`` runs out during the ``at_slow_call``-th slow call of its next hook.

    How this is modelled, and where each choice comes from:

    * Juju guarantees leadership for 30 s after ``leader-elected`` or an
      ``is-leader`` answer (the how-to, "Manage leadership changes"), and ops
      caches ``is_leader()`` for those 30 s (``ops/model.py``,
      ``_ModelBackend.is_leader`` and ``_leader_check_time``).
    * ``noticed=True``: the slow call took longer than that, so ops' cache has
      expired and the next ``is_leader()`` asks Juju, which answers False.
      Every leadership check in the rest of the hook sees it: the charm's own
      ``self.unit.is_leader()``, and ops' checks before an app-status or
      app-databag write. (ops.testing's hook tools read ``State.leader``; the
      driver flips it on the hook's live State, see ``Application._lease_runs_out``.)
    * ``noticed=False``: the call was quicker than 30 s, so ``is_leader()``
      still answers True from ops' cache until the hook ends.
    * Either way Juju commits a hook's relation-data and secret changes in one
      call when the hook ends (juju/juju ``worker/uniter/runner/context/context.go``,
      ``HookContext.Flush`` -> ``doFlush`` -> one ``CommitHookChanges``), and
      refuses application data from a unit that is no longer leader: the hook
      fails, none of its Juju-side writes are committed, and Juju runs the same
      hook again later. What the hook already did outside Juju stays: the
      Kubernetes objects it applied, the files it pushed, the service it
      (re)started, the StoredState in its own container.
    * Juju then elects ``then`` (which may be the same unit again): it gets
      ``leader-elected``.
    """

    unit_id: int
    at_slow_call: int
    then: int
    noticed: bool = True
    points: tuple[str, ...] = ('kubernetes',)
    """Which slow calls count for ``at_slow_call``: ``kubernetes`` (every API
    request), ``pebble`` (every Pebble request, :data:`SLOW_PEBBLE_CALLS`),
    ``valkey`` (a new leader's handover from the old primary; the lease runs
    out once the handover is over)."""


@dataclasses.dataclass(frozen=True)
class Hook:
    """What one dispatched hook did, as the narration shows it. Never a password."""

    number: int
    unit: str
    event: str
    leader: bool
    """Whether the unit led when the hook started."""
    status: ops.StatusBase
    published: Mapping[str, str]
    """Keys of the peer app databag this hook changed, with their new values."""
    wrote: str | None
    """``primary`` or the ``replicaof`` line, when the charm pushed a new file."""
    workload: str | None
    """``started``/``restarted`` and the command-line mapping, when the server was."""
    file_role: str | None
    """What the unit's file on disk makes it after the hook, in the words of its
    status: ``primary`` or ``replica of <unit>``; ``None`` before the first file."""
    check: bool
    """An ``update-status`` of the convergence check."""
    slow_calls: tuple[str, ...] = ()
    """The slow calls the hook made, in order (``kubernetes GET .../statefulsets/...``,
    ``pebble pull``)."""
    lease_ran_out: bool = False
    """The unit's lease ran out during one of those calls."""
    failed: str | None = None
    """Why Juju marked the hook failed (it runs it again later): the charm
    raised, or Juju refused to commit its writes."""
    service_selects: str | None = None
    """The pod ``<app>-primary`` selected after the hook, if it changed in the hook."""
    answered: tuple[str, ...] = ()
    """The client relations whose application databag the hook changed (``valkey-client:20``)."""
    started: float = 0.0
    """``time.monotonic()`` when the driver began dispatching the hook: the
    failover benchmark times the workload from the start of the hook that switches it."""
    handover: Handover | None = None
    """The old primary's handover this hook asked for (``handover.hand_over``), if any."""

    @property
    def changed(self) -> bool:
        return bool(
            self.published
            or self.answered
            or self.wrote
            or self.workload
            or self.failed
            or self.lease_ran_out
            or self.service_selects
        )


@dataclasses.dataclass(frozen=True)
class Handover:
    """A new leader's ``handover.hand_over`` from the server its own server followed."""

    from_unit: str | None
    """The unit whose server was asked to hand over (``None``: no unit listens there)."""
    status: handover.HandoverStatus
    reason: str
    started: float
    """``time.monotonic()`` when the charm called ``hand_over``."""
    seconds: float


@dataclasses.dataclass(frozen=True)
class Settled:
    """How the application got to a state where no unit changes anything."""

    hooks: int
    """Hooks (and actions) dispatched since the previous settle, check excluded."""
    rounds: int
    checks: int
    """``update-status`` hooks that proved nothing changes any more."""


@dataclasses.dataclass(frozen=True)
class UnitView:
    """One unit as its running server and its charm describe it."""

    unit: str
    leader: bool
    role: str
    """``primary`` or ``replica`` (from ``INFO replication``), or ``down``."""
    replicating_from: str | None
    """The unit whose server this one replicates from (by its port)."""
    link: str | None
    """``master_link_status`` of a replica: ``up`` once in sync."""
    keys: int | None
    status: str
    """The unit status the charm set, as ``juju status`` shows it."""


@dataclasses.dataclass
class SimUnit:
    """One unit: its charm, its last output State, its queue and its server."""

    charm: CharmUnit
    server: ValkeyServer
    leader: bool = False
    alive: bool = True
    """The unit exists in the model (scale-down removes it for good)."""
    pod_up: bool = True
    """Its pod runs (between a pod's deletion and its recreation, it does not)."""
    in_relation: bool = False
    departing: bool = False
    """Scale-down chose it: the other units no longer see it in the relation."""
    pebble_up: bool = False
    state: testing.State | None = None
    queue: collections.deque[Pending] = dataclasses.field(
        default_factory=collections.deque[Pending]
    )
    tracked: dict[str, int] = dataclasses.field(default_factory=dict[str, int])
    """The revision of each app secret this unit tracks (Juju keeps it, not the pod)."""
    file_seen: str | None = None
    """The unit's config file as the previous hook left it."""

    @property
    def unit_id(self) -> int:
        return self.charm.unit_id

    @property
    def name(self) -> str:
        return self.charm.name

    @property
    def runs_hooks(self) -> bool:
        return self.alive and self.pod_up


@dataclasses.dataclass
class AppSecret:
    """An application secret as Juju holds it: every revision, and its metadata."""

    id: str
    label: str | None
    description: str | None
    revisions: dict[int, dict[str, str]]
    grants: dict[int, frozenset[str]] = dataclasses.field(
        default_factory=dict[int, frozenset[str]]
    )
    """The applications the owner granted it to, by relation id (``secret-grant``)."""

    @property
    def latest(self) -> int:
        return max(self.revisions)


@dataclasses.dataclass
class ClientRelation:
    """A client application's relation on ``valkey-client``, as Juju holds it.

    The client application is not run: its one unit (``<app>/0``) wrote its
    request into its application databag before the relation reached this
    application, as the interface library's requirer does in its own
    ``relation-created``/``relation-joined``, and reads what the leader answers.
    """

    id: int
    app: str
    requirer_data: dict[str, str]
    """The client's application databag: its request (what the requirer sends)."""
    provider_data: dict[str, str] = dataclasses.field(default_factory=dict[str, str])
    """This application's databag in the relation: only the leader's hooks write it."""
    unit_data: dict[int, dict[str, str]] = dataclasses.field(
        default_factory=dict[int, dict[str, str]]
    )
    """Each unit's own databag in the relation, as its last hook left it."""
    members: set[int] = dataclasses.field(default_factory=set[int])
    """The units that ran its ``relation-created`` and not yet its ``relation-broken``."""
    removing: bool = False
    """``juju remove-relation`` was run: it is gone once no unit is a member."""
    tracked: dict[str, int] = dataclasses.field(default_factory=dict[str, int])
    """The revision of each granted secret the client read last (it tracks it in Juju)."""


@dataclasses.dataclass(frozen=True)
class ClientCredentials:
    """What the client application reads: the answer in the relation, and the granted secret."""

    username: str
    password: str = dataclasses.field(repr=False)
    endpoints: str
    """Where to write: ``<app>-primary.<model>.svc.cluster.local:6379``."""
    read_only_endpoints: str
    resource: str
    """The keys its user may use (``shop:*``)."""
    secret_id: str
    secret_revision: int


@dataclasses.dataclass
class _Running:
    """The hook being dispatched: whose, its live State, its slow calls."""

    unit: SimUnit
    live_state: testing.State
    check: bool = False
    slow_calls: list[str] = dataclasses.field(default_factory=list[str])
    lease_ran_out: bool = False
    service_restarted: bool = False
    """The charm (re)started the Valkey service (replan, restart or start) in this hook."""
    handover: Handover | None = None


class Application:
    """A 3-unit (by default) application of the charm, driven like Juju drives it."""

    def __init__(
        self,
        workdir: Path,
        *,
        units: int = 3,
        config: ConfigValues | None = None,
        on_hook: Callable[[Hook], None] | None = None,
        max_rounds: int = MAX_ROUNDS,
        pods: Cluster | None = None,
    ) -> None:
        self.workdir = workdir
        self.pods = pods
        """The pod network and cluster DNS, when each unit runs in a pod of its own."""
        self.config: dict[str, str | int | float | bool] = dict(config or {})
        self.app_data: dict[str, str] = {}
        self.secrets: dict[str, AppSecret] = {}
        self.removed_secrets: set[str] = set()
        """The ids of the app secrets whose owner removed every revision."""
        self.client_relations: dict[int, ClientRelation] = {}
        self.hooks: list[Hook] = []
        self.errors: list[str] = []
        """Every exception a hook raised (Juju shows a traceback and retries the hook)."""
        self.on_hook = on_hook
        self.max_rounds = max_rounds
        self.kubernetes = FakeKubernetes()
        self.kubernetes.on_request = self._kubernetes_request
        self._expiry: LeaseExpiry | None = None
        self._running: _Running | None = None
        self._since_settle = 0
        self.units: dict[int, SimUnit] = {}
        for unit_id in range(units):
            root = workdir / f'unit-{unit_id}'
            charm = CharmUnit(unit_id, root)
            server = (
                ValkeyServer(
                    charm.config_file, data_dir=charm.data_dir, log_file=root / 'valkey.log'
                )
                if pods is None
                else PodServer(
                    pods,
                    pod_name(unit_id),
                    charm.config_file,
                    data_dir=charm.data_dir,
                    log_file=root / 'valkey.log',
                )
            )
            self.units[unit_id] = SimUnit(charm=charm, server=server)
        self._exit = contextlib.ExitStack()

    # --------------------------------------------------------------- lifecycle

    def __enter__(self) -> Application:
        # The leader's Kubernetes calls (the <app>-primary Service) reach a
        # fake API server instead of a cluster.
        original = primary_service.make_client
        primary_service.make_client = self.kubernetes.make_client
        self._exit.callback(setattr, primary_service, 'make_client', original)
        for unit in self.units.values():
            self._exit.callback(unit.server.stop)
        if self.pods is not None:
            for unit_id in self.units:
                self._add_pod(unit_id)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop every server this application started, and restore the Kubernetes client."""
        self._exit.close()

    # ------------------------------------------------------- what Juju is told

    def deploy(self, *, leader: int = 0) -> None:
        """``juju deploy -n 3``: every unit starts, and Juju elects ``leader``."""
        for unit in self.units.values():
            unit.leader = unit.unit_id == leader
            for kind in DEPLOY_EVENTS:
                unit.queue.append(Pending(kind))
                if kind == 'relation-created' and unit.leader:
                    unit.queue.append(Pending('leader-elected'))

    def configure(self, **options: str | None) -> None:
        """``juju config``: ``None`` resets an option to its default."""
        for key, value in options.items():
            option = key.replace('_', '-')
            if value is None:
                self.config.pop(option, None)
            else:
                self.config[option] = value
        for unit in self.live_units():
            unit.queue.append(Pending('config-changed'))

    def delete_pod(self, unit_id: int, *, node_lost: bool = False) -> None:
        """The unit's pod is deleted (``kubectl delete pod``, an eviction, a node lost).

        Kubernetes sends the pod SIGTERM; Juju runs ``stop`` in it before it goes
        (the canonical/charm-refresh specification describes this for a refresh;
        a deletion goes the same way). Valkey is stopped with the pod (SIGTERM:
        it saves its RDB file on the way out). The unit stays in the model and
        in the peer relation: nobody sees ``relation-departed``. Its lease is
        not handed over: Juju elects another unit only once it runs out
        (:meth:`elect`). Events queued for it wait for the new pod.

        ``node_lost``: the pod's node died instead. Nothing runs in the pod any
        more (no ``stop``) and Valkey is killed (SIGKILL): it saves nothing and
        waits for no replica.
        """
        unit = self.units[unit_id]
        if node_lost:
            unit.server.kill()
        else:
            self._dispatch(unit, Pending('stop'))
        unit.server.stop()
        unit.pod_up = unit.pebble_up = False
        if self.pods is not None:
            self.pods.delete_pod(pod_name(unit_id))
            self._point_primary_service()

    def recreate_pod(self, unit_id: int) -> None:
        """The StatefulSet recreates the unit's pod, under the same name.

        The ``data`` storage (``/var/lib/valkey``, the last RDB snapshot) is the
        same volume; everything else is new: the workload container's
        filesystem (``/run/valkey`` is empty) and Pebble plan, and the charm
        container, so StoredState starts empty (ops' "How to manage stored
        state": it lives as long as the charm container). What Juju keeps for the
        unit (its leadership, relation data, secret tracking) is unchanged. The
        new pod runs :data:`POD_START_UP_EVENTS` before anything queued meanwhile.
        """
        unit = self.units[unit_id]
        if self.pods is not None:
            self._add_pod(unit_id)
        shutil.rmtree(unit.charm.etc_dir)
        unit.charm.etc_dir.mkdir()
        unit.pod_up, unit.state, unit.pebble_up, unit.file_seen = True, None, False, None
        unit.queue.extendleft(Pending(kind) for kind in reversed(POD_START_UP_EVENTS))

    def scale_down(self) -> int:
        """``juju scale-application <app> <n-1>``: the highest-numbered unit leaves.

        The others get ``relation-departed``; the departing unit runs
        ``relation-departed`` (one per peer), ``relation-broken``, ``stop`` and
        ``remove``, then its pod and server are gone. If it led, Juju elects
        another unit only once its lease runs out: call :meth:`elect`.
        Returns the departing unit's id.
        """
        gone = max(self.live_units(), key=lambda unit: unit.unit_id)
        gone.departing = True
        peers = [unit for unit in self.live_units() if unit is not gone and unit.in_relation]
        for unit in peers:
            unit.queue.append(
                Pending('relation-departed', remote=gone.unit_id, departing=gone.unit_id)
            )
            gone.queue.append(
                Pending('relation-departed', remote=unit.unit_id, departing=gone.unit_id)
            )
        gone.queue.extend([Pending('relation-broken'), Pending('stop'), Pending('remove')])
        return gone.unit_id

    def elect(self, unit_id: int) -> None:
        """Juju makes ``unit_id`` the leader (after the old leader's lease ran out).

        From now on ``is-leader`` answers True on it and False elsewhere;
        ``leader-elected`` is queued on it.
        """
        for unit in self.units.values():
            unit.leader = unit.unit_id == unit_id
        self.units[unit_id].queue.append(Pending('leader-elected'))

    def integrate_client(
        self, app: str, *, resource: str = '', request_id: str = 'r1'
    ) -> ClientRelation:
        """``juju integrate <app> valkey-leader-k8s``: a client application asks for a user.

        ``resource`` is the key prefix it asks for (``shop:*``; empty: none). Its
        databag holds what the interface library's requirer (``dpcharmlibs-interfaces``,
        ``ResourceRequirerEventHandler`` with one ``RequirerCommonModel``) writes:
        ``version`` ``v1`` and a JSON list of ``requests`` with ``resource``,
        ``request-id`` and ``salt``, as ``tests/unit/test_clients.py`` builds it.

        Every unit gets ``valkey-client-relation-created``, then
        ``valkey-client-relation-changed`` with the client's data: a new relation's
        hooks run created, joined, changed (the lifecycle-events page,
        discourse.charmhub.io/t/4455, cited in docs/workload-and-demo.md).
        ``relation-joined`` is left out, as for the peers: the client unit's
        databag is empty and the charm does not observe it. Every unit gets the
        relation's events, not only the leader: Juju does not know which units
        act on them. Returns the relation.
        """
        relation_id = max(self.client_relations, default=FIRST_CLIENT_RELATION_ID - 1) + 1
        request = {'resource': resource, 'request-id': request_id, 'salt': f'salt-{request_id}'}
        relation = ClientRelation(
            relation_id, app, {'version': 'v1', 'requests': json.dumps([request])}
        )
        self.client_relations[relation_id] = relation
        for unit in self.units.values():
            if unit.alive:
                unit.queue.append(Pending('relation-created', relation_id=relation_id))
                unit.queue.append(Pending('relation-changed', remote=0, relation_id=relation_id))
        return relation

    def remove_client(self, relation_id: int) -> None:
        """``juju remove-relation <app> valkey-leader-k8s``: every unit leaves the relation.

        Each unit runs ``relation-departed`` for the client's unit, then
        ``relation-broken`` (juju/docs#2357 quotes the sequence: "For every
        known related unit ... run the relation-departed hook. Run the
        relation-broken hook."). Once no unit is in it, the relation is gone, and
        so are the grants made through it (assumed: Juju scopes a grant to its
        relation; the charm removes the secret anyway).
        """
        relation = self.client_relations[relation_id]
        relation.removing = True
        for unit in self.units.values():
            if unit.alive and unit.unit_id in relation.members:
                unit.queue.append(
                    Pending('relation-departed', remote=0, departing=0, relation_id=relation_id)
                )
                unit.queue.append(Pending('relation-broken', relation_id=relation_id))

    def expire_lease(self, expiry: LeaseExpiry) -> None:
        """Let a lease run out in the middle of a hook: see :class:`LeaseExpiry`.

        Applies to the next hook ``expiry.unit_id`` runs (not an update-status
        check); if that hook makes fewer slow calls, the lease does not run out.
        """
        self._expiry = expiry

    def run_action(self, unit_id: int, action: str) -> dict[str, object]:
        """``juju run <unit> <action>``; raises ``testing.ActionFailed`` like Juju reports it."""
        unit = self.units[unit_id]
        self._dispatch(unit, Pending(action))
        return dict(unit.charm.ctx.action_results or {})

    def slow_call(self, point: str) -> None:
        """A slow call made by the hook being dispatched: the lease may run out here.

        ``point`` starts with the kind of call (``kubernetes``, ``pebble``), then says which.
        """
        running = self._running
        if running is None or running.check:
            return
        running.slow_calls.append(point)
        expiry = self._expiry
        if expiry is None or expiry.unit_id != running.unit.unit_id:
            return
        counted = [call for call in running.slow_calls if call.split()[0] in expiry.points]
        if counted and counted[-1] == point and len(counted) == expiry.at_slow_call:
            self._lease_runs_out(running, expiry)

    # ------------------------------------------------------------ convergence

    def settle(self) -> Settled:
        """Deliver events until no unit changes anything.

        Raises:
            NotConvergedError: if that takes more than ``max_rounds`` rounds.
        """
        checks = 0
        for round_number in range(1, self.max_rounds + 1):
            pending = [unit for unit in self.live_units() if unit.queue]
            if pending:
                for unit in pending:
                    if unit.runs_hooks and unit.queue:
                        self._dispatch(unit, unit.queue.popleft())
                continue
            # Nothing queued: would anything change if Juju woke every unit up?
            quiet = True
            for unit in self.live_units():
                hook = self._dispatch(unit, Pending('update-status'), check=True)
                checks += 1
                quiet = quiet and not hook.changed
            quiet = quiet and not any(unit.queue for unit in self.live_units())
            if quiet:
                settled = Settled(hooks=self._since_settle, rounds=round_number, checks=checks)
                self._since_settle = 0
                return settled
        raise NotConvergedError(
            f'no convergence after {self.max_rounds} rounds; last hooks: '
            + '; '.join(f'{h.unit} {h.event}' for h in self.hooks[-6:])
            + (f'; hooks raised: {self.errors}' if self.errors else '')
        )

    # ------------------------------------------------------------------ views

    def live_units(self) -> list[SimUnit]:
        """The units whose pods run hooks now."""
        return [unit for unit in self.units.values() if unit.runs_hooks]

    def leader(self) -> SimUnit | None:
        """The unit Juju considers the leader now (its pod may be down)."""
        leaders = [unit for unit in self.units.values() if unit.alive and unit.leader]
        return leaders[0] if leaders else None

    def server(self, unit_id: int) -> ValkeyServer:
        return self.units[unit_id].server

    def password(self) -> str:
        """The latest password in the app secret (for the tests' clients only)."""
        secret = self._password_secret()
        return secret.revisions[secret.latest]['password']

    def password_revisions(self) -> dict[int, str]:
        """Every revision of the password Juju still holds."""
        secret = self._password_secret()
        return {rev: content['password'] for rev, content in secret.revisions.items()}

    def _password_secret(self) -> AppSecret:
        (secret,) = [s for s in self.secrets.values() if s.label == PASSWORD_LABEL]
        return secret

    def status(self, unit_id: int) -> ops.StatusBase | None:
        state = self.units[unit_id].state
        return unit_status(state) if state is not None else None

    def primary_service_selects(self) -> str | None:
        """The pod ``<app>-primary`` selects in the fake cluster, or ``None`` without it."""
        service = self.kubernetes.services.get(PRIMARY_SERVICE)
        if service is None:
            return None
        return service['spec']['selector'].get(primary_service.POD_NAME_LABEL)

    def file_role(self, unit_id: int) -> str | None:
        """What the unit's config file makes it, in the words of its status."""
        return self._file_role(self.units[unit_id])

    def partition(self, unit_id: int) -> None:
        """Cut the unit's pod off the pod network; it keeps running, as do clients inside it.

        Its Juju agent is cut off from the controller too: it runs no hook until
        :meth:`heal`, and Juju elects another leader once its lease runs out (:meth:`elect`).
        """
        if self.pods is None:
            raise RuntimeError('a partition needs pods (Application(..., pods=...))')
        self.pods.cut(pod_name(unit_id))
        self.units[unit_id].pod_up = False

    def heal(self, unit_id: int) -> None:
        """Restore the unit's link; its agent runs the hooks queued meanwhile."""
        if self.pods is None:
            raise RuntimeError('a partition needs pods (Application(..., pods=...))')
        self.pods.restore(pod_name(unit_id))
        self.units[unit_id].pod_up = True

    def port_of(self, dns_name: str) -> int:
        """Where a unit's DNS name points in this simulation: its server's loopback port."""
        for unit in self.units.values():
            if unit_dns_name(unit.unit_id) == dns_name:
                return unit.server.port
        raise KeyError(f'no unit is called {dns_name}')

    def resolve(self, endpoint: str) -> int:
        """The loopback port behind ``<host>:6379`` in this simulation, as a client connects.

        ``<app>-primary.<model>.svc.cluster.local`` goes where the Service's
        selector points (the pod ``kube-proxy`` would route to); a unit's
        DNS name to its own server. Raises ``ConnectionRefusedError`` when
        nothing listens there (no Service, the pod down, its server stopped).
        """
        host, port = endpoint.rsplit(':', 1)
        if port != str(valkey_config.PORT):
            raise ConnectionRefusedError(f'nothing listens on port {port} of {host}')
        if host != f'{PRIMARY_SERVICE}.{MODEL.name}.svc.cluster.local':
            unit = next(u for u in self.units.values() if unit_dns_name(u.unit_id) == host)
        else:
            pod = self.primary_service_selects()
            selected = [u for u in self.units.values() if u.name.replace('/', '-') == pod]
            if not selected:
                raise ConnectionRefusedError(f'{PRIMARY_SERVICE} selects no pod ({pod})')
            (unit,) = selected
        if not (unit.runs_hooks and unit.server.running):
            raise ConnectionRefusedError(f'{host}: the pod of {unit.name} does not run Valkey')
        return unit.server.port

    def client_credentials(self, relation_id: int) -> ClientCredentials:
        """What the client application of ``relation_id`` reads, as Juju lets it.

        The answer to its request in this application's databag of the
        relation, and the content of the secret it points at, which the client
        can read only if the owner granted it to the client through this
        relation. Raises ``LookupError`` (no answer, no such secret) or
        ``PermissionError`` (not granted), as ``secret-get`` fails in the client.
        """
        relation = self.client_relations[relation_id]
        answers: list[dict[str, str]] = json.loads(relation.provider_data.get('requests', '[]'))
        (request,) = json.loads(relation.requirer_data['requests'])
        mine = [a for a in answers if a.get('request-id') == request['request-id']]
        if not mine or not mine[0].get('secret-user'):
            raise LookupError(f'{CLIENT_ENDPOINT}:{relation_id} holds no answer yet')
        (answer,) = mine
        secret = self.secrets.get(answer['secret-user'])
        if secret is None:
            raise LookupError(f'secret {answer["secret-user"]} not found')
        if relation.app not in secret.grants.get(relation_id, frozenset()):
            raise PermissionError(f'secret {secret.id} is not granted to {relation.app}')
        # The client reads the latest revision (``refresh``) and tracks it from then on.
        relation.tracked[secret.id] = secret.latest
        content = secret.revisions[secret.latest]
        return ClientCredentials(
            username=content['username'],
            password=content['password'],
            endpoints=answer['endpoints'],
            read_only_endpoints=answer['read-only-endpoints'],
            resource=answer['resource'],
            secret_id=secret.id,
            secret_revision=secret.latest,
        )

    def unit_of_port(self, port: int) -> str | None:
        if self.pods is not None:
            raise RuntimeError('in pods every server listens on 6379: use unit_of_host')
        for unit in self.units.values():
            if unit.server.port == port:
                return unit.name
        return None

    def unit_of_host(self, host: str) -> str | None:
        """The unit a server address names: its stable DNS name or its pod address (pods)."""
        for unit in self.units.values():
            if host in (unit_dns_name(unit.unit_id), self._pod_address(unit.unit_id)):
                return unit.name
        return None

    @staticmethod
    def pod_name(unit_id: int) -> str:
        return pod_name(unit_id)

    def _pod_address(self, unit_id: int) -> str | None:
        return self.pods.address_of(pod_name(unit_id)) if self.pods is not None else None

    def observe(self) -> list[UnitView]:
        """Each unit as its real server reports it (``INFO replication``, ``DBSIZE``)."""
        views: list[UnitView] = []
        password = self.password()
        for unit in self.units.values():
            status = self.status(unit.unit_id)
            said = f'{status.name}: {status.message}' if status is not None else '-'
            if not unit.alive:
                views.append(UnitView(unit.name, unit.leader, 'down', None, None, None, 'removed'))
                continue
            if not unit.pod_up:
                views.append(
                    UnitView(unit.name, unit.leader, 'down', None, None, None, 'pod deleted')
                )
                continue
            if not unit.server.running:
                views.append(UnitView(unit.name, unit.leader, 'down', None, None, None, said))
                continue
            with unit.server.client(password) as client:
                info = client.replication()
                keys = client.dbsize()
            primary = info.get('role') == 'master'
            if primary:
                source = None
            elif self.pods is not None:
                source = self.unit_of_host(info.get('master_host', ''))
            else:
                source = self.unit_of_port(int(info.get('master_port', 0)))
            link = None if primary else info.get('master_link_status')
            role = 'primary' if primary else 'replica'
            views.append(UnitView(unit.name, unit.leader, role, source, link, keys, said))
        return views

    # --------------------------------------------------------------- dispatch

    def _kubernetes_request(self, request: Request) -> None:
        self.slow_call(f'kubernetes {request.method} {request.path}')

    def _slow_pebble_calls(self, container: ops.Container) -> None:
        """Make each Pebble request of this hook's container a slow call.

        The wrappers are set on the one ``Container`` object the charm gets
        from ``self.unit.get_container`` in this hook, and go with it.
        """
        for name in SLOW_PEBBLE_CALLS:
            method: Callable[..., object] = getattr(container, name)

            @functools.wraps(method)
            def slow(
                *args: object,
                _method: Callable[..., object] = method,
                _name: str = name,
                **kwargs: object,
            ) -> object:
                self.slow_call(f'pebble {_name}')
                return _method(*args, **kwargs)

            setattr(container, name, slow)

    @staticmethod
    def _watch_service_restarts(container: ops.Container, running: _Running) -> None:
        """Note whether the charm (re)starts Valkey: otherwise it changed it live."""
        for name in ('replan', 'restart', 'start'):
            method: Callable[..., object] = getattr(container, name)

            @functools.wraps(method)
            def watched(*args: object, _method: Callable[..., object] = method, **kw: object):
                running.service_restarted = True
                return _method(*args, **kw)

            setattr(container, name, watched)

    def _hand_over(self, **kwargs: Any) -> handover.HandoverResult:
        """``handover.hand_over``, a slow call: it waits for another unit's server to catch up."""
        started = time.monotonic()
        result = _HAND_OVER(**kwargs)
        if self._running is not None:
            old_primary: tuple[str, int] = kwargs['old_primary']
            from_unit = (
                self.unit_of_port(old_primary[1])
                if self.pods is None
                else self.unit_of_host(old_primary[0])
            )
            self._running.handover = Handover(
                from_unit=from_unit,
                status=result.status,
                reason=result.reason,
                started=started,
                seconds=result.seconds,
            )
        self.slow_call(f'valkey hand_over: {result.status}')
        return result

    def _address_of(self, dns_name: str) -> tuple[str, int]:
        return ('127.0.0.1', self.port_of(dns_name))

    def _add_pod(self, unit_id: int) -> None:
        """The unit's pod exists (again): its stable DNS name resolves to its new address."""
        assert self.pods is not None
        self.pods.add_pod(pod_name(unit_id), dns_names=(unit_dns_name(unit_id),))
        self._point_primary_service()

    def _point_primary_service(self) -> None:
        """``<app>-primary`` resolves to the pod the Service selects, while that pod exists."""
        if self.pods is not None:
            self.pods.point(PRIMARY_DNS_NAME, self.primary_service_selects())

    def _lease_runs_out(self, running: _Running, expiry: LeaseExpiry) -> None:
        """Juju's lease for the running unit ran out during its slow call; Juju elects another."""
        self._expiry = None
        running.lease_ran_out = True
        if expiry.noticed:
            # ops' 30 s cache has expired: the next is-leader asks Juju. ops.testing's
            # hook tools read the hook's State, which is frozen for the charm but
            # is the driver's to change, as Juju's answers are.
            object.__setattr__(running.live_state, 'leader', False)
        self.elect(expiry.then)

    def _dispatch(self, unit: SimUnit, pending: Pending, *, check: bool = False) -> Hook:
        if pending.kind == 'pebble-ready':
            unit.pebble_up = True
        if pending.kind == 'relation-created':
            if pending.relation_id is None:
                unit.in_relation = True
            else:
                self.client_relations[pending.relation_id].members.add(unit.unit_id)
        started = time.monotonic()
        leader_at_start = unit.leader
        state_in = self._input_state(unit)
        removed_before = len(unit.charm.ctx.removed_secret_revisions)
        services_before = self.primary_service_selects()
        expiry = self._expiry if not check else None
        running = _Running(unit, state_in, check=check)
        state_out, action_failure, failed = self._run_hook(running, pending, state_in)
        if expiry is not None and self._expiry is expiry and expiry.unit_id == unit.unit_id:
            # The hook made fewer slow calls than that: the lease did not run out.
            self._expiry = None
        if failed is not None:
            unit.queue.appendleft(pending)
        published = self._take_outputs(unit, state_out, removed_before, pending)
        answered = self._take_client_outputs(unit, state_out)
        wrote, workload = self._sync_workload(unit, state_out, running.service_restarted)
        self._queue_secret_removals()
        event = self._event_label(pending)
        if failed is None or pending.relation_id is None:
            # A failed client relation-broken runs again, in the relation.
            self._finish_teardown(unit, pending)
        if pending.revision is not None:
            event += f' (revision {pending.revision})'
        services_after = self.primary_service_selects()
        if services_after != services_before:
            self._point_primary_service()
        hook = Hook(
            number=len(self.hooks) + 1,
            unit=unit.name,
            event=event,
            leader=leader_at_start,
            status=unit_status(state_out)
            if failed is None
            else ops.ErrorStatus(f'hook failed: "{pending.kind}"'),
            published=published,
            wrote=wrote,
            workload=workload,
            file_role=self._file_role(unit),
            check=check,
            slow_calls=tuple(running.slow_calls),
            lease_ran_out=running.lease_ran_out,
            failed=failed,
            service_selects=services_after if services_after != services_before else None,
            answered=answered,
            started=started,
            handover=running.handover,
        )
        self.hooks.append(hook)
        if not check:
            self._since_settle += 1
        if self.on_hook is not None:
            self.on_hook(hook)
        if action_failure is not None:
            raise action_failure
        return hook

    def _run_hook(
        self, running: _Running, pending: Pending, state_in: testing.State
    ) -> tuple[testing.State, testing.ActionFailed | None, str | None]:
        """Run the charm; return what Juju commits, a failed action, and why the hook failed."""
        unit = running.unit
        self._running = running
        in_pod = (
            self.pods.inside(pod_name(unit.unit_id))
            if self.pods is not None
            else contextlib.nullcontext()
        )
        try:
            with in_pod:
                state_out = self._run_charm(unit, pending, state_in, running)
        except testing.ActionFailed as e:
            # A failed action still ran in a hook: keep what it did, then report it.
            if not isinstance(e.state, testing.State):
                raise
            return e.state, e, None
        except testing.errors.UncaughtCharmError as e:
            # Juju: the hook failed with a traceback; nothing it wrote to Juju is
            # committed; the same hook runs again before anything else.
            cause = e.__cause__ if e.__cause__ is not None else e
            failed = f'{type(cause).__name__}: {cause}'
            self.errors.append(f'{unit.name} {pending.kind}: {failed}')
            return state_in, None, failed
        finally:
            self._running = None
        if running.lease_ran_out and not unit.leader:
            refused = app_side_changes(state_in, state_out)
            if refused:
                # Kept: the charm container's StoredState and what Pebble did.
                kept = dataclasses.replace(
                    state_in,
                    containers=state_out.containers,
                    stored_states=state_out.stored_states,
                )
                return kept, None, f'Juju refused to commit {refused}: no longer the leader'
        return state_out, None, None

    def _event_label(self, pending: Pending) -> str:
        """The event as the narration shows it: ``relation-changed (valkey-leader-k8s/0)``."""
        if pending.relation_id is None:
            remote = '' if pending.remote is None else f' ({unit_name(pending.remote)})'
            return pending.kind + remote
        client = self.client_relations[pending.relation_id].app
        remote = '' if pending.remote is None else f' ({client}/{pending.remote})'
        return f'{CLIENT_ENDPOINT}-{pending.kind}{remote}'

    def _finish_teardown(self, unit: SimUnit, pending: Pending) -> None:
        if pending.kind == 'relation-broken' and pending.relation_id is not None:
            relation = self.client_relations[pending.relation_id]
            relation.members.discard(unit.unit_id)
            if relation.removing and not relation.members:
                # The relation is gone from Juju, and the grants made through it.
                del self.client_relations[relation.id]
                for secret in self.secrets.values():
                    secret.grants.pop(relation.id, None)
            return
        if pending.kind == 'relation-broken':
            unit.in_relation = False
        if pending.kind == 'remove':
            # Scale-down is done with this unit: its pod and its server are gone.
            unit.server.stop()
            unit.alive = unit.pod_up = unit.pebble_up = False
            unit.queue.clear()
            if self.pods is not None:
                self.pods.delete_pod(pod_name(unit.unit_id))
                self._point_primary_service()

    def _file_role(self, unit: SimUnit) -> str | None:
        text = unit.charm.read_config()
        if text is None:
            return None
        host = replicaof_host(text)
        if host is None:
            return 'primary'
        (source,) = [u.name for u in self.units.values() if unit_dns_name(u.unit_id) == host]
        return f'replica of {source}'

    def _input_state(self, unit: SimUnit) -> testing.State:
        """What Juju shows ``unit`` now: leadership, config, the databag, secrets, Pebble."""
        relations: list[testing.RelationBase] = []
        if unit.in_relation:
            peers = [
                u.unit_id
                for u in self.units.values()
                if u.alive and u.in_relation and (u is unit or not u.departing)
            ]
            relations.append(peer_relation(unit.unit_id, self.app_data, peers))
        relations.extend(self._client_relations_seen_by(unit))
        if unit.state is None:
            # A new charm container: no StoredState, an empty Pebble plan.
            container = unit.charm.container(can_connect=unit.pebble_up)
            return testing.State(
                leader=unit.leader,
                model=MODEL,
                config=dict(self.config),
                relations=relations,
                secrets=self._secrets_seen_by(unit),
                containers={container},
            )
        # Pebble keeps its plan and services between hooks; the rest is Juju's.
        container = dataclasses.replace(
            unit.state.get_container('valkey'), can_connect=unit.pebble_up
        )
        return dataclasses.replace(
            unit.state,
            leader=unit.leader,
            config=dict(self.config),
            relations=frozenset(relations),
            secrets=self._secrets_seen_by(unit),
            containers=frozenset({container}),
        )

    def _client_relations_seen_by(self, unit: SimUnit) -> list[testing.Relation]:
        """Each client relation ``unit`` is in: the client's data, and this app's."""
        seen: list[testing.Relation] = []
        for relation in self.client_relations.values():
            if unit.unit_id not in relation.members:
                continue
            view = testing.Relation(
                CLIENT_ENDPOINT,
                id=relation.id,
                remote_app_name=relation.app,
                remote_app_data=dict(relation.requirer_data),
                local_app_data=dict(relation.provider_data),
                remote_units_data={0: {}},
            )
            own = relation.unit_data.get(unit.unit_id)
            seen.append(view if own is None else dataclasses.replace(view, local_unit_data=own))
        return seen

    def _secrets_seen_by(self, unit: SimUnit) -> frozenset[testing.Secret]:
        """Each app secret with the revision ``unit`` tracks, and the latest one."""
        seen: set[testing.Secret] = set()
        for secret in self.secrets.values():
            # A unit that never read the secret gets the latest revision on first read.
            tracked = unit.tracked.get(secret.id, secret.latest)
            view = testing.Secret(
                tracked_content=secret.revisions[tracked],
                latest_content=secret.revisions[secret.latest],
                id=secret.id,
                owner='app',
                label=secret.label,
                description=secret.description,
                remote_grants=dict(secret.grants),
            )
            # ops.testing keeps revision numbers outside the dataclass fields.
            object.__setattr__(view, '_tracked_revision', tracked)
            object.__setattr__(view, '_latest_revision', secret.latest)
            seen.add(view)
        return frozenset(seen)

    def _run_charm(
        self, unit: SimUnit, pending: Pending, state: testing.State, running: _Running
    ) -> testing.State:
        """Run the unit's charm for one event, as Juju would dispatch it."""
        ctx = unit.charm.ctx
        event = self._event(ctx.on, pending, state)
        # Scenario's manager mode hands over the State the hook tools read
        # (is-leader among them) before the charm runs: the lease can change it.
        with ctx(event, state) as manager:
            if manager.ops is None:
                raise RuntimeError('ops.testing did not set up the hook')
            running.live_state = manager.ops.state
            try:
                charm = manager.charm
            except RuntimeError:
                # The charm's __init__ ended the hook early: nothing to wrap.
                pass
            else:
                container = charm.unit.get_container('valkey')
                self._slow_pebble_calls(container)
                self._watch_service_restarts(container, running)
            if self.pods is not None:
                # In its pod (see _run_hook): the charm's own addresses and names,
                # nothing patched but the handover's narration.
                with _patched(handover, hand_over=self._hand_over):
                    return manager.run()
            # The charm reaches its unit's server on the pod's loopback, and a
            # primary by its stable DNS name; here each server has its own port.
            with (
                _patched(
                    client, LOCAL=('127.0.0.1', unit.server.port), same_host=self._address_of
                ),
                _patched(handover, hand_over=self._hand_over),
            ):
                return manager.run()

    @staticmethod
    def _event(on: testing.CharmEvents, pending: Pending, state: testing.State):
        kind = pending.kind
        simple = {
            'install': on.install,
            'start': on.start,
            'stop': on.stop,
            'remove': on.remove,
            'upgrade-charm': on.upgrade_charm,
            'leader-elected': on.leader_elected,
            'config-changed': on.config_changed,
            'update-status': on.update_status,
        }
        if kind in simple:
            return simple[kind]()
        if kind == 'pebble-ready':
            return on.pebble_ready(state.get_container('valkey'))
        if kind == 'rotate-password':
            return on.action(kind)
        if kind == 'secret-remove':
            (secret,) = [
                s
                for s in state.secrets
                if (s.id == pending.secret_id if pending.secret_id else s.label == PASSWORD_LABEL)
            ]
            return on.secret_remove(secret, revision=pending.revision or 0)
        relation = state.get_relation(pending.relation_id or PEER_RELATION_ID)
        if kind == 'relation-created':
            return on.relation_created(relation)
        if kind == 'relation-changed':
            return on.relation_changed(relation, remote_unit=pending.remote)
        if kind == 'relation-departed':
            return on.relation_departed(
                relation, remote_unit=pending.remote, departing_unit=pending.departing
            )
        if kind == 'relation-broken':
            return on.relation_broken(relation)
        raise ValueError(f'the driver cannot deliver {kind!r}')

    def _take_outputs(
        self, unit: SimUnit, state: testing.State, removed_before: int, pending: Pending
    ) -> dict[str, str]:
        """Keep the unit's output State; share what it wrote. Returns changed databag keys."""
        unit.state = state
        self._take_secret_removals(unit, state, removed_before, pending)
        # Secrets: the leader's writes become the app's; every unit's tracking is its own.
        for secret in state.secrets:
            if secret.owner != 'app':
                continue
            latest: int = getattr(secret, '_latest_revision', 1)
            tracked: int = getattr(secret, '_tracked_revision', latest)
            known = self.secrets.get(secret.id)
            if unit.leader:
                if known is None:
                    known = AppSecret(secret.id, secret.label, secret.description, {})
                    self.secrets[secret.id] = known
                known.label = secret.label
                known.grants = dict(secret.remote_grants)
                if latest not in known.revisions:
                    known.revisions[latest] = dict(secret.latest_content)
            unit.tracked[secret.id] = tracked
        # The peer app databag: only a leader's hook can have changed it.
        published: dict[str, str] = {}
        try:
            relation = state.get_relation(PEER_RELATION_ID)
        except KeyError:
            return published
        data = dict(relation.local_app_data)
        if data == self.app_data:
            return published
        if not unit.leader:
            raise AssertionError(f'{unit.name} is not the leader but changed the app databag')
        published = {k: v for k, v in data.items() if self.app_data.get(k) != v}
        self.app_data = data
        for other in self.live_units():
            if other is unit or not other.in_relation:
                continue
            # Juju folds a pending relation-changed into one: the unit reads the latest data.
            change = Pending('relation-changed', remote=unit.unit_id)
            if change not in other.queue:
                other.queue.append(change)
        return published

    def _take_secret_removals(
        self, unit: SimUnit, state: testing.State, removed_before: int, pending: Pending
    ) -> None:
        """The secrets, and revisions, the hook removed: Juju forgets them."""
        if unit.leader:
            # An app secret gone from the leader's output: it removed every revision.
            kept = {secret.id for secret in state.secrets}
            for secret_id in [i for i in self.secrets if i not in kept]:
                del self.secrets[secret_id]
                self.removed_secrets.add(secret_id)
                for other in self.units.values():
                    other.tracked.pop(secret_id, None)
        for revision in unit.charm.ctx.removed_secret_revisions[removed_before:]:
            if pending.secret_id is not None:
                secret = self.secrets[pending.secret_id]
            else:
                secret = self._password_secret()
            del secret.revisions[revision]

    def _take_client_outputs(self, unit: SimUnit, state: testing.State) -> tuple[str, ...]:
        """Keep what the hook wrote in each client relation; name those whose app databag changed.

        The client (not run here) reads the new answer; the other units of this
        application get no event: Juju tells a unit about changes of the other
        side of a relation only.
        """
        answered: list[str] = []
        for relation in self.client_relations.values():
            if unit.unit_id not in relation.members:
                continue
            try:
                out = state.get_relation(relation.id)
            except KeyError:
                continue
            relation.unit_data[unit.unit_id] = dict(out.local_unit_data)
            data = dict(out.local_app_data)
            if data == relation.provider_data:
                continue
            if not unit.leader:
                raise AssertionError(
                    f'{unit.name} is not the leader but changed its app databag in '
                    f'{CLIENT_ENDPOINT}:{relation.id}'
                )
            relation.provider_data = data
            answered.append(f'{CLIENT_ENDPOINT}:{relation.id}')
        return tuple(answered)

    def _queue_secret_removals(self) -> None:
        """Juju tells the owner (the leader) when no unit, nor client, tracks an old revision."""
        for secret in self.secrets.values():
            tracked = {
                unit.tracked.get(secret.id) for unit in self.live_units() if unit.in_relation
            }
            tracked |= {client.tracked.get(secret.id) for client in self.client_relations.values()}
            for revision in sorted(secret.revisions):
                if revision == secret.latest or revision in tracked:
                    continue
                secret_id = None if secret.label == PASSWORD_LABEL else secret.id
                removal = Pending('secret-remove', revision=revision, secret_id=secret_id)
                for leader in (unit for unit in self.live_units() if unit.leader):
                    if removal not in leader.queue:
                        leader.queue.append(removal)

    def _sync_workload(
        self, unit: SimUnit, state: testing.State, restarted: bool
    ) -> tuple[str | None, str | None]:
        """Act as Pebble with a real server; say what the charm wrote and what was (re)started.

        A file the charm pushed without (re)starting the service was applied to
        the running server live (``live.apply_live``, over its port): the
        server is left running.
        """
        text = unit.charm.read_config()
        wrote = describe(text) if text is not None and text != unit.file_seen else None
        unit.file_seen = text
        service = state.get_container('valkey').service_statuses.get('valkey')
        server = unit.server
        if text is None or service != ops.pebble.ServiceStatus.ACTIVE:
            return wrote, None
        if server.running and text == server.config_text:
            return wrote, None
        if server.running and not restarted:
            server.config_text = text
            return wrote, 'applied live: no restart'

        replicaof = replicaof_host(text)
        action = 'restarted' if server.running else 'started'
        if self.pods is not None:
            server.restart()
            where = f'{self._pod_address(unit.unit_id)}:6379 and 127.0.0.1:6379 in its pod'
            return wrote, f'{action} valkey-server on {where}, from its file as written'
        port = self.port_of(replicaof) if replicaof else None
        server.restart(replicaof=port)
        where = f'127.0.0.1:{server.port}'
        if replicaof is not None:
            where += f' --replicaof 127.0.0.1 {port} (= {replicaof.split(".")[0]})'
        return wrote, f'{action} valkey-server on {where}'


def app_side_changes(before: testing.State, after: testing.State) -> str | None:
    """What a hook changed that Juju commits only from the leader, in words; or ``None``."""
    changed: list[str] = []
    if _app_data(before) != _app_data(after):
        changed.append('the peer app databag')
    app_secrets = [
        {
            (
                s.id,
                s.label,
                getattr(s, '_latest_revision', 0),
                tuple(sorted(s.latest_content.items())),
            )
            for s in state.secrets
            if s.owner == 'app'
        }
        for state in (before, after)
    ]
    if app_secrets[0] != app_secrets[1]:
        changed.append('the app secret')
    if before.app_status != after.app_status:
        changed.append('the app status')
    for relation in before.relations:
        if relation.endpoint == CLIENT_ENDPOINT and dict(relation.local_app_data) != dict(
            after.get_relation(relation.id).local_app_data
        ):
            changed.append(f'the app databag of {CLIENT_ENDPOINT}:{relation.id}')
    return ' and '.join(changed) if changed else None


def _app_data(state: testing.State) -> dict[str, str]:
    try:
        return dict(state.get_relation(PEER_RELATION_ID).local_app_data)
    except KeyError:
        return {}


def unit_status(state: testing.State) -> ops.StatusBase:
    """The unit status a hook left, as an ``ops`` status."""
    status = state.unit_status
    return ops.StatusBase.from_name(status.name, status.message)


def pod_name(unit_id: int) -> str:
    """The unit's pod, as Kubernetes names it (``valkey-leader-k8s-0``)."""
    return unit_name(unit_id).replace('/', '-')


def replicaof_host(config_text: str) -> str | None:
    """The host in a ``replicaof <host> <port>`` line, or ``None`` on a primary."""
    for line in config_text.splitlines():
        words = line.split()
        if len(words) == 3 and words[0] == 'replicaof':
            return words[1]
    return None


def describe(config_text: str) -> str:
    """What a file makes the unit: ``primary``, or its ``replicaof`` line. Never the password."""
    host = replicaof_host(config_text)
    return 'primary (no replicaof line)' if host is None else f'replica: replicaof {host} 6379'


@contextlib.contextmanager
def _patched(module: object, **values: object) -> Generator[None]:
    """Set module attributes for the duration of one hook."""
    saved = {name: getattr(module, name) for name in values}
    for name, value in values.items():
        setattr(module, name, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(module, name, value)
