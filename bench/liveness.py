#!/usr/bin/env python3
# Copyright 2026 The valkey-leader-k8s authors
# See LICENSE file for licensing details.

"""What it costs the writes when the leader's server goes away while its unit keeps the lease.

`tox -e bench-liveness` (``python -m bench.liveness``). A benchmark, not a test:
it prints a table and writes JSON (default ``bench/results/liveness.json``).

Three units of the real charm in the simulation of ``tests/simulation/driver.py``
(loopback mode: ops.testing for the charm, one real ``valkey-server`` per unit
started from the file the charm pushed), a dataset of each size written to the
primary and snapshotted (``BGSAVE``), and one client writing all along through
``<app>-primary`` (the port of the pod the fake Service selects). Scenarios:

* ``crash``: the leader's server is killed (``SIGKILL``) while its unit keeps the lease;
* ``pod restart``: the leader's pod is deleted, and is back ``POD_AWAY`` seconds later;
* ``refresh``: pods 2, 1, 0 in turn, each away ``POD_AWAY`` seconds (unit 0 leads);
* ``scale-down``: unit 2 leads and is removed; Juju elects unit 0 ``LEASE_WAIT``
  seconds later (Juju: when the lease runs out, 30 to 60 s).

Each two ways, from one deployment per way and size:

* ``liveness``: the charm as it is;
* ``before``: the charm as it was before it handled its server going away:
  Pebble restarted a crashed server at once (``on-failure: restart``, after
  its 0.5 s ``backoff-delay``) from its file and last snapshot, and ``stop``
  and a departing leader handed nothing over.

Per scenario: the longest time without an acknowledged write, and the sum of
every gap over ``GAP`` (the whole refresh), from the last write before the
event to the first after it (the measurement waits for writes to flow again);
acknowledged writes missing on the final primary; full resyncs served
(``sync_full``); the fewest keys any server held after the event began (a
resync from a server with less data shrinks a replica). Pods away and the
lease are modelled as fixed waits: real pods take longer to come back, which
lengthens only the ``before`` figures.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import sys
import tempfile
import threading
import time
import typing
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any, Final
from unittest import mock

REPO_ROOT: Final = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO_ROOT / 'src'), str(REPO_ROOT)]

import charm  # noqa: E402
from bench.run import machine  # noqa: E402
from tests.simulation.driver import Application  # noqa: E402
from tests.workload import valkey_server  # noqa: E402
from tests.workload.continuous_writes import Writer  # noqa: E402

SIZES: Final = {'10k': 10_000, '100k': 100_000, '300k': 300_000}
VALUE: Final = 'v' * 90
BATCH: Final = 1000
POD_AWAY: Final = 2.0
LEASE_WAIT: Final = 3.0
GAP: Final = 0.01
PEBBLE_BACKOFF: Final = 0.5
SETTLE_TIMEOUT: Final = 60.0
WAYS: Final = ('before', 'liveness')
SCENARIOS: Final = ('crash', 'pod restart', 'refresh', 'scale-down')


@contextlib.contextmanager
def way_of_the_charm(way: str) -> Generator[None]:
    """``before``: no handover in ``stop`` or when the leader's unit leaves."""
    if way == 'liveness':
        yield
        return
    with mock.patch.object(charm.ValkeyLeaderCharm, '_step_down', return_value=None):
        yield


def info(c: valkey_server.Client, section: str) -> dict[str, str]:
    """``INFO <section>`` as text fields."""
    reply = c.command('INFO', section)
    fields = typing.cast('dict[object, object]', reply) if isinstance(reply, dict) else {}
    return {str(k): str(v) for k, v in fields.items()}


class Sampler(threading.Thread):
    """Follows ``<app>-primary`` for the writer, and the fewest keys any running server holds."""

    def __init__(self, app: Application, writer: Writer) -> None:
        super().__init__(daemon=True)
        self.app, self.writer = app, writer
        self.fewest_keys: int | None = None
        self._done = threading.Event()

    def run(self) -> None:
        """Sample until stopped."""
        while not self._done.wait(0.002):
            selected = self.app.primary_service_selects()
            if selected is not None:
                self.writer.endpoint = self.app.server(int(selected.rsplit('-', 1)[1])).port
            for unit in list(self.app.units.values()):
                if not (unit.alive and unit.server.running):
                    continue
                with contextlib.suppress(Exception):
                    with valkey_server.Client(unit.server.port, self.app.password()) as c:
                        if c.replication().get('master_sync_in_progress') == '1':
                            continue  # loading a full sync: not yet a dataset
                        keys = c.dbsize()
                    self.fewest_keys = (
                        keys if self.fewest_keys is None else min(keys, self.fewest_keys)
                    )

    def stop(self) -> None:
        """Stop sampling."""
        self._done.set()
        self.join(timeout=5)


