#!/usr/bin/env python3
# Copyright 2026 The valkey-leader-k8s authors
# See LICENSE file for licensing details.

"""Switchovers under a saturating pipelined writer: lost writes, time to writable, 0/2 primaries.

Run by `tox -e bench-failover` after ``bench.failover`` (``python -m
bench.one_primary``). A benchmark, not a test: it prints a table and writes
JSON (default ``bench/results/one-primary.json``).

Three units of the real charm run in the simulation of
``tests/simulation/driver.py``. Beside the light writer of
``tests/workload/continuous_writes.py`` (one ``SET`` per round trip), a
saturating writer runs in its own process: pipelines of ``PIPELINE`` ``SET``
commands, back to back, through the port of the pod the fake
``<app>-primary`` Service selects (followed as the charm re-points it). A
write counts as acknowledged only when the server answered ``OK``. A probe
asks every server for its ``ROLE`` every millisecond.

Each run moves the lease from the unit whose server is primary to the next
one while both pods live (Juju's lease moved: the old primary still takes
writes), and the hooks run until they settle. Per run:

* lost: writes acknowledged by any server and missing on the final primary;
* writable: from the new leader's call into ``handover.hand_over`` until its
  server accepted a probe write (``SET`` answered ``OK``);
* zero / two primaries: the longest stretch of probe rounds in which no
  server, or two servers in two consecutive rounds, answered ``master``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import threading
import time
import typing
from multiprocessing.synchronize import Event as EventType
from pathlib import Path
from typing import Any, Final

if typing.TYPE_CHECKING:
    from multiprocessing.sharedctypes import Synchronized

REPO_ROOT: Final = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO_ROOT / 'src'), str(REPO_ROOT)]

import valkey  # noqa: E402
import valkey.exceptions  # noqa: E402

from bench.run import machine  # noqa: E402
from tests.simulation.driver import Application  # noqa: E402
from tests.workload import valkey_server  # noqa: E402
from tests.workload.charm_unit import unit_name  # noqa: E402
from tests.workload.continuous_writes import Writer, connect  # noqa: E402

PIPELINE: Final = 200
RUNS: Final = 10
KEYS: Final = 100_000
PROBE_INTERVAL: Final = 0.001


def saturate(port: Synchronized[int], password: str, stop: EventType, out: Any) -> None:
    """The saturating writer's process: pipelined SETs until ``stop``; sends the acked ids."""
    acked: list[tuple[int, int]] = []  # runs of consecutive acknowledged ids
    client: valkey.Valkey | None = None
    current, index = 0, 0
    while not stop.is_set():
        try:
            if client is None or current != port.value:
                current = port.value
                client = connect(current, password, timeout=2)
            pipe = client.pipeline(transaction=False)  # pyright: ignore[reportUnknownMemberType]
            for i in range(index, index + PIPELINE):
                pipe.execute_command('SET', f'sat:{i}', i)  # pyright: ignore[reportUnknownMemberType]
            replies = typing.cast('list[object]', pipe.execute(raise_on_error=False))  # pyright: ignore[reportUnknownMemberType]
        except valkey.exceptions.ValkeyError:
            client = None
            time.sleep(0.001)
            continue
        for offset, reply in enumerate(replies):
            if reply is True or reply == 'OK':
                i = index + offset
                if acked and acked[-1][1] == i:
                    acked[-1] = (acked[-1][0], i + 1)
                else:
                    acked.append((i, i + 1))
        index += PIPELINE
    out.send(acked)


class Probe(threading.Thread):
    """Every server's ROLE each millisecond; a probe write on one target."""

    def __init__(self, app: Application, password: str) -> None:
        super().__init__(daemon=True)
        self.app, self.password = app, password
        self.stop = threading.Event()
        self.target: int | None = None
        self.writable_at: float | None = None
        self.zero = 0.0
        self.two = 0.0

    def run(self) -> None:
        """Probe until told to stop."""
        clients: dict[int, valkey.Valkey] = {}
        previous: set[str] = set()
        zero_since: float | None = None
        two_since: float | None = None
        while not self.stop.wait(PROBE_INTERVAL):
            primaries: set[str] = set()
            for unit in list(self.app.units.values()):
                port = unit.server.port
                try:
                    client = clients.get(port) or connect(port, self.password, timeout=0.5)
                    clients[port] = client
                    role = typing.cast('list[object]', client.execute_command('ROLE'))  # pyright: ignore[reportUnknownMemberType]
                    if role[:1] == ['master']:
                        primaries.add(unit.name)
                    if self.target == unit.unit_id and self.writable_at is None:
                        client.execute_command('SET', 'probe', '1')  # pyright: ignore[reportUnknownMemberType]
                        self.writable_at = time.monotonic()
                except valkey.exceptions.ValkeyError:
                    clients.pop(port, None)
            now = time.monotonic()
            zero_since = (zero_since or now) if not primaries else None
            if zero_since is not None:
                self.zero = max(self.zero, now - zero_since)
            both = len(previous & primaries) > 1
            two_since = (two_since or now) if both else None
            if two_since is not None:
                self.two = max(self.two, now - two_since + PROBE_INTERVAL)
            previous = primaries


