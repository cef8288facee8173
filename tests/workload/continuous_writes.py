# Copyright 2026 The valkey-leader-k8s authors
# See LICENSE file for licensing details.

"""A client that writes without pause through "the primary endpoint", for switchovers.

Shared by the live tests (tests/workload/test_live.py) and the failover
benchmark (bench/failover.py): both count the writes a server acknowledged,
the failures, and the longest time without an acknowledgement, then check
which acknowledged writes the new primary has. Loopback, or a pod's network
namespace (``tests/simulation/pods.py``) with ``host`` a name the cluster resolves.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractContextManager

import valkey
import valkey.exceptions
from valkey.backoff import NoBackoff
from valkey.retry import Retry

HOST = '127.0.0.1'


def connect(port: int, password: str, timeout: float, host: str = HOST) -> valkey.Valkey:
    """A client with one attempt per command: a failure is counted, not retried behind us."""
    return valkey.Valkey(
        host=host,
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
        host: str = HOST,
        network: Callable[[], AbstractContextManager[None]] = contextlib.nullcontext,
    ) -> None:
        super().__init__(daemon=True)
        self.host = host
        self.network = network
        """Entered by the writing thread first: the network namespace it writes from."""
        self.acknowledged_at: list[float] = []
        """``time.monotonic()`` of each acknowledgement, in order."""
        self.errors: Counter[str] = Counter()
        """Failed writes by the error's first word (``NOREPLICAS``) or class name."""
        self.first_error_at: dict[str, float] = {}
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
        with self.network():
            self._write()

    def _write(self) -> None:
        client: valkey.Valkey | None = None
        port, index, last_ok = 0, 0, time.monotonic()
        deadline = time.monotonic() + self.seconds
        while not self._done.is_set() and time.monotonic() < deadline:
            try:
                if client is None or (self.follow_endpoint and port != self.endpoint):
                    port = self.endpoint
                    client = connect(port, self.password, timeout=2, host=self.host)
                client.execute_command('SET', f'{self.key_prefix}{index}', index)  # pyright: ignore[reportUnknownMemberType]
            except valkey.exceptions.ValkeyError as e:
                self.failures += 1
                words = str(e).split()
                kind = words[0] if isinstance(e, valkey.exceptions.ResponseError) and words else ''
                kind = kind or type(e).__name__
                self.errors[kind] += 1
                self.first_error_at.setdefault(kind, time.monotonic())
                client = None
                time.sleep(0.001)
                continue
            now = time.monotonic()
            self.longest_gap = max(self.longest_gap, now - last_ok)
            last_ok = now
            self.acknowledged.append(index)
            self.acknowledged_at.append(now)
            index += 1

    def finish(self, timeout: float = 30) -> None:
        """Stop writing."""
        self._done.set()
        self.join(timeout=timeout)
