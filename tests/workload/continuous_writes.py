# Copyright 2026 The valkey-leader-k8s authors
# See LICENSE file for licensing details.

"""A client that writes without pause through "the primary endpoint", for switchovers.

Shared by the live tests (tests/workload/test_live.py) and the failover
benchmark (bench/failover.py): both count the writes a server acknowledged,
the failures, and the longest time without an acknowledgement, then check
which acknowledged writes the new primary has. Loopback only.
"""

from __future__ import annotations

import threading
import time

import valkey
import valkey.exceptions
from valkey.backoff import NoBackoff
from valkey.retry import Retry

HOST = '127.0.0.1'


def connect(port: int, password: str, timeout: float) -> valkey.Valkey:
    """A client with one attempt per command: a failure is counted, not retried behind us."""
    return valkey.Valkey(
        host=HOST,
        port=port,
        password=password,
        decode_responses=True,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
    )


class Writer(threading.Thread):
    """One client writing ``<key_prefix><n>`` continuously to ``endpoint``.

    ``endpoint`` is the port of whichever server the ``<app>-primary`` Service
    selects; the caller re-points it when the new leader would. With
    ``follow_endpoint`` the writer reconnects as soon as it changes; without,
    it keeps its connection until a write fails, as an open connection through
    a Service stays on the pod it reached. A write counts as acknowledged only
    when the server answered OK.
    """

    def __init__(
        self,
        port: int,
        password: str,
        *,
        key_prefix: str,
        follow_endpoint: bool,
        seconds: float,
    ) -> None:
        super().__init__(daemon=True)
        self.endpoint = port
        self.password = password
        self.key_prefix = key_prefix
        self.follow_endpoint = follow_endpoint
        self.seconds = seconds
        self.acknowledged: list[int] = []
        self.failures = 0
        self.longest_gap = 0.0
        self._done = threading.Event()

    def run(self) -> None:
        """Write until told to stop (or ``seconds`` have passed), reconnecting after a failure."""
        client: valkey.Valkey | None = None
        port, index, last_ok = 0, 0, time.monotonic()
        deadline = time.monotonic() + self.seconds
        while not self._done.is_set() and time.monotonic() < deadline:
            try:
                if client is None or (self.follow_endpoint and port != self.endpoint):
                    port = self.endpoint
                    client = connect(port, self.password, timeout=2)
                client.execute_command('SET', f'{self.key_prefix}{index}', index)  # pyright: ignore[reportUnknownMemberType]
            except valkey.exceptions.ValkeyError:
                self.failures += 1
                client = None
                time.sleep(0.001)
                continue
            now = time.monotonic()
            self.longest_gap = max(self.longest_gap, now - last_ok)
            last_ok = now
            self.acknowledged.append(index)
            index += 1

    def finish(self, timeout: float = 30) -> None:
        """Stop writing."""
        self._done.set()
        self.join(timeout=timeout)
