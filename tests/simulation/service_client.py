# Copyright 2026 The valkey-leader-k8s authors
# See LICENSE file for licensing details.

"""A client application of the simulated charm, writing through its primary Service."""

from __future__ import annotations

import contextlib
import functools
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager

import valkey.exceptions

from ..workload import valkey_server
from ..workload.continuous_writes import HOST, Writer, connect
from .driver import PRIMARY_DNS_NAME, Application


class ServiceClient:
    """A client writing continuously through ``<app>-primary``, as an application would.

    The writer keeps its connection until a write fails (as a connection through
    a Service stays on the pod it reached), then reconnects to the pod the
    Service selects by then (followed every half millisecond, as the charm
    applies it). With ``probe``, a second client tries a write on that unit's
    server every half millisecond and notes when the first one is accepted.
    On exit, ``lost`` counts the acknowledged writes the final primary lacks.

    In pods, the writer runs in a client pod of its own and writes to
    ``<app>-primary`` by name: it reaches the pod the name resolves to when it
    (re)connects, as through the Service; the probe runs in the unit's pod.
    """

    def __init__(self, app: Application, *, probe: int | None = None) -> None:
        self.app = app
        self.password = app.password()
        pods = app.pods
        network: Callable[[], AbstractContextManager[None]] = contextlib.nullcontext
        self._probe_network: Callable[[], AbstractContextManager[None]] = contextlib.nullcontext
        if pods is not None:
            writer_pod = pods.pods.get('client') or pods.add_client('client')
            network = functools.partial(pods.inside, writer_pod)
            if probe is not None:
                self._probe_network = functools.partial(pods.inside, app.pod_name(probe))
        self.writer = Writer(
            self._selected_port(),
            self.password,
            key_prefix='switchover:',
            follow_endpoint=False,
            seconds=60,
            host=PRIMARY_DNS_NAME if pods is not None else HOST,
            network=network,
        )
        self._probe_port = app.server(probe).port if probe is not None else None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        if pods is None:
            self._threads.append(threading.Thread(target=self._follow_service, daemon=True))
        if self._probe_port is not None:
            self._threads.append(threading.Thread(target=self._probe, daemon=True))
        self.writable_at: float | None = None
        self.lost = 0

    def _selected_unit(self) -> int:
        selected = self.app.primary_service_selects() or ''
        return int(selected.rsplit('-', 1)[-1])

    def _selected_port(self) -> int:
        return self.app.server(self._selected_unit()).port

    def _follow_service(self) -> None:
        while not self._stop.wait(0.0005):
            self.writer.endpoint = self._selected_port()

    def _probe(self) -> None:
        with self._probe_network():
            self._try_writes()

    def _try_writes(self) -> None:
        assert self._probe_port is not None
        client = connect(self._probe_port, self.password, timeout=2)
        while self.writable_at is None and not self._stop.is_set():
            try:
                client.execute_command('SET', 'switchover-probe', '1')  # pyright: ignore[reportUnknownMemberType]
            except valkey.exceptions.ReadOnlyError:
                time.sleep(0.0005)
                continue
            except valkey.exceptions.ResponseError as e:
                # A new primary takes writes once a replica follows it (min-replicas-to-write).
                if not str(e).startswith('NOREPLICAS'):
                    raise
                time.sleep(0.0005)
                continue
            self.writable_at = time.monotonic()
        client.close()

    def __enter__(self) -> ServiceClient:
        self.writer.start()
        valkey_server.eventually(
            lambda: len(self.writer.acknowledged) > 100 or None, what='writes before'
        )
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        # Some writes on the new primary too, then count what it lost.
        count = len(self.writer.acknowledged)
        valkey_server.eventually(
            lambda: len(self.writer.acknowledged) > count + 100 or None, what='writes after'
        )
        self._stop.set()
        self.writer.finish()
        for thread in self._threads:
            thread.join(timeout=5)
        keys = [f'switchover:{index}' for index in self.writer.acknowledged]
        with self.app.server(self._selected_unit()).client(self.password) as client:
            present = client.command('EXISTS', *keys)
        self.lost = len(keys) - int(str(present))
