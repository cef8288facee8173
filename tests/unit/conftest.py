# Copyright 2026 The valkey-leader-k8s authors
# See LICENSE file for licensing details.

"""Shared building blocks for the ops.testing (Scenario) suite.

A unit's filesystem is simulated by two mounts per container: the config
directory and the data directory, both real directories under ``tmp_path``,
so tests read exactly the bytes the charm pushed.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import ops
import pytest
from ops import testing

from charm import ValkeyLeaderCharm
from workload import config as valkey_config
from workload import live, primary_choice

from .. import fake_kubernetes

REPO_ROOT = Path(__file__).resolve().parents[2]
APP = 'valkey-leader-k8s'
PEERS = 'valkey-peers'
VERSION_OUTPUT = (
    'Valkey server v=9.1.0 sha=00000000:0 malloc=jemalloc-5.3.0 bits=64 build=1a2b3c4d5e6f7a8b\n'
)
ALL_UNITS = (0, 1, 2)


# Each costs a hook that imports it milliseconds (dpcharmlibs, with pydantic and
# cryptography, about 70): imported only on the paths that need them.
HEAVY_MODULES = (
    'jinja2',
    'lightkube',
    'dpcharmlibs',
    'charmlibs',  # the tls-certificates library
    'pydantic',
    'cryptography',
    # The charm's own machinery that only some hooks need:
    'valkey',  # the Valkey client, for changing a running server
    'workload.live',
    'workload.handover',
    'clients',
    # The COS integrations, each imported only where its relation exists:
    'observability.scrape',
    'observability.dashboard',
    'observability.logs',
)


def imported_after(script: str, *argv: str) -> list[str]:
    """Which of :data:`HEAVY_MODULES` a fresh process has imported after ``script``.

    Juju runs every hook in a new process; so does this, with ``src/`` on the
    path as dispatch puts it and warnings as errors.
    """
    probe = script + f'\nimport sys\nprint(*[m for m in {HEAVY_MODULES!r} if m in sys.modules])\n'
    result = subprocess.run(
        [sys.executable, '-W', 'error', '-c', probe, *argv],
        cwd=REPO_ROOT,
        env={'PYTHONPATH': str(REPO_ROOT / 'src')},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def unit_name(unit_id: int) -> str:
    return f'{APP}/{unit_id}'


def make_charm_root(tmp_path: Path) -> Path:
    """A charm directory holding what the packed charm ships besides code: the templates."""
    root = tmp_path / 'charm'
    shutil.copytree(REPO_ROOT / 'templates', root / 'templates', dirs_exist_ok=True)
    return root


def make_context(tmp_path: Path, unit_id: int = 0) -> testing.Context[ValkeyLeaderCharm]:
    return testing.Context(
        ValkeyLeaderCharm,
        charm_root=make_charm_root(tmp_path / f'root-{unit_id}'),
        unit_id=unit_id,
    )


@dataclasses.dataclass
class UnitFilesystem:
    """The directories behind one unit's workload container mounts."""

    config_dir: Path
    """Mounted at ``/run/valkey``: the rendered ``valkey.conf``."""
    data: Path
    """Mounted at ``/var/lib/valkey``: the storage."""

    @property
    def config_file(self) -> Path:
        return self.config_dir / 'valkey.conf'

    def read_config(self) -> str:
        return self.config_file.read_text()


def make_filesystem(tmp_path: Path, unit_id: int = 0) -> UnitFilesystem:
    fs = UnitFilesystem(
        config_dir=tmp_path / f'unit-{unit_id}-run', data=tmp_path / f'unit-{unit_id}-data'
    )
    fs.config_dir.mkdir(parents=True, exist_ok=True)
    fs.data.mkdir(parents=True, exist_ok=True)
    return fs


def make_container(fs: UnitFilesystem, **kwargs: object) -> testing.Container:
    params: dict[str, object] = {
        'can_connect': True,
        'mounts': {
            'run': testing.Mount(location='/run/valkey', source=fs.config_dir),
            'data': testing.Mount(location='/var/lib/valkey', source=fs.data),
        },
        'execs': {
            testing.Exec(['valkey-server', '--version'], stdout=VERSION_OUTPUT),
        },
    }
    params.update(kwargs)
    return testing.Container('valkey', **params)  # type: ignore[arg-type]


