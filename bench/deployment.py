# Copyright 2026 The valkey-leader-k8s authors
# See LICENSE file for licensing details.

"""Three units of one application, simulated with ops.testing, and a side-effect counter.

Each unit has its own workload container (with real directories behind its
mounts, so pushed files persist from one event to the next) and sees what Juju
shares between units: the peer application databag, the app's secrets and
the config. After every event the unit's output state is folded back in, so
the next event, on any unit, starts from what the previous one left behind.

Both charms (valkey-leader-k8s and the minimal baseline) get the same
metadata, the same states and the same events.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import shutil
import sys
from collections import Counter
from collections.abc import Callable, Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import ops
import yaml
from ops import testing

if TYPE_CHECKING:
    from scenario.state import _Event  # pyright: ignore[reportMissingTypeStubs]

REPO_ROOT: Final = Path(__file__).resolve().parents[1]
MINIMAL_CHARM: Final = REPO_ROOT / 'bench' / 'minimal_charm' / 'src' / 'charm.py'
PEERS: Final = 'valkey-peers'
PEER_RELATION_ID: Final = 7
UNITS: Final = (0, 1, 2)
# One model for every unit and every event: ops.testing would otherwise make up
# a new model name (and so new unit addresses) for every State.
MODEL: Final = testing.Model(name='bench', uuid='00000000-0000-4000-8000-0000000000be')
VERSION_OUTPUT: Final = 'Valkey server v=9.1.0 sha=00000000:0 malloc=jemalloc-5.3.0 bits=64\n'

CharmType = type[ops.CharmBase]
Ctx = testing.Context[ops.CharmBase]
EventFactory = Callable[[Ctx, testing.State], '_Event']


def load_yaml(name: str) -> dict[str, Any]:
    """One of the repository's metadata files, as the dict ops.testing takes."""
    data: dict[str, Any] = yaml.safe_load((REPO_ROOT / name).read_text())
    return data


def load_charms() -> dict[str, CharmType]:
    """Both charm classes. They share the module name ``charm``, so one is loaded by path."""
    import charm  # noqa: PLC0415 - only once run.py has put src/ on sys.path

    spec = importlib.util.spec_from_file_location('minimal_charm', MINIMAL_CHARM)
    if spec is None or spec.loader is None:
        raise ImportError(MINIMAL_CHARM)
    minimal = importlib.util.module_from_spec(spec)
    sys.modules['minimal_charm'] = minimal
    spec.loader.exec_module(minimal)
    minimal_type: CharmType = minimal.MinimalCharm
    return {'valkey-leader-k8s': charm.ValkeyLeaderCharm, 'minimal': minimal_type}


@dataclasses.dataclass(frozen=True)
class Metadata:
    """metadata.yaml, config.yaml and actions.yaml, read once."""

    meta: dict[str, Any]
    config: dict[str, Any]
    actions: dict[str, Any]

    @classmethod
    def load(cls) -> Metadata:
        """Read the three files from the repository root."""
        return cls(
            meta=load_yaml('metadata.yaml'),
            config=load_yaml('config.yaml'),
            actions=load_yaml('actions.yaml'),
        )


def make_charm_root(root: Path, charm_type: CharmType) -> Path:
    """What the packed charm ships besides code: the templates.

    The baseline gets them too (and ignores them), so that both charms' roots
    hold the same files.
    """
    charm_root = root / f'charm-root-{charm_type.__name__}'
    if not charm_root.exists():
        shutil.copytree(REPO_ROOT / 'templates', charm_root / 'templates')
    return charm_root


