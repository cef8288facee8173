#!/usr/bin/env python3
# Copyright 2026 The valkey-leader-k8s authors
# See LICENSE file for licensing details.

"""What a leadership change, a rotation or a config change costs the workload.

`tox -e bench-failover` (``python -m bench.failover``). A benchmark, not a test:
it prints a table and writes JSON (default ``bench/results/failover.json``).

The charm does every event. Three units of the real charm run in the
simulation of ``tests/simulation/driver.py`` (ops.testing for the charm, one
real ``valkey-server`` per unit started from the file the charm pushed, Juju's
event order), and hold a dataset of each size, written to the primary with
pipelined ``MSET``. Every event is done two ways, one after the other, from
the same steady state:

* ``live``: the charm as it is: it applies a changed file to the running
  server (``live.apply_live``, ``live.apply_users``), and a new leader asks a
  live old primary to hand over (``handover.hand_over``);
* ``restart``: the same charm with the live path switched off
  (:func:`live_path_switched_off`): every live call answers ``refused``, and
  the charm takes its documented fallback, a restart of Valkey on each unit
  whose file changed, in that unit's own hook: what it did before the live path.

Events: the leader's pod deleted (SIGTERM) or its node lost (SIGKILL, no
``stop`` hook), then Juju elects the next unit (the pod is recreated after
the measurement); Juju moves the lease while the old leader's pod keeps
running, without and with a writer; ``rotate-password`` on the leader; a
``config-changed`` of each live option.

Per event and way: restarts per unit (the hooks that (re)started a server,
as the driver saw them); time from the start of the leader's hook (for a
leadership change, the new leader's ``leader-elected``) until the primary
accepts writes for good, and until every replica is in sync for good
(``master_link_status:up``, following the leader, its offset at least the
primary's); the same from "the switch", the leader's first call into
``live`` in that hook, which leaves out what a hook costs in the simulation
(ops.testing, the fake Kubernetes, Pebble on directories), and for the
replicas from the last call into ``live`` before they were in sync (the hook
that switched the last replica: a follower switches in its own
``relation-changed``, a round after the leader's hook); full and partial
resyncs served (``sync_full``, ``sync_partial_ok``, summed over the servers,
counted from the event's start); idle client connections dropped (two per
server, opened before the event). "For good" because a restart can come
after the leader's hook (in a replica's own hook): both are sampled every
half millisecond while the hooks run, by a child process (:class:`Observer`),
and the figure is where the last run of "yes" began. During leadership
changes with the old primary gone or killed, and in the switchover under
writes, one client writes continuously through the primary endpoint (the
port of the pod the fake ``<app>-primary`` Service selects, followed as soon
as the charm applies the Service): writes acknowledged and then missing on
the new primary, and the longest time without an acknowledged write.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import dataclasses
import json
import multiprocessing
import os
import sys
import tempfile
import threading
import time
import typing
from collections.abc import Callable, Generator
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event as EventType
from pathlib import Path
from typing import Any, Final
from unittest import mock

if typing.TYPE_CHECKING:
    from multiprocessing.sharedctypes import Synchronized, SynchronizedString

    SharedInt = Synchronized[int]
    SharedBytes = SynchronizedString

REPO_ROOT: Final = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO_ROOT / 'src'), str(REPO_ROOT)]

import valkey  # noqa: E402
import valkey.exceptions  # noqa: E402

import primary_service  # noqa: E402
from bench.run import machine  # noqa: E402
from tests.fake_kubernetes import Request  # noqa: E402
from tests.simulation.driver import PRIMARY_SERVICE, Application, Hook  # noqa: E402
from tests.workload import valkey_server  # noqa: E402
from tests.workload.charm_unit import unit_name  # noqa: E402
from tests.workload.continuous_writes import Writer, connect  # noqa: E402
from workload import handover, live, primary_choice  # noqa: E402

SIZES: Final = {'100k': 100_000, '1M': 1_000_000, '3.3M': 3_300_000}
"""Dataset name -> keys (90-byte values): about 24 MB, 150 MB and 430 MB of used_memory."""
VALUE: Final = b'v' * 90
BATCH: Final = 1000
IDLE_CLIENTS: Final = 2
TIMEOUT: Final = 180.0
SAMPLE_INTERVAL: Final = 0.0005
SWITCH_INTERVAL: Final = 0.0005
"""Python's thread switch interval here (the default is 5 ms): the samplers share
the GIL with the hooks, and would otherwise see the servers up to 5 ms late."""
WAYS: Final = ('restart', 'live')

GONE: Final = 'leader-change, old primary gone'
KILLED: Final = 'leader-change, old primary killed'
ALIVE: Final = 'leader-change, old primary alive'
UNDER_WRITES: Final = 'switchover under writes'
EVENTS: Final = (
    GONE,
    KILLED,
    ALIVE,
    UNDER_WRITES,
    'rotate-password',
    'config-changed log-level',
    'config-changed maxmemory',
    'config-changed maxmemory-policy',
)
WITH_WRITER: Final = (GONE, KILLED, UNDER_WRITES)
OTHER_VALUE: Final = {
    # config.yaml's option -> (its default, the other value the benchmark sets)
    'log-level': ('notice', 'verbose'),
    'maxmemory': ('', '8gb'),
    'maxmemory-policy': ('noeviction', 'allkeys-lru'),
}


@contextlib.contextmanager
def live_path_switched_off() -> Generator[None]:
    """The charm without its live path: what it does when every live call is refused.

    ``refused`` is an answer the charm already handles (a server that refused
    a command): it logs the reason and restarts the service on the file it
    pushed, so a new leader is promoted by that restart (the leader's choice of
    primary is switched off too: no servers read, no handover). Kept in the benchmark:
    the charm has no such switch.
    """
    apply_refused = live.LiveResult('refused', reason='live apply switched off for the benchmark')

    def leader_takes_it(**kwargs: Any) -> primary_choice.Chosen:
        return primary_choice.Chosen(kwargs['leader'])

    with contextlib.ExitStack() as stack:
        for name in ('apply_live', 'apply_users'):
            stack.enter_context(mock.patch.object(live, name, return_value=apply_refused))
        # No servers read, no handover: the leader's file says primary, and a restart makes it so.
        stack.enter_context(mock.patch.object(primary_choice, 'settle', leader_takes_it))
        yield


@contextlib.contextmanager
def calls_into_live(times: list[float]) -> Generator[None]:
    """Note when the charm calls ``live`` to change a server (apply, or hand over).

    In the leader's hook, the first such call is the switch: the live way
    changes the server there; the restart way is refused there and restarts
    it right after. The time from it leaves out the simulation's own cost of a
    hook (ops.testing, the fake Kubernetes, Pebble on directories).
    """
    with contextlib.ExitStack() as stack:
        for module, name in ((live, 'apply_live'), (handover, 'hand_over')):
            original = getattr(module, name)

            def timed(*args: object, _original: Any = original, **kwargs: object) -> object:
                times.append(time.monotonic())
                return _original(*args, **kwargs)

            stack.enter_context(mock.patch.object(module, name, timed))
        yield


def way_of_the_charm(way: str) -> contextlib.AbstractContextManager[None]:
    """``live``: the charm as it is; ``restart``: its live path switched off."""
    return live_path_switched_off() if way == 'restart' else contextlib.nullcontext()


# ------------------------------------------------------------ observing


class Connections:
    """One client per server port, opened on first use and again after a failure.

    A client authenticates with the first of ``passwords()`` that the server
    accepts: after a rotation a restarted server wants the new password, a
    server that changed it live still serves connections made with the old one.
    """

    def __init__(self, passwords: Callable[[], list[str]], timeout: float = 1.0) -> None:
        self.passwords = passwords
        self.timeout = timeout
        self._clients: dict[int, valkey.Valkey] = {}

    def command(self, port: int, *args: str | int) -> Any:
        """One command on the server at ``port``.

        A client whose connection broke (the server restarted) is opened again
        once, with the passwords of now: its pool would reconnect with the old one.
        """
        while True:
            fresh = port not in self._clients
            client = self._clients.get(port) or self._open(port)
            try:
                return typing.cast('Any', client.execute_command(*args))  # pyright: ignore[reportUnknownMemberType]
            except valkey.exceptions.ConnectionError:
                self._clients.pop(port, None)
                client.close()
                if fresh:
                    raise

    def info(self, port: int, section: str) -> dict[str, Any]:
        """One ``INFO`` section."""
        return typing.cast('dict[str, Any]', self.command(port, 'INFO', section))

    def _open(self, port: int) -> valkey.Valkey:
        refused: valkey.exceptions.ValkeyError | None = None
        for password in self.passwords():
            client = connect(port, password, self.timeout)
            try:
                client.ping()  # pyright: ignore[reportUnknownMemberType]
            except valkey.exceptions.AuthenticationError as e:
                client.close()
                refused = e
                continue
            except valkey.exceptions.ValkeyError:
                client.close()
                raise
            self._clients[port] = client
            return client
        raise refused or valkey.exceptions.AuthenticationError('no password given')

    def close(self) -> None:
        """Close every client."""
        for client in self._clients.values():
            client.close()
        self._clients.clear()


def in_sync(connections: Connections, primary: int, replicas: list[int]) -> bool:
    """Every replica follows ``primary``, its link up, with all it had when asked."""
    replication = connections.info(primary, 'replication')
    if replication.get('role') != 'master':
        return False
    offset = replication['master_repl_offset']
    for port in replicas:
        mine = connections.info(port, 'replication')
        if (
            mine.get('master_link_status') != 'up'
            or mine.get('master_port') != primary
            or mine.get('slave_repl_offset', -1) < offset
        ):
            return False
    return True


def writable(connections: Connections, primary: int) -> bool:
    """The server at ``primary`` acknowledges a write."""
    return connections.command(primary, 'SET', 'bench:probe', '1') is True


class Sampler(threading.Thread):
    """Asks the servers one yes-or-no question about every half millisecond, with the time.

    Runs until told the hooks are done (``hooks_done``) and the answer is yes
    again, or ``TIMEOUT``. A failed command counts as no.
    """

    def __init__(
        self,
        question: Callable[[Connections], bool],
        passwords: Callable[[], list[str]],
        hooks_done: EventType,
    ):
        super().__init__(daemon=True)
        self.question = question
        self.connections = Connections(passwords)
        self.samples: list[tuple[float, bool]] = []
        self.hooks_done = hooks_done

    def run(self) -> None:
        """Sample until the hooks are done and the answer is yes."""
        deadline = time.monotonic() + TIMEOUT
        try:
            while time.monotonic() < deadline:
                try:
                    yes = self.question(self.connections)
                except valkey.exceptions.ValkeyError:
                    yes = False
                self.samples.append((time.monotonic(), yes))
                if yes and self.hooks_done.is_set():
                    return
                time.sleep(SAMPLE_INTERVAL)
        finally:
            self.connections.close()

    def result(self, start: float, what: str) -> tuple[float, int]:
        """Seconds from ``start`` until the answer was yes for good; the "no" answers since.

        Raises:
            RuntimeError: if it never became yes (the way did not converge).
        """
        self.join()
        if not self.samples or not self.samples[-1][1]:
            raise RuntimeError(f'{what}: never true within {TIMEOUT:.0f} s')
        first_yes = len(self.samples) - 1
        while first_yes > 0 and self.samples[first_yes - 1][1]:
            first_yes -= 1
        # Yes all along: the first answer after the start is the figure (about 0).
        at = max(self.samples[first_yes][0], next(t for t, _ in self.samples if t >= start))
        refused = sum(1 for t, yes in self.samples if t >= start and not yes)
        return at - start, refused


def sync_stats(connections: Connections, ports: list[int]) -> dict[int, tuple[str, int, int]]:
    """Per server: ``run_id``, ``sync_full``, ``sync_partial_ok``."""
    stats: dict[int, tuple[str, int, int]] = {}
    for port in ports:
        run_id = str(connections.info(port, 'server')['run_id'])
        values = connections.info(port, 'stats')
        stats[port] = (run_id, values['sync_full'], values['sync_partial_ok'])
    return stats


def sync_delta(
    before: dict[int, tuple[str, int, int]], after: dict[int, tuple[str, int, int]]
) -> tuple[int, int]:
    """Full and partial resyncs served since ``before`` (a restarted server starts at 0)."""
    full = partial = 0
    for port, (run_id, f, p) in after.items():
        old = before.get(port)
        base = (old[1], old[2]) if old is not None and old[0] == run_id else (0, 0)
        full += f - base[0]
        partial += p - base[1]
    return full, partial


@contextlib.contextmanager
def idle_clients(
    ports: list[int], primary: int, password: str
) -> Generator[Callable[[], dict[str, int]], None, None]:
    """Two idle connections per server; yields a count of those that were dropped.

    A connection counts as dropped if it fails, or if it answers with another
    ``CLIENT ID``: the client had to connect again.
    """
    opened: list[tuple[bool, valkey.Valkey, object]] = []
    for port in ports:
        for _ in range(IDLE_CLIENTS):
            client = connect(port, password, timeout=2)
            client_id = typing.cast('object', client.execute_command('CLIENT', 'ID'))  # pyright: ignore[reportUnknownMemberType]
            opened.append((port == primary, client, client_id))

    def dropped() -> dict[str, int]:
        counts = {'on_primary': 0, 'on_replicas': 0}
        for on_primary, client, client_id in opened:
            try:
                answer = typing.cast('object', client.execute_command('CLIENT', 'ID'))  # pyright: ignore[reportUnknownMemberType]
                same = answer == client_id
            except valkey.exceptions.ValkeyError:
                same = False
            if not same:
                counts['on_primary' if on_primary else 'on_replicas'] += 1
        return counts

    try:
        yield dropped
    finally:
        for _, client, _ in opened:
            client.close()


class FollowingWriter(Writer):
    """The shared writer, its endpoint in memory shared with the parent, which re-points it."""

    def __init__(self, endpoint: SharedInt, password: str, key_prefix: str) -> None:
        self.shared_endpoint = endpoint
        super().__init__(
            endpoint.value, password, key_prefix=key_prefix, follow_endpoint=False, seconds=TIMEOUT
        )

    @property
    def endpoint(self) -> int:  # pyright: ignore[reportIncompatibleVariableOverride]
        """Where ``<app>-primary`` points now."""
        return self.shared_endpoint.value

    @endpoint.setter
    def endpoint(self, port: int) -> None:
        self.shared_endpoint.value = port


class Observer:
    """The two samplers, and the writer if any, in a child process of their own.

    In the benchmark's process they would take the GIL from the very hooks
    they time (a sampler asks every half millisecond, the writer never
    pauses). The child is forked before the event, with the ports it watches
    and the password; it learns where ``<app>-primary`` points, and a new
    password, through shared memory. Like a client behind a Service, the
    writer keeps its connection until a write fails, then reconnects to
    wherever the Service points; the Service follows the charm's apply at
    once (in a cluster, kube-proxy takes a moment longer).
    """

    def __init__(
        self, primary: int, replicas: list[int], password: str, writer_prefix: str | None
    ) -> None:
        context = multiprocessing.get_context('fork')
        self.endpoint: SharedInt = context.Value('i', 0)
        self.password: SharedBytes = context.Array(ctypes.c_char, 256)
        self.password.value = password.encode()
        self.hooks_done = context.Event()
        self.writer_prefix = writer_prefix
        self._results, child_end = context.Pipe()
        self._process = context.Process(
            target=self._observe, args=(child_end, primary, replicas, password), daemon=True
        )

    def start(self, endpoint: int) -> None:
        """Fork; sample (and write to ``endpoint``) for a moment before the event."""
        self.endpoint.value = endpoint
        self._process.start()
        time.sleep(0.3)

    def finish(self, start: float) -> dict[str, Any]:
        """The figures, timed from ``start`` (the leader's hook).

        Raises:
            RuntimeError: if the primary never accepted writes, or the replicas
                never caught up (the way did not converge).
        """
        self.hooks_done.set()
        self._results.send(start)
        figures = typing.cast('dict[str, Any]', self._results.recv())
        self._process.join()
        if 'error' in figures:
            raise RuntimeError(figures['error'])
        return figures

    def _observe(self, results: Connection, primary: int, replicas: list[int], old: str) -> None:
        """In the child: sample, write; send the figures once told when the clock started."""

        def passwords() -> list[str]:
            return [self.password.value.decode(), old]

        samplers = {
            'writable': Sampler(lambda c: writable(c, primary), passwords, self.hooks_done),
            'in_sync': Sampler(
                lambda c: in_sync(c, primary, replicas), passwords, self.hooks_done
            ),
        }
        for sampler in samplers.values():
            sampler.start()
        writer = None
        if self.writer_prefix is not None:
            writer = FollowingWriter(self.endpoint, old, self.writer_prefix)
            writer.start()
        start = typing.cast('float', results.recv())
        figures: dict[str, Any] = {}
        try:
            writable_s, refused = samplers['writable'].result(start, 'the primary accepts writes')
            in_sync_s, _ = samplers['in_sync'].result(start, 'replicas in sync')
            figures |= {
                'primary_writable_s': writable_s,
                'writes_refused': refused,
                'replicas_in_sync_s': in_sync_s,
            }
        except RuntimeError as e:
            figures['error'] = str(e)
        if writer is not None:
            time.sleep(0.3)  # writing after the event
            writer.finish()
            figures['writer'] = {
                'acknowledged': writer.acknowledged,
                'failures': writer.failures,
                'longest_gap': writer.longest_gap,
            }
        results.send(figures)


def lost_writes(
    acknowledged: list[int], key_prefix: str, connections: Connections, primary: int
) -> int:
    """How many of the writer's acknowledged writes the primary does not have."""
    missing = 0
    for start in range(0, len(acknowledged), 10_000):
        chunk = acknowledged[start : start + 10_000]
        keys = [f'{key_prefix}{i}' for i in chunk]
        values = connections.command(primary, 'MGET', *keys)
        missing += sum(1 for i, v in zip(chunk, values, strict=True) if v != str(i))
    return missing


# ------------------------------------------------------------ events


@dataclasses.dataclass
class Bench:
    """The application, when each of its hooks ended, and the event's observer."""

    app: Application
    hook_ended: dict[int, float] = dataclasses.field(default_factory=dict[int, float])
    observer: Observer | None = None

    def on_hook(self, hook: Hook) -> None:
        """The driver's callback, right after each hook: note the time, share a new password."""
        self.hook_ended[hook.number] = time.monotonic()
        if self.observer is not None:
            self.observer.password.value = self.app.password().encode()

    def on_kubernetes_request(self, request: Request) -> None:
        """The charm applies ``<app>-primary``: the writer's endpoint follows it."""
        if self.observer is None or request.method != 'PATCH' or request.body is None:
            return
        if request.path.endswith(f'/{PRIMARY_SERVICE}'):
            pod = str(request.body['spec']['selector'][primary_service.POD_NAME_LABEL])
            self.observer.endpoint.value = self.port(int(pod.rsplit('-', 1)[1]))

    def leader_id(self) -> int:
        """The unit Juju has elected."""
        leader = self.app.leader()
        if leader is None:
            raise RuntimeError('no leader')
        return leader.unit_id

    def port(self, unit_id: int) -> int:
        """Where the unit's server listens."""
        return self.app.server(unit_id).port

    def running(self) -> list[int]:
        """The units whose server runs."""
        return [u.unit_id for u in self.app.units.values() if u.server.running]

    def connections(self, *also: str) -> Connections:
        """Clients for this process: the password when they connect, or ``also``."""
        return Connections(lambda: [self.app.password(), *also], timeout=10)

    def wait_in_sync(self) -> None:
        """Until every running replica follows the leader with everything it has."""
        primary = self.port(self.leader_id())
        replicas = [self.port(u) for u in self.running() if u != self.leader_id()]
        connections = self.connections()
        try:

            def synced() -> bool | None:
                with contextlib.suppress(valkey.exceptions.ValkeyError):
                    return in_sync(connections, primary, replicas) or None
                return None

            valkey_server.eventually(synced, timeout=TIMEOUT, what='replicas in sync')
        finally:
            connections.close()

    def run_event(self, event: str, way: str, number: int) -> dict[str, Any]:
        """One event, one way, from a steady state; its figures."""
        app = self.app
        old = self.leader_id()
        leader_change = event in (GONE, KILLED, ALIVE, UNDER_WRITES)
        new = (old + 1) % 3 if leader_change else old
        survivors = [u for u in self.running() if not (u == old and event in (GONE, KILLED))]
        primary, replicas = self.port(new), [self.port(u) for u in survivors if u != new]
        ports = [self.port(u) for u in survivors]
        first_hook = len(app.hooks)
        prefix = f'w:{number}:{way}:' if event in WITH_WRITER else None
        with contextlib.ExitStack() as stack:
            observer = self.connections(app.password())
            stack.callback(observer.close)
            dropped = stack.enter_context(idle_clients(ports, self.port(old), app.password()))
            before = sync_stats(observer, ports)
            self.observer = Observer(primary, replicas, app.password(), prefix)
            self.observer.start(endpoint=self.port(old))
            calls: list[float] = []
            try:
                with way_of_the_charm(way), calls_into_live(calls):
                    self.cause(event, old, new)
                    app.settle()
                hooks = [h for h in app.hooks[first_hook:] if not h.check]
                # The clock starts with the (new) leader's hook: the one that switches the primary.
                leaders = next(h for h in hooks if h.unit == unit_name(new))
                start, end = leaders.started, self.hook_ended[leaders.number]
                figures = self.observer.finish(start)
            finally:
                self.observer = None
            figures |= after_the_switch(figures, calls, start, end)
            figures['hooks_s'] = self.hook_ended[hooks[-1].number] - start
            figures['hooks'] = len(hooks)
            writer = figures.pop('writer', None)
            if prefix is not None and writer is not None:
                figures |= {
                    'writes_acknowledged': len(writer['acknowledged']),
                    'acknowledged_writes_lost': lost_writes(
                        writer['acknowledged'], prefix, observer, primary
                    ),
                    'write_failures': writer['failures'],
                    'longest_write_gap_s': writer['longest_gap'],
                }
            full, partial = sync_delta(before, sync_stats(observer, ports))
            figures |= {'sync_full': full, 'sync_partial_ok': partial}
            figures['connections_dropped'] = dropped()
        figures['restarts_per_unit'] = [
            sum(1 for h in hooks if h.unit == unit_name(u) and is_a_start(h)) for u in range(3)
        ]
        if app.errors:
            raise RuntimeError(f'{event}, {way}: hooks raised: {app.errors}')
        if event in (GONE, KILLED):
            # The pod comes back (not measured): it starts from its file, as a replica.
            app.recreate_pod(old)
            app.settle()
        self.wait_in_sync()
        return figures

    def cause(self, event: str, old: int, new: int) -> None:
        """What Juju, Kubernetes or the operator does; the hooks run in ``settle``."""
        app = self.app
        if event in (GONE, KILLED):
            # Deleted: SIGTERM, and Valkey waits for its replicas before it exits.
            # Killed: the node is lost, Valkey gets SIGKILL and hands nothing over.
            app.delete_pod(old, node_lost=event == KILLED)
            app.elect(new)
        elif event in (ALIVE, UNDER_WRITES):
            app.elect(new)  # Juju moved the lease; the old leader's pod keeps running
        elif event == 'rotate-password':
            app.run_action(old, 'rotate-password')
        else:
            option = event.removeprefix('config-changed ')
            default, other = OTHER_VALUE[option]
            app.configure(
                **{option: other if app.config.get(option, default) == default else None}
            )


def after_the_switch(
    figures: dict[str, Any], calls: list[float], start: float, end: float
) -> dict[str, float]:
    """The figures timed from the switches rather than from the leader's hook.

    The switch is the leader's first call into ``live`` in its hook (``start``
    to ``end``). A replica switches in its own hook (``relation-changed``, a
    round later): the issue's "in sync after the hook that switches them" is
    timed from the last call into ``live`` before the replicas were in sync.
    """
    switch = next((t for t in calls if start <= t <= end), end)
    out = {'switch_in_hook_s': switch - start}
    for name in ('primary_writable', 'replicas_in_sync'):
        out[f'{name}_after_switch_s'] = max(0.0, start + figures[f'{name}_s'] - switch)
    in_sync_at = start + figures['replicas_in_sync_s']
    last_switch = max((t for t in calls if switch <= t <= in_sync_at), default=switch)
    # In sync all along (an option change): 0, as for the other figures.
    out['replicas_in_sync_after_their_switch_s'] = max(0.0, in_sync_at - last_switch)
    return out


def is_a_start(hook: Hook) -> bool:
    """The hook (re)started the unit's server (the driver says how it applied a new file)."""
    return hook.workload is not None and hook.workload.startswith(('restarted', 'started'))


# ------------------------------------------------------------ a dataset


def load(bench: Bench, keys: int) -> dict[str, Any]:
    """Write ``keys`` keys to the primary with pipelined MSETs; wait for the replicas."""
    # With replicas, a primary takes writes only once one follows it (min-replicas-to-write).
    bench.wait_in_sync()
    start = time.monotonic()
    port, password = bench.port(bench.leader_id()), bench.app.password()
    with connect(port, password, timeout=60) as client:
        pipe = client.pipeline(transaction=False)  # pyright: ignore[reportUnknownMemberType]
        for batch in range(0, keys, BATCH):
            pairs: list[str | bytes] = []
            for i in range(batch, min(batch + BATCH, keys)):
                pairs += [f'key:{i:08d}', VALUE]
            pipe.execute_command('MSET', *pairs)  # pyright: ignore[reportUnknownMemberType]
            if len(pipe) >= 20:
                pipe.execute()
        pipe.execute()
        memory = typing.cast('dict[str, Any]', client.info('memory'))  # pyright: ignore[reportUnknownMemberType]
    bench.wait_in_sync()
    return {
        'keys': keys,
        'used_memory': memory['used_memory'],
        'used_memory_human': memory['used_memory_human'],
        'load_seconds': round(time.monotonic() - start, 1),
    }


def run_size(root: Path, name: str, keys: int) -> dict[str, Any]:
    """Every event, both ways, on one dataset, on a new application."""
    workdir = root / name
    workdir.mkdir()
    bench = Bench(Application(workdir))
    bench.app.on_hook = bench.on_hook
    driver_hook = bench.app.kubernetes.on_request

    def on_request(request: Request) -> None:
        if driver_hook is not None:
            driver_hook(request)
        bench.on_kubernetes_request(request)

    bench.app.kubernetes.on_request = on_request
    with bench.app:
        bench.app.deploy(leader=0)
        bench.app.settle()
        report: dict[str, Any] = {'dataset': load(bench, keys), 'events': {}}
        print(f'{name}: {report["dataset"]}', flush=True)
        for number, event in enumerate(EVENTS):
            report['events'][event] = {}
            for way in WAYS:
                figures = bench.run_event(event, way, number)
                report['events'][event][way] = figures
                print(f'  {event:34} {way:8} {summary(figures)}', flush=True)
    return report


# ------------------------------------------------------------ output


def summary(figures: dict[str, Any]) -> str:
    """One line of the printed log."""
    text = (
        f'restarts {figures["restarts_per_unit"]} '
        f'writable {figures["primary_writable_s"] * 1000:8.1f} ms  '
        f'in sync {figures["replicas_in_sync_s"] * 1000:8.1f} ms  '
        f'(after the switch {figures["primary_writable_after_switch_s"] * 1000:.1f} / '
        f'{figures["replicas_in_sync_after_their_switch_s"] * 1000:.1f} ms)  '
        f'hooks {figures["hooks_s"] * 1000:7.1f} ms  '
        f'full/partial {figures["sync_full"]}/{figures["sync_partial_ok"]}  '
        f'dropped {figures["connections_dropped"]}'
    )
    if 'acknowledged_writes_lost' in figures:
        text += (
            f'  lost {figures["acknowledged_writes_lost"]}/{figures["writes_acknowledged"]}'
            f'  longest gap {figures["longest_write_gap_s"] * 1000:.0f} ms'
        )
    return text


def ms(seconds: float) -> str:
    """Milliseconds, to a tenth below 10."""
    return f'{seconds * 1000:.1f}' if seconds < 0.01 else f'{seconds * 1000:.0f}'


def markdown(report: dict[str, Any]) -> str:
    """The tables of docs/benchmark.md: one row per event and way, columns per size."""
    sizes = list(report['sizes'])
    events = report['sizes'][sizes[0]]['events']

    def rows(event: str, way: str) -> list[dict[str, Any]]:
        return [report['sizes'][name]['events'][event][way] for name in sizes]

    head = ['event', 'way', 'restarts per unit', 'full/partial']
    head += [f'{name} keys: writable / in sync, ms (after the switch)' for name in sizes]
    # "After the switch": the primary, from the leader's first call into live in
    # its hook; the replicas, from the last such call (in the last replica's hook).
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    for event in events:
        for way in WAYS:
            figures = rows(event, way)
            restarts = sorted({str(f['restarts_per_unit']) for f in figures})
            syncs = ', '.join(f'{f["sync_full"]}/{f["sync_partial_ok"]}' for f in figures)
            cells = [event, way, ', '.join(restarts), syncs]
            cells += [
                f'{ms(f["primary_writable_s"])} ({ms(f["primary_writable_after_switch_s"])}) / '
                f'{ms(f["replicas_in_sync_s"])} ({ms(f["replicas_in_sync_after_their_switch_s"])})'
                for f in figures
            ]
            lines.append('| ' + ' | '.join(cells) + ' |')
    lines += ['', '| the writer | event | way | ' + ' | '.join(sizes) + ' |']
    lines.append('|' + '---|' * (len(sizes) + 3))
    for event in WITH_WRITER:
        for way in WAYS:
            figures = rows(event, way)
            lost = [
                f'{f["acknowledged_writes_lost"]} of {f["writes_acknowledged"]}' for f in figures
            ]
            gaps = [f'{f["longest_write_gap_s"] * 1000:.0f} ms' for f in figures]
            lines.append(
                f'| acknowledged writes lost | {event} | {way} | ' + ' | '.join(lost) + ' |'
            )
            lines.append(
                f'| longest time without an ack | {event} | {way} | ' + ' | '.join(gaps) + ' |'
            )
    title = 'connections dropped (on the primary / replicas), every size'
    lines += ['', f'| {title} | ' + ' | '.join(WAYS) + ' |', '|---|---|---|']
    for event in events:
        cells: list[str] = []
        for way in WAYS:
            dropped = [f['connections_dropped'] for f in rows(event, way)]
            seen = {(d['on_primary'], d['on_replicas']) for d in dropped}
            cells.append(', '.join(f'{p} / {r}' for p, r in sorted(seen)))
        lines.append(f'| {event} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def main() -> int:
    """Run every size, print the tables, write the JSON."""
    parser = argparse.ArgumentParser(description='Failover benchmark: restarts vs live.')
    parser.add_argument('output', nargs='?', default=REPO_ROOT / 'bench/results/failover.json')
    parser.add_argument(
        '--sizes', default=','.join(SIZES), help='comma-separated: ' + ', '.join(SIZES)
    )
    args = parser.parse_args()
    sys.setswitchinterval(SWITCH_INTERVAL)
    report: dict[str, Any] = {
        **machine(),
        'cpus': os.cpu_count(),
        'valkey_server': valkey_server.version(),
        'valkey_py': valkey.__version__,
        'sizes': {},
    }
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix='valkey-failover-') as tmp:
        for name in args.sizes.split(','):
            report['sizes'][name] = run_size(Path(tmp), name, SIZES[name])
    report['wall_seconds'] = round(time.monotonic() - start)
    print(markdown(report))
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + '\n')
    print(f'written: {output} ({report["wall_seconds"]} s)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
