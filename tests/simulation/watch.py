# Copyright 2026 The valkey-leader-k8s authors
# See LICENSE file for licensing details.

"""A writer through ``<app>-primary`` and a probe of every server, for the one-primary scenarios.

The probe asks every running server for its role every millisecond, each on
its own connection. A server that says ``master`` accepts writes (a paused
primary answers ``master`` too: it takes writes again once the pause ends).
Two servers count as accepting writes at once only when two consecutive
rounds of the probe both saw them as primaries: a switch in the middle of one
round (the old primary demoted, then the new one promoted) is not two
primaries, and is not counted.
"""

from __future__ import annotations

import threading
import time
import typing
from collections.abc import Callable

import valkey
import valkey.exceptions

from ..workload import valkey_server
from ..workload.continuous_writes import Writer, connect
from .driver import Application

PROBE_INTERVAL = 0.001


class Watch:
    """Writes through the Service and probes every server's role, until the ``with`` ends."""

    def __init__(self, app: Application) -> None:
        self.app = app
        self.password = app.password()
        self.writer = Writer(
            self._selected_port() or 0,
            self.password,
            key_prefix='watched:',
            follow_endpoint=False,
            seconds=120,
        )
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._follow_service, daemon=True),
            threading.Thread(target=self._probe, daemon=True),
        ]
        self.two_primaries: list[tuple[str, ...]] = []
        """The servers seen as primaries in two consecutive rounds, whenever two or more were."""
        self.zero_primaries_seconds = 0.0
        """The longest stretch of rounds in which no server was a primary."""
        self.rounds = 0
        self.lost: list[int] = []

    def _selected_port(self) -> int | None:
        selected = self.app.primary_service_selects()
        if selected is None:
            return None
        return self.app.server(int(selected.rsplit('-', 1)[-1])).port

    def _follow_service(self) -> None:
        while not self._stop.wait(0.0005):
            port = self._selected_port()
            if port is not None:
                self.writer.endpoint = port

    def _probe(self) -> None:
        clients: dict[int, valkey.Valkey] = {}
        previous: frozenset[str] = frozenset()
        zero_since: float | None = None
        while not self._stop.wait(PROBE_INTERVAL):
            primaries: set[str] = set()
            for unit in list(self.app.units.values()):
                port = unit.server.port
                if not unit.server.running:
                    clients.pop(port, None)
                    continue
                try:
                    client = clients.get(port) or connect(port, self.password, timeout=0.5)
                    clients[port] = client
                    role = typing.cast('object', client.execute_command('ROLE'))  # pyright: ignore[reportUnknownMemberType]
                except valkey.exceptions.ValkeyError:
                    clients.pop(port, None)
                    continue
                if isinstance(role, list) and typing.cast('list[object]', role)[:1] == ['master']:
                    primaries.add(unit.name)
            now = time.monotonic()
            both = previous & primaries
            if len(both) > 1:
                self.two_primaries.append(tuple(sorted(both)))
            if primaries:
                zero_since = None
            elif zero_since is None:
                zero_since = now
            else:
                self.zero_primaries_seconds = max(self.zero_primaries_seconds, now - zero_since)
            previous = frozenset(primaries)
            self.rounds += 1
        for client in clients.values():
            client.close()

    def __enter__(self) -> Watch:
        self.writer.start()
        valkey_server.eventually(
            lambda: len(self.writer.acknowledged) > 100 or None, what='writes before'
        )
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self.writer.finish()
        for thread in self._threads:
            thread.join(timeout=5)

    def missing_on(self, port: int) -> list[int]:
        """The acknowledged writes the server on ``port`` does not hold."""
        keys = [f'watched:{index}' for index in self.writer.acknowledged]
        with valkey_server.Client(port, self.password) as client:
            reply: object = client.command('MGET', *keys) if keys else None
        values = typing.cast('list[object]', reply or [])
        return [i for i, v in zip(self.writer.acknowledged, values, strict=True) if v is None]


def writable_servers(app: Application) -> list[str]:
    """The units whose servers accept writes now (``ROLE`` says master)."""
    found: list[str] = []
    for unit in app.live_units():
        if not unit.server.running:
            continue
        with valkey_server.Client(unit.server.port, app.password()) as client:
            role = client.command('ROLE')
        if isinstance(role, list) and role and role[0] == 'master':
            found.append(unit.name)
    return found


def assert_one_primary_selected(app: Application, watch: Watch) -> str:
    """Once hooks settled: exactly one server accepts writes, the one ``<app>-primary`` selects;
    it holds every acknowledged write; no two servers ever accepted writes at once."""
    writable = writable_servers(app)
    assert len(writable) == 1, f'servers accepting writes: {writable}'
    (primary,) = writable
    selects = app.primary_service_selects()
    assert selects == primary.replace('/', '-'), f'<app>-primary selects {selects}, not {primary}'
    port = app.server(int(primary.rsplit('/', 1)[-1])).port
    assert watch.two_primaries == [], f'two servers accepted writes: {watch.two_primaries[:3]}'
    assert watch.rounds > 10, 'the probe ran'
    assert len(watch.writer.acknowledged) > 100, 'the writer wrote'
    missing = watch.missing_on(port)
    assert missing == [], f'{len(missing)} acknowledged writes lost'
    return primary


def settle_until(app: Application, done: Callable[[], bool], *, timeout: float = 30) -> None:
    """Settle, and settle again (Juju's ``update-status``) until ``done`` holds."""
    deadline = time.monotonic() + timeout
    while True:
        app.settle()
        if done() or time.monotonic() > deadline:
            return
        time.sleep(0.2)