def make_peer_relation(
    unit_id: int = 0,
    *,
    app_data: dict[str, str] | None = None,
    units: Iterable[int] = ALL_UNITS,
    relation_id: int | None = None,
) -> testing.PeerRelation:
    kwargs: dict[str, object] = {}
    if relation_id is not None:
        kwargs['id'] = relation_id
    return testing.PeerRelation(
        PEERS,
        local_app_data=dict(app_data or {}),
        peers_data={other: {} for other in units if other != unit_id},
        **kwargs,  # type: ignore[arg-type]
    )


def leader_state(fs: UnitFilesystem, unit_id: int = 0, **kwargs: object) -> testing.State:
    """A freshly elected leader with a peer relation and a reachable container."""
    params: dict[str, object] = {
        'leader': True,
        'relations': {make_peer_relation(unit_id)},
        'containers': {make_container(fs)},
    }
    params.update(kwargs)
    return testing.State(**params)  # type: ignore[arg-type]


def peer_app_data(state: testing.State) -> dict[str, str]:
    return dict(state.get_relations(PEERS)[0].local_app_data)


def password_secret(state: testing.State) -> testing.Secret:
    (secret,) = [s for s in state.secrets if s.label == 'admin-password']
    return secret


def state_for_unit(
    previous: testing.State,
    *,
    unit: int,
    leader: bool,
    container: testing.Container,
    config: dict[str, str | int | float | bool] | None = None,
) -> testing.State:
    """What another unit of the same app sees after ``previous`` was written.

    The peer app databag and the app's secrets are shared by every unit of the
    application: this is the follower's (or the next leader's) input state,
    built from exactly what the previous leader wrote.
    """
    peer = previous.get_relations(PEERS)[0]
    return testing.State(
        leader=leader,
        config=dict(previous.config if config is None else config),
        relations={
            make_peer_relation(unit, app_data=dict(peer.local_app_data), relation_id=peer.id)
        },
        secrets=previous.secrets,
        containers={container},
    )


@dataclasses.dataclass
class SideEffects:
    """What the charm did to the world in one run, counted at the ops API."""

    calls: list[str] = dataclasses.field(default_factory=list[str])

    def count(self, name: str) -> int:
        return self.calls.count(name)


@pytest.fixture
def side_effects(monkeypatch: pytest.MonkeyPatch) -> SideEffects:
    """Count pushes, (re)starts, layer changes, peer-data saves and secret writes."""
    recorder = SideEffects()
    for owner, names in (
        (ops.Container, ('push', 'restart', 'start', 'replan', 'add_layer', 'exec')),
        (ops.Relation, ('save',)),
        (ops.Secret, ('set_content', 'remove_revision')),
        (ops.Application, ('add_secret',)),
    ):
        for name in names:
            original = getattr(owner, name)

            def wrapper(*args: object, _original: Any = original, _name: str = name, **kw: object):
                recorder.calls.append(_name)
                return _original(*args, **kw)

            monkeypatch.setattr(owner, name, wrapper)
    return recorder


@dataclasses.dataclass
class Lease:
    """The leader's lease as the charm sees it through ``Unit.is_leader()``.

    ``State(leader=True)`` holds leadership for a whole run; this runs it out in
    the middle of one. Juju guarantees leadership for 30 s after a positive
    check and ops caches the answer for those 30 s (``_ModelBackend.is_leader``
    in ops/model.py), so a check answers False only once a slow step has let the
    lease run out: here, from the moment :meth:`run_out` is called (by a slow
    fake Kubernetes call, say), or after the next ``checks`` positive answers.
    """

    held: bool = True
    remaining: int | None = None

    def run_out(self) -> None:
        self.held = False

    def run_out_after(self, checks: int) -> None:
        self.remaining = checks

    def answer(self, leads: bool) -> bool:
        if self.remaining is not None:
            self.held = self.held and self.remaining > 0
            self.remaining = max(self.remaining - 1, 0)
        return leads and self.held


@pytest.fixture
def lease(monkeypatch: pytest.MonkeyPatch) -> Lease:
    """Patch the public ``ops.Unit.is_leader`` so that a test can run the lease out mid-hook."""
    lease = Lease()
    original = ops.Unit.is_leader

    def is_leader(unit: ops.Unit) -> bool:
        return lease.answer(original(unit))

    monkeypatch.setattr(ops.Unit, 'is_leader', is_leader)
    return lease