def selected_port(app: Application) -> int:
    """The port of the pod ``<app>-primary`` selects now."""
    selected = app.primary_service_selects() or ''
    return app.server(int(selected.rsplit('-', 1)[-1])).port


def missing(port: int, password: str, ranges: list[tuple[int, int]], keys: list[str]) -> int:
    """How many of the acknowledged writes the server on ``port`` lacks."""
    lost = 0
    wanted = [f'sat:{i}' for start, end in ranges for i in range(start, end)] + keys
    with valkey_server.Client(port, password) as client:
        for at in range(0, len(wanted), 10_000):
            chunk = wanted[at : at + 10_000]
            lost += len(chunk) - int(str(client.command('EXISTS', *chunk)))
    return lost


def one_run(app: Application, to_unit: int) -> dict[str, Any]:
    """Move the lease to ``to_unit`` under both writers; measure what the clients saw."""
    password = app.password()
    port: Synchronized[int] = multiprocessing.Value('i', selected_port(app))
    stop = multiprocessing.Event()
    receive, send = multiprocessing.Pipe(duplex=False)
    writer = multiprocessing.Process(target=saturate, args=(port, password, stop, send))
    light = Writer(port.value, password, key_prefix='light:', follow_endpoint=False, seconds=60)
    probe = Probe(app, password)
    writer.start()
    light.start()
    time.sleep(0.5)  # the writers at full speed
    probe.target = to_unit
    probe.start()
    follow = threading.Event()

    def follow_service() -> None:
        while not follow.wait(0.0005):
            port.value = light.endpoint = selected_port(app)

    follower = threading.Thread(target=follow_service, daemon=True)
    follower.start()
    hooks_before = len(app.hooks)
    app.elect(to_unit)
    app.settle()
    time.sleep(0.3)  # writes on the new primary too
    follow.set()
    stop.set()
    acked: list[tuple[int, int]] = receive.recv()
    writer.join(10)
    light.finish()
    probe.stop.set()
    probe.join(5)
    elected = [h for h in app.hooks[hooks_before:] if h.handover is not None]
    called = elected[0].handover.started if elected and elected[0].handover else None
    light_keys = [f'light:{i}' for i in light.acknowledged]
    final = selected_port(app)
    return {
        'handover': elected[0].handover.status if elected and elected[0].handover else None,
        'acknowledged': sum(end - start for start, end in acked) + len(light.acknowledged),
        'lost': missing(final, password, acked, light_keys),
        'writable_ms': None
        if called is None or probe.writable_at is None
        else round((probe.writable_at - called) * 1000, 1),
        'zero_primaries_ms': round(probe.zero * 1000, 1),
        'two_primaries_ms': round(probe.two * 1000, 1),
        'leader_is_primary': selected_port(app) == app.server(to_unit).port,
    }


def main() -> int:
    """Deploy, load the dataset, run the switchovers, print and write the results."""
    parser = argparse.ArgumentParser(description='Switchovers under a saturating writer.')
    parser.add_argument('output', nargs='?', default=REPO_ROOT / 'bench/results/one-primary.json')
    parser.add_argument('--runs', type=int, default=RUNS)
    args = parser.parse_args()
    report: dict[str, Any] = {
        **machine(),
        'cpus': os.cpu_count(),
        'load_before': os.getloadavg(),
        'valkey_server': valkey_server.version(),
        'runs': [],
    }
    with (
        tempfile.TemporaryDirectory(prefix='valkey-one-primary-') as tmp,
        Application(Path(tmp)) as app,
    ):
        app.deploy(leader=0)
        app.settle()
        # With replicas, a primary takes writes only once one follows it (min-replicas-to-write).
        _wait_in_sync(app)
        with valkey_server.Client(app.server(0).port, app.password()) as client:
            for at in range(0, KEYS, 1000):
                pairs = [x for i in range(at, at + 1000) for x in (f'data:{i}', 'v' * 90)]
                client.command('MSET', *pairs)
        leader = 0
        for run in range(args.runs):
            _wait_in_sync(app)
            to_unit = (leader + 1) % 3
            result = one_run(app, to_unit)
            print(f'run {run + 1}: to {unit_name(to_unit)} {result}', flush=True)
            report['runs'].append(result)
            leader = to_unit
    report['load_after'] = os.getloadavg()
    runs = report['runs']
    writable = [r['writable_ms'] for r in runs if r['writable_ms'] is not None]
    report['summary'] = {
        'lost_total': sum(r['lost'] for r in runs),
        'acknowledged_total': sum(r['acknowledged'] for r in runs),
        'writable_ms_median': statistics.median(writable) if writable else None,
        'writable_ms_max': max(writable) if writable else None,
        'zero_primaries_ms_max': max(r['zero_primaries_ms'] for r in runs),
        'two_primaries_ms_max': max(r['two_primaries_ms'] for r in runs),
        'handovers': [r['handover'] for r in runs],
    }
    print(json.dumps(report['summary'], indent=2))
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + '\n')
    print(f'written: {output}')
    return 0


def _wait_in_sync(app: Application) -> None:
    valkey_server.eventually(
        lambda: all(v.link in (None, 'up') for v in app.observe()) or None,
        timeout=60,
        what='replicas in sync',
    )


if __name__ == '__main__':
    sys.exit(main())