@dataclasses.dataclass
class Deployment:
    """One application of three units, as ops.testing states that share what Juju shares."""

    root: Path
    metadata: Metadata
    leader: int = 0
    config: dict[str, str | int | float | bool] = dataclasses.field(
        default_factory=dict[str, str | int | float | bool]
    )
    app_data: dict[str, str] = dataclasses.field(default_factory=dict[str, str])
    secrets: frozenset[testing.Secret] = frozenset()
    containers: dict[int, testing.Container] = dataclasses.field(
        default_factory=dict[int, testing.Container]
    )
    stored_states: dict[int, frozenset[testing.StoredState]] = dataclasses.field(
        default_factory=dict[int, frozenset[testing.StoredState]]
    )
    """Each unit's StoredState, kept from one event to its next, as in a pod."""

    def __post_init__(self) -> None:
        for unit in UNITS:
            self.etc_dir(unit).mkdir(parents=True, exist_ok=True)
            self.data_dir(unit).mkdir(parents=True, exist_ok=True)
            self.containers[unit] = testing.Container(
                'valkey',
                can_connect=True,
                mounts={
                    'etc': testing.Mount(location='/run/valkey', source=self.etc_dir(unit)),
                    'data': testing.Mount(location='/var/lib/valkey', source=self.data_dir(unit)),
                },
                execs={
                    testing.Exec(['valkey-server', '--version'], stdout=VERSION_OUTPUT),
                },
            )

    def etc_dir(self, unit: int) -> Path:
        """The directory behind the unit's ``/run/valkey``."""
        return self.root / f'unit-{unit}' / 'etc'

    def data_dir(self, unit: int) -> Path:
        """The directory behind the unit's ``/var/lib/valkey``."""
        return self.root / f'unit-{unit}' / 'data'

    def config_file(self, unit: int) -> Path:
        """The unit's rendered ``/run/valkey/valkey.conf``."""
        return self.etc_dir(unit) / 'valkey.conf'

    def context(self, charm_type: CharmType, unit: int) -> Ctx:
        """A fresh ops.testing Context for ``unit``: its logs and histories start empty."""
        return testing.Context(
            charm_type,
            meta=self.metadata.meta,
            config=self.metadata.config,
            actions=self.metadata.actions,
            charm_root=make_charm_root(self.root, charm_type),
            unit_id=unit,
        )

    def state(self, unit: int, *, can_connect: bool = True) -> testing.State:
        """What ``unit`` sees now."""
        container = dataclasses.replace(self.containers[unit], can_connect=can_connect)
        return testing.State(
            model=MODEL,
            leader=unit == self.leader,
            config=dict(self.config),
            relations={
                testing.PeerRelation(
                    PEERS,
                    id=PEER_RELATION_ID,
                    local_app_data=dict(self.app_data),
                    peers_data={other: {} for other in UNITS if other != unit},
                )
            },
            secrets=self.secrets,
            containers={container},
            stored_states=self.stored_states.get(unit, frozenset()),
        )

    def absorb(self, unit: int, out: testing.State) -> None:
        """Keep what ``unit``'s event left behind, for the next event on any unit."""
        self.app_data = dict(out.get_relation(PEER_RELATION_ID).local_app_data)
        self.secrets = out.secrets
        self.containers[unit] = dataclasses.replace(out.get_container('valkey'), can_connect=True)
        self.stored_states[unit] = out.stored_states


# ------------------------------------------------------------------ events


def config_changed(ctx: Ctx, _: testing.State) -> _Event:
    """``config-changed``."""
    return ctx.on.config_changed()


def update_status(ctx: Ctx, _: testing.State) -> _Event:
    """``update-status``."""
    return ctx.on.update_status()


def leader_elected(ctx: Ctx, _: testing.State) -> _Event:
    """``leader-elected``."""
    return ctx.on.leader_elected()


def start(ctx: Ctx, _: testing.State) -> _Event:
    """``start``: an event the charm does not observe, so only collect-status runs."""
    return ctx.on.start()


def pebble_ready(ctx: Ctx, state: testing.State) -> _Event:
    """``valkey-pebble-ready``."""
    return ctx.on.pebble_ready(state.get_container('valkey'))


def rotate_password(ctx: Ctx, _: testing.State) -> _Event:
    """The ``rotate-password`` action."""
    return ctx.on.action('rotate-password')