@dataclasses.dataclass
class FakeLive:
    """The running server as ``live.apply_live`` finds it: no network in unit tests.

    Records each call (the settings, and how many passwords were offered) and
    answers ``result``: by default the server took the change live.
    """

    result: live.LiveResult = dataclasses.field(
        default_factory=lambda: live.LiveResult('applied', changes=('loglevel',))
    )
    calls: list[tuple[valkey_config.ValkeySettings, int]] = dataclasses.field(
        default_factory=list[tuple['valkey_config.ValkeySettings', int]]
    )

    users: list[tuple[str, ...]] = dataclasses.field(default_factory=list[tuple[str, ...]])
    """The user names of each ``live.apply_users`` call."""
    users_result: live.LiveResult = dataclasses.field(
        default_factory=lambda: live.LiveResult('applied', changes=('ACL SETUSER',))
    )

    def apply_live(
        self, settings: valkey_config.ValkeySettings, *, passwords: list[str], **_: object
    ) -> live.LiveResult:
        self.calls.append((settings, len(passwords)))
        return self.result

    def apply_users(self, users: tuple[valkey_config.User, ...], **_: object) -> live.LiveResult:
        self.users.append(tuple(user.name for user in users))
        return self.users_result


@pytest.fixture(autouse=True)
def live_server(monkeypatch: pytest.MonkeyPatch) -> FakeLive:
    """Every unit test's running Valkey is this fake; tests/workload uses real ones."""
    fake = FakeLive()
    monkeypatch.setattr(live, 'apply_live', fake.apply_live)
    monkeypatch.setattr(live, 'apply_users', fake.apply_users)
    return fake


@dataclasses.dataclass
class FakeChoice:
    """``primary_choice.settle`` as unit tests see it: no server is read.

    By default the leader's own server is chosen; a test sets ``chosen`` to
    model another outcome (an acting primary, and why).
    """

    chosen: primary_choice.Chosen | None = None
    calls: list[dict[str, object]] = dataclasses.field(default_factory=list[dict[str, object]])
    successor: primary_choice.Chosen | None = None
    """What ``step_down`` answers; by default no replica takes over."""
    step_downs: list[dict[str, object]] = dataclasses.field(
        default_factory=list[dict[str, object]]
    )
    in_sync: bool = False
    """What ``wait_for_sync`` answers: the leader's restarted server caught up."""
    sync_waits: int = 0
    then: primary_choice.Chosen | None = None
    """What ``settle`` answers from its second call in a hook on, if set."""
    during_step_down: Callable[[], None] | None = None
    """Runs inside ``step_down`` (the lease running out during the handover, say)."""

    def settle(self, **kwargs: Any) -> primary_choice.Chosen:
        self.calls.append(kwargs)
        if self.then is not None and len(self.calls) > 1:
            return self.then
        return self.chosen or primary_choice.Chosen(kwargs['leader'])

    def step_down(self, **kwargs: Any) -> primary_choice.Chosen:
        self.step_downs.append(kwargs)
        if self.during_step_down is not None:
            self.during_step_down()
        return self.successor or primary_choice.Chosen(kwargs['leader'], 'no replica in sync')

    def wait_for_sync(self, *_: object, **__: object) -> bool:
        self.sync_waits += 1
        return self.in_sync


@pytest.fixture(autouse=True)
def choice(monkeypatch: pytest.MonkeyPatch) -> FakeChoice:
    """Every unit test's leader chooses through this fake; tests/simulation reads real servers."""
    fake = FakeChoice()
    monkeypatch.setattr(primary_choice, 'settle', fake.settle)
    monkeypatch.setattr(primary_choice, 'step_down', fake.step_down)
    monkeypatch.setattr(primary_choice, 'wait_for_sync', fake.wait_for_sync)
    return fake


@pytest.fixture(autouse=True)
def kubernetes(monkeypatch: pytest.MonkeyPatch) -> fake_kubernetes.FakeKubernetes:
    """Every unit test talks to a fake API server; none needs a cluster."""
    return fake_kubernetes.install(monkeypatch)


@pytest.fixture
def fs(tmp_path: Path) -> UnitFilesystem:
    return make_filesystem(tmp_path)


@pytest.fixture
def ctx(tmp_path: Path) -> testing.Context[ValkeyLeaderCharm]:
    return make_context(tmp_path)


@pytest.fixture
def follower_ctx(tmp_path: Path) -> testing.Context[ValkeyLeaderCharm]:
    return make_context(tmp_path, unit_id=1)