def full_syncs(app: Application) -> dict[str, tuple[str, int]]:
    """Each running server's ``run_id`` and ``sync_full``."""
    found: dict[str, tuple[str, int]] = {}
    for unit in app.units.values():
        if unit.alive and unit.server.running:
            with valkey_server.Client(unit.server.port, app.password()) as c:
                run_id = info(c, 'server')['run_id']
                found[unit.name] = (run_id, int(info(c, 'stats')['sync_full']))
    return found


def syncs_between(before: dict[str, tuple[str, int]], after: dict[str, tuple[str, int]]) -> int:
    """Full resyncs served between two readings (a restarted server counts from zero)."""
    total = 0
    for unit, (run_id, count) in after.items():
        earlier = before.get(unit)
        total += count - earlier[1] if earlier is not None and earlier[0] == run_id else count
    return total


def leader_primary(app: Application) -> bool:
    """Whether the leader's server accepts writes."""
    leader = app.leader()
    if leader is None or not leader.server.running:
        return False
    with valkey_server.Client(leader.server.port, app.password()) as c:
        return c.replication().get('role') == 'master'


def settle_until(app: Application, done: Callable[[], bool]) -> None:
    """Settle, and again (update-status), until ``done`` holds or time runs out."""
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while True:
        app.settle()
        if done() or time.monotonic() > deadline:
            return
        time.sleep(0.1)


def crash(app: Application, way: str) -> None:
    """The leader's server is killed; its unit keeps the lease."""
    if way == 'liveness':
        app.crash(0)
    else:
        # Pebble's on-failure: restart, from the same file (primary) and the last snapshot.
        app.server(0).kill()
        time.sleep(PEBBLE_BACKOFF)
        app.server(0).restart()
    settle_until(app, lambda: leader_primary(app))


def pod_restart(app: Application, unit_id: int) -> None:
    """The pod is deleted; it is back ``POD_AWAY`` seconds later."""
    app.delete_pod(unit_id)
    deadline = time.monotonic() + POD_AWAY
    while time.monotonic() < deadline:  # the other units' hooks run meanwhile
        app.settle()
        time.sleep(0.05)
    app.recreate_pod(unit_id)
    settle_until(app, lambda: leader_primary(app))


def scale_down(app: Application) -> None:
    """Unit 2 leads and leaves; Juju elects unit 0 ``LEASE_WAIT`` seconds later."""
    app.elect(2)
    settle_until(app, lambda: leader_primary(app))
    app.scale_down()
    deadline = time.monotonic() + LEASE_WAIT
    while time.monotonic() < deadline:
        app.settle()
        time.sleep(0.05)
    app.elect(0)
    settle_until(app, lambda: leader_primary(app))


def writes_flow(writer: Writer, *, since: float) -> None:
    """Wait until the writer has written for a while after ``since``, without a gap."""
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while time.monotonic() < deadline:
        times = writer.acknowledged_at[-100:]
        if len(times) == 100 and times[0] > since and times[-1] - times[0] < 100 * GAP:
            return
        time.sleep(0.01)
    raise TimeoutError('the writer wrote nothing')


def measure(app: Application, name: str, act: Callable[[], None]) -> dict[str, Any]:
    """Run ``act`` with a writer through ``<app>-primary``; what it cost the writes."""
    password = app.password()
    writer = Writer(
        app.server(0).port,
        password,
        key_prefix=f'{name}:',
        follow_endpoint=True,
        seconds=300,
    )
    sampler = Sampler(app, writer)
    writer.start()
    sampler.start()
    writes_flow(writer, since=time.monotonic())
    time.sleep(0.5)  # half a second of writes that only the servers hold, not the snapshot
    syncs = full_syncs(app)
    started = time.monotonic()
    act()
    elapsed = time.monotonic() - started
    writes_flow(writer, since=time.monotonic())  # the outage ends with the first write after
    time.sleep(0.3)
    writer.finish()
    sampler.stop()
    primary = next(u for u in app.units.values() if u.alive and u.leader)
    missing = 0
    acknowledged = writer.acknowledged
    with valkey_server.Client(primary.server.port, password) as c:
        for at in range(0, len(acknowledged), 5000):
            chunk = acknowledged[at : at + 5000]
            values = c.command('MGET', *(f'{name}:{i}' for i in chunk))
            found = typing.cast('list[object]', values) if isinstance(values, list) else []
            missing += sum(1 for v in found if v is None)
    times = writer.acknowledged_at
    gaps = [b - a for a, b in itertools.pairwise(times) if b - a > GAP]
    return {
        'longest_gap_s': round(max(gaps, default=0.0), 4),
        'gaps_summed_s': round(sum(gaps), 4),
        'acknowledged': len(acknowledged),
        'lost': missing,
        'full_syncs': syncs_between(syncs, full_syncs(app)),
        'fewest_keys': sampler.fewest_keys,
        'seconds': round(elapsed, 2),
        'errors': dict(writer.errors),
    }