def peers_changed_by(leader: int) -> EventFactory:
    """``valkey-peers-relation-changed``, as fired by a write of ``leader``."""

    def event(ctx: Ctx, state: testing.State) -> _Event:
        return ctx.on.relation_changed(state.get_relation(PEER_RELATION_ID), remote_unit=leader)

    event.__doc__ = 'valkey-peers-relation-changed'
    return event


# ------------------------------------------------------------ side effects


@dataclasses.dataclass
class SideEffects:
    """What a charm did to the world, counted where it calls ops."""

    counts: Counter[str] = dataclasses.field(default_factory=Counter[str])

    def take(self) -> Counter[str]:
        """The counts since the last ``take``."""
        counts, self.counts = self.counts, Counter[str]()
        return counts


# (owner, method, category). Every way this charm (or any ops charm) changes the
# world funnels through one of these: a category counts the calls.
_COUNTED: Final = (
    (ops.Container, 'push', 'pushes'),
    (ops.Container, 'restart', 'restarts'),
    (ops.Container, 'start', 'restarts'),
    (ops.Container, 'stop', 'restarts'),
    (ops.Container, 'replan', 'restarts'),
    (ops.Container, 'add_layer', 'layers'),
    (ops.Application, 'add_secret', 'secret revisions'),
    (ops.Unit, 'add_secret', 'secret revisions'),
    (ops.Secret, 'set_content', 'secret revisions'),
)
# The Container methods that call Pebble's API: each is at least one round
# trip on the Pebble socket in a pod. Only the outermost call is counted
# (get_service calls get_services, exists calls list_files, ...).
_PEBBLE_CALLS: Final = (
    'can_connect',
    'replan',
    'start',
    'restart',
    'stop',
    'add_layer',
    'get_plan',
    'get_services',
    'get_service',
    'get_checks',
    'get_check',
    'start_checks',
    'stop_checks',
    'pull',
    'push',
    'list_files',
    'push_path',
    'pull_path',
    'exists',
    'isdir',
    'make_dir',
    'remove_path',
    'exec',
    'send_signal',
    'get_notice',
    'get_notices',
)


@contextlib.contextmanager
def counting_side_effects() -> Generator[SideEffects]:
    """Count, while in the block, the calls that change the world, and Pebble calls."""
    recorder = SideEffects()
    originals: list[tuple[type, str, Any]] = []
    depth = [0]

    def counted(original: Callable[..., Any], category: str) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            recorder.counts[category] += 1
            return original(*args, **kwargs)

        return wrapper

    def pebble_call(original: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if not depth[0]:
                recorder.counts['pebble calls'] += 1
            depth[0] += 1
            try:
                return original(*args, **kwargs)
            finally:
                depth[0] -= 1

        return wrapper

    def exec_(original: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(self: ops.Container, command: list[str], *args: Any, **kwargs: Any) -> Any:
            recorder.counts['chowns' if command[0] == 'chown' else 'execs'] += 1
            return original(self, command, *args, **kwargs)

        return wrapper

    def peer_write(original: Callable[..., Any]) -> Callable[..., Any]:
        # Relation.save and item assignment both end in RelationDataContent.update.
        def wrapper(self: ops.RelationDataContent, *args: Any, **kwargs: Any) -> Any:
            if self.relation.name == PEERS:
                recorder.counts['peer-data writes'] += 1
            return original(self, *args, **kwargs)

        return wrapper

    def patch(
        owner: type, name: str, wrap: Callable[[Callable[..., Any]], Callable[..., Any]]
    ) -> None:
        originals.append((owner, name, getattr(owner, name)))
        setattr(owner, name, wrap(getattr(owner, name)))

    for name in _PEBBLE_CALLS:
        patch(ops.Container, name, pebble_call)
    for owner, name, category in _COUNTED:
        patch(owner, name, lambda original, category=category: counted(original, category))
    patch(ops.Container, 'exec', exec_)
    patch(ops.RelationDataContent, 'update', peer_write)
    try:
        yield recorder
    finally:
        for owner, name, original in reversed(originals):
            setattr(owner, name, original)
