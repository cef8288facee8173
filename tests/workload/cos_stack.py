# Copyright 2026 The valkey-leader-k8s authors
# See LICENSE file for licensing details.

"""Three units of the charm, on real servers, each with a real exporter, under a real Prometheus.

Everything the programs read is what the charm wrote, run by ops.testing on
real directories (``charm_unit``): each unit's ``valkey.conf`` (with the
exporter's user), the exporter's password file and command line (from its
container's Pebble plan), and the scrape jobs, metadata, rules and dashboard
the leader published on ``metrics-endpoint`` and ``grafana-dashboard``, with
each unit's address. ``observability_stack`` says what stands in for COS.

Used by ``test_cos_stack.py`` and by ``docs/plot_dashboard.py``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
import threading
import time
from pathlib import Path
from typing import Any, Final

import pytest
from ops import testing

from observability import dashboard
from workload import exporter

from .. import fake_kubernetes
from .charm_unit import APP, CharmUnit, app_password, follower_state, leader_state
from .observability_stack import (
    Process,
    Prometheus,
    exporter_argv,
    free_port,
    http_get,
    password_file_for,
    prometheus_config,
)
from .valkey_server import HOST, ValkeyServer, eventually

REPO_ROOT: Final = Path(__file__).resolve().parents[2]
DASHBOARD: Final = REPO_ROOT / 'src' / 'observability' / 'dashboards' / 'valkey.json'
METRICS_ID: Final = 30
DASHBOARD_ID: Final = 31
UNITS: Final = (0, 1, 2)


def concrete(expr: str) -> str:
    """A dashboard query as Grafana sends it: every variable "All", a short rate window."""
    expr = re.sub(r'\$juju_(model|application|unit)\b', '.*', expr)
    return expr.replace('$__rate_interval', '15s')


def metric_names(expr: str) -> set[str]:
    """The metrics a PromQL expression reads (redis_exporter's, and ``up``)."""
    return set(re.findall(r'\b(redis_[a-z_]+|up)\b(?=\s*[{)\s]|$)', expr))


def dashboard_queries(board: dict[str, Any]) -> list[tuple[str, str]]:
    """Each panel's title and query, as Grafana would send it."""
    return [
        (panel['title'], concrete(target['expr']))
        for panel in board['panels']
        for target in panel.get('targets', [])
    ]


@dataclasses.dataclass
class Unit:
    charm: CharmUnit
    state: testing.State
    server: ValkeyServer | None = None
    exporter: Process | None = None
    exporter_port: int = 0

    @property
    def password_dir(self) -> Path:
        return self.charm.root / 'exporter-tmp'

    def exporter_container(self) -> testing.Container:
        self.password_dir.mkdir(parents=True, exist_ok=True)
        location = exporter.PASSWORD_FILE.rsplit('/', 1)[0]
        return testing.Container(
            exporter.CONTAINER,
            can_connect=True,
            mounts={'tmp': testing.Mount(location=location, source=self.password_dir)},
        )


class Stack:
    """Start it with ``with``: everything started is stopped on the way out."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.units: dict[int, Unit] = {}
        self.prometheus: Prometheus | None = None
        self.app_data: dict[str, str] = {}
        self.dashboard: dict[str, Any] = {}
        self.started = 0.0
        self._exit = contextlib.ExitStack()

    # ------------------------------------------------------------ lifecycle

    def __enter__(self) -> Stack:
        try:
            self._start()
        except BaseException:
            self._exit.close()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        self._exit.close()

    def _start(self) -> None:
        patch = pytest.MonkeyPatch()
        self._exit.callback(patch.undo)
        fake_kubernetes.install(patch)
        self._run_the_charm()
        for unit_id, unit in self.units.items():
            unit.server = ValkeyServer(
                unit.charm.config_file,
                data_dir=unit.charm.data_dir,
                log_file=unit.charm.root / 'valkey.log',
                replicaof=None if unit_id == 0 else self.server(0).port,
            )
            self._exit.callback(unit.server.stop)
            unit.server.start()
        for unit in self.units.values():
            self._start_exporter(unit)
        self._start_prometheus()

    def _run_the_charm(self) -> None:
        metrics = testing.Relation(
            'metrics-endpoint', id=METRICS_ID, remote_app_name='prometheus',
            remote_units_data={0: {}},
        )  # fmt: skip
        board = testing.Relation(
            'grafana-dashboard', id=DASHBOARD_ID, remote_app_name='grafana',
            remote_units_data={0: {}},
        )  # fmt: skip
        leader_out: testing.State | None = None
        for unit_id in UNITS:
            charm = CharmUnit(unit_id, self.workdir / f'unit-{unit_id}')
            unit = Unit(charm=charm, state=testing.State())
            base = (
                leader_state(charm, peers=UNITS)
                if leader_out is None
                else follower_state(charm, leader_out)
            )
            relations = {*base.relations, metrics, board}
            containers = {*base.containers, unit.exporter_container()}
            state = dataclasses.replace(base, relations=relations, containers=containers)
            if leader_out is None:
                state = charm.ctx.run(charm.ctx.on.leader_elected(), state)
            state = charm.ctx.run(
                charm.ctx.on.pebble_ready(state.get_container(exporter.CONTAINER)), state
            )
            unit.state = state
            self.units[unit_id] = unit
            if leader_out is None:
                leader_out = state
        assert leader_out is not None
        self.admin_password = app_password(leader_out)
        self.app_data = dict(leader_out.get_relation(METRICS_ID).local_app_data)
        published = json.loads(leader_out.get_relation(DASHBOARD_ID).local_app_data['dashboards'])
        (template,) = published['templates'].values()
        self.dashboard = json.loads(dashboard.decompress(template['content']))

    def _start_exporter(self, unit: Unit) -> None:
        plan = unit.state.get_container(exporter.CONTAINER).plan
        command = plan.services[exporter.SERVICE].command
        charm_file = (unit.password_dir / 'password.json').read_text()
        password_file = unit.password_dir / 'password.loopback.json'
        password_file.write_text(password_file_for(charm_file, self.server(unit).port))
        password_file.chmod(0o600)
        unit.exporter_port = free_port()
        argv = exporter_argv(
            command,
            valkey_port=self.server(unit).port,
            password_file=password_file,
            listen_port=unit.exporter_port,
        )
        unit.exporter = Process(argv, unit.charm.root / 'exporter.log')
        self._exit.callback(unit.exporter.stop)
        unit.exporter.start()
        url = f'http://{HOST}:{unit.exporter_port}/metrics'
        eventually(lambda: http_get(url), timeout=15, what=f'the exporter of {unit.charm.name}')

    def _start_prometheus(self) -> None:
        unit_data = {
            u.charm.name: dict(u.state.get_relation(METRICS_ID).local_unit_data)
            for u in self.units.values()
        }
        endpoints = {u.charm.name: f'{HOST}:{u.exporter_port}' for u in self.units.values()}
        config = prometheus_config(
            self.app_data, unit_data, endpoints, self.workdir / 'published.rules.yaml'
        )
        self.prometheus = Prometheus(config, self.workdir / 'prometheus')
        self._exit.callback(self.prometheus.stop)
        self.prometheus.start()
        self.started = time.time()
        prometheus = self.prometheus
        eventually(
            lambda: True if len(prometheus.query('redis_up == 1')) == len(UNITS) else None,
            timeout=30,
            what='Prometheus to scrape every unit, with Valkey up',
        )

    # ------------------------------------------------------------ access

    def server(self, unit: int | Unit) -> ValkeyServer:
        unit = self.units[unit] if isinstance(unit, int) else unit
        assert unit.server is not None
        return unit.server

    @property
    def prom(self) -> Prometheus:
        assert self.prometheus is not None
        return self.prometheus

    # ------------------------------------------------------------ what happens

    def cut_replica_link(self, unit_id: int) -> None:
        """The replica can no longer authenticate to its primary: its link stays down."""
        with self.server(unit_id).client(self.admin_password) as client:
            client.command('CONFIG', 'SET', 'masterauth', 'not-the-password')
            client.command('CLIENT', 'KILL', 'TYPE', 'master')

    def restore_replica_link(self, unit_id: int) -> None:
        with self.server(unit_id).client(self.admin_password) as client:
            client.command('CONFIG', 'SET', 'masterauth', self.admin_password)

    def switch_primary(self, to_unit: int) -> None:
        """Make ``to_unit`` the primary and the others its replicas (REPLICAOF, as a handover)."""
        new = self.server(to_unit)
        with new.client(self.admin_password) as client:
            client.command('REPLICAOF', 'NO', 'ONE')
        for unit_id in UNITS:
            if unit_id != to_unit:
                with self.server(unit_id).client(self.admin_password) as client:
                    client.command('REPLICAOF', HOST, new.port)

    def write_load(self, stop: threading.Event) -> None:
        """Write keys to whichever server is primary, until ``stop``."""
        n = 0
        while not stop.is_set():
            for unit_id in UNITS:
                with (
                    contextlib.suppress(Exception),
                    self.server(unit_id).client(self.admin_password) as client,
                ):
                    client.set(f'load:{n % 5000}', 'x' * 512)
            n += 1
            time.sleep(0.002)

    def story(self) -> list[tuple[float, str]]:
        """Writes; a switchover to unit 1; unit 2's link cut, then restored. Returns events."""
        events: list[tuple[float, str]] = []
        stop = threading.Event()
        writer = threading.Thread(target=self.write_load, args=(stop,), daemon=True)
        writer.start()
        try:
            time.sleep(20)
            events.append((time.time(), f'switchover to {APP}/1'))
            self.switch_primary(1)
            time.sleep(20)
            events.append((time.time(), f'{APP}/2 link cut'))
            self.cut_replica_link(2)
            time.sleep(20)
            events.append((time.time(), f'{APP}/2 link restored'))
            self.restore_replica_link(2)
            time.sleep(15)
        finally:
            stop.set()
            writer.join(timeout=10)
        return events