def load(app: Application, keys: int) -> None:
    """Write ``keys`` keys to the primary, then snapshot them."""
    for replica in (1, 2):  # with replicas, the primary takes writes once one is in sync
        valkey_server.wait_in_sync(app.server(replica), app.password())
    with valkey_server.Client(app.server(0).port, app.password()) as c:
        for start in range(0, keys, BATCH):
            pairs: list[str] = []
            for i in range(start, min(start + BATCH, keys)):
                pairs += [f'data:{i}', VALUE]
            c.command('MSET', *pairs)
        c.command('BGSAVE')
        deadline = time.monotonic() + 120
        while info(c, 'persistence').get('rdb_bgsave_in_progress') != '0':
            if time.monotonic() > deadline:
                raise TimeoutError('BGSAVE did not finish')
            time.sleep(0.05)
    settle_until(app, lambda: leader_primary(app))


def run(root: Path, size: str, keys: int, way: str) -> dict[str, Any]:
    """Every scenario on one deployment of one way and size."""
    results: dict[str, Any] = {}
    with way_of_the_charm(way), Application(root) as app:
        app.deploy(leader=0)
        app.settle()
        load(app, keys)
        time.sleep(1)  # the replicas catch up with the load
        results['crash'] = measure(app, 'crash', lambda: crash(app, way))
        results['pod restart'] = measure(app, 'pod', lambda: pod_restart(app, 0))

        def refresh() -> None:
            for unit_id in (2, 1, 0):
                pod_restart(app, unit_id)

        results['refresh'] = measure(app, 'refresh', refresh)
        results['scale-down'] = measure(app, 'scale', lambda: scale_down(app))
    for scenario, figures in results.items():
        print(f'{size:>5} {way:>9} {scenario:<12} {figures}', flush=True)
    return results


def markdown(report: dict[str, Any]) -> str:
    """The report as a Markdown table."""
    lines = [
        '| size | scenario | way | longest gap | gaps summed | lost | full syncs | fewest keys |',
        '|---|---|---|---|---|---|---|---|',
    ]
    for size, ways in report['sizes'].items():
        for scenario in SCENARIOS:
            for way in WAYS:
                f = ways[way][scenario]
                lines.append(
                    f'| {size} | {scenario} | {way} | {f["longest_gap_s"] * 1000:.0f} ms | '
                    f'{f["gaps_summed_s"] * 1000:.0f} ms | {f["lost"]} of {f["acknowledged"]} | '
                    f'{f["full_syncs"]} | {f["fewest_keys"]} |'
                )
    return '\n'.join(lines)


def main() -> int:
    """Run every size and way; print and save the figures."""
    parser = argparse.ArgumentParser(description='Liveness benchmark')
    parser.add_argument('--sizes', nargs='*', default=list(SIZES), choices=list(SIZES))
    parser.add_argument('--out', type=Path, default=REPO_ROOT / 'bench/results/liveness.json')
    args = parser.parse_args()
    report: dict[str, Any] = {'machine': machine(), 'load_before': os.getloadavg(), 'sizes': {}}
    started = time.monotonic()
    for size in args.sizes:
        report['sizes'][size] = {}
        for way in WAYS:
            with tempfile.TemporaryDirectory() as root:
                report['sizes'][size][way] = run(Path(root), size, SIZES[size], way)
    report['seconds'] = round(time.monotonic() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + '\n')
    print(markdown(report))
    print(
        f'{report["seconds"]} s in all; '
        f'load average before (1, 5, 15 min): {report["load_before"]}'
    )
    print(report['machine'])
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
