#!/usr/bin/env python3
# Copyright 2026 The valkey-leader-k8s authors
# See LICENSE file for licensing details.

"""What a leadership change, a rotation or a config change costs the workload.

`tox -e bench-failover` (``python -m bench.failover``). A benchmark, not a test:
it prints a table and writes JSON (default ``bench/results/failover.json``).

Three real ``valkey-server`` processes on the loopback address, each started
from the file ``workload.render_config`` writes for its unit (with the
network and directory overrides of ``tests/workload/valkey_server.py``),
hold a dataset of each size, written with pipelined ``MSET``. Every event is
done two ways, one after the other, from the same steady state:

* ``restart``: what the charm does today: rewrite every unit's file and
  restart each server whose file changed (all units at once, as the event
  reaches them at once; a leadership change: the new leader first, then the
  others);
* ``live``: rewrite the files, then ``live.apply_live`` on each unit, and for
  a leadership change with the old primary alive, ``live.hand_over`` first.

Per event and way: restarts per unit; time from the start (the new leader's
hook) until the primary accepts a write; until every replica is in sync
(``master_link_status:up`` and its offset equal to the primary's); full and
partial resyncs served (``sync_full``, ``sync_partial_ok``, summed over the
servers, counted from the event's start); idle client connections dropped
(two per server, opened before the event). For the switchover under writes,
one client writes continuously through "the primary endpoint" (the port the
``<app>-primary`` Service would select, re-pointed when the new leader's hook
would): writes acknowledged and later missing, and the longest time without
an acknowledged write.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import json
import platform
import sys
import tempfile
import threading
import time
import typing
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any, Final

REPO_ROOT: Final = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO_ROOT / 'src'), str(REPO_ROOT)]

import valkey  # noqa: E402
import valkey.exceptions  # noqa: E402

import live  # noqa: E402
import workload  # noqa: E402
from tests.workload import valkey_server  # noqa: E402
from tests.workload.continuous_writes import Writer, connect  # noqa: E402
from tests.workload.valkey_server import HOST, ValkeyServer, free_port  # noqa: E402

SIZES: Final = {'100k': 100_000, '1M': 1_000_000, '3.3M': 3_300_000}
"""Dataset name -> keys (90-byte values): about 24 MB, 150 MB and 430 MB of used_memory."""
VALUE: Final = b'v' * 90
BATCH: Final = 1000
TEMPLATES: Final = REPO_ROOT / 'templates'
APP: Final = 'valkey-leader-k8s'
IDLE_CLIENTS: Final = 2
TIMEOUT: Final = 120.0


def dns_name(unit: int) -> str:
    """A unit's stable DNS name, as the charm writes it."""
    return f'{APP}-{unit}.{APP}-endpoints.bench.svc.cluster.local'


def call(port: int, password: str, *args: str | int, timeout: float = 10.0) -> Any:
    """One command on a new connection."""
    with connect(port, password, timeout) as client:
        return typing.cast('Any', client.execute_command(*args))  # pyright: ignore[reportUnknownMemberType]


@dataclasses.dataclass
class Options:
    """The options in force, and the password."""

    password: str = 'bench-password-0'  # noqa: S105 - a throwaway server's
    log_level: str = 'notice'
    maxmemory: str = ''
    maxmemory_policy: str = 'noeviction'


class Deployment:
    """Three units: files, servers, who leads, and the options in force."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.ports = [free_port() for _ in range(3)]
        self.primary = 0
        self.options = Options()
        self.servers = [
            ValkeyServer(
                self.config_file(unit),
                data_dir=root / f'data-{unit}',
                log_file=root / f'valkey-{unit}.log',
                port=self.ports[unit],
            )
            for unit in range(3)
        ]
        self.restarts = [0, 0, 0]

    def config_file(self, unit: int) -> Path:
        """Where the unit's rendered file is."""
        return self.root / f'valkey-{unit}.conf'

    def resolve(self, host: str) -> live.Address:
        """A unit's DNS name -> its server on the loopback address."""
        return (HOST, self.ports[[dns_name(u) for u in range(3)].index(host)])

    def settings(self, unit: int) -> workload.ValkeySettings:
        """What the unit's file says now."""
        return workload.ValkeySettings(
            password=self.options.password,
            primary_address=None if unit == self.primary else dns_name(self.primary),
            log_level=self.options.log_level,
            maxmemory=self.options.maxmemory,
            maxmemory_policy=self.options.maxmemory_policy,
            announce_host=dns_name(unit),
        )

    def write_file(self, unit: int) -> tuple[bool, str | None]:
        """Render the unit's file; whether it changed, and the password it replaced."""
        path = self.config_file(unit)
        old = path.read_text() if path.exists() else ''
        new = workload.render_config(self.settings(unit), TEMPLATES)
        path.write_text(new)
        return new != old, workload.requirepass_from_config(old)

    def replicaof(self, unit: int) -> int | None:
        """The port the unit replicates from, or ``None`` for the primary."""
        return None if unit == self.primary else self.ports[self.primary]

    def start(self) -> None:
        """Write every file and start every server."""
        for unit in range(3):
            self.write_file(unit)
            self.servers[unit].replicaof = self.replicaof(unit)
            self.servers[unit].start()

    def stop(self) -> None:
        """Stop every server."""
        with contextlib.ExitStack() as stack:
            for server in self.servers:
                stack.callback(server.stop)

    def restart(self, unit: int) -> None:
        """Restart the unit's server on its file, as the charm does today."""
        self.servers[unit].restart(replicaof=self.replicaof(unit))
        self.restarts[unit] += 1

    def apply(self, unit: int) -> live.LiveResult:
        """Rewrite the unit's file and apply it live (restart if that is impossible)."""
        _, previous = self.write_file(unit)
        passwords = [self.options.password, *([previous] if previous else [])]
        result = live.apply_live(
            self.settings(unit),
            passwords=passwords,
            address=(HOST, self.ports[unit]),
            resolve=self.resolve,
        )
        if result.restart_needed:
            print(f'  unit {unit}: live apply impossible ({result.reason}); restarting')
            self.restart(unit)
        return result

    # ------------------------------------------------------------ observing

    def replicas(self) -> list[int]:
        """The running units other than the primary."""
        return [u for u in range(3) if u != self.primary and self.servers[u].running]

    def info(self, unit: int, section: str) -> dict[str, Any]:
        """One ``INFO`` section of a unit's server."""
        reply = call(self.ports[unit], self.options.password, 'INFO', section)
        return typing.cast('dict[str, Any]', reply)

    def wait_writable(self, start: float) -> float:
        """Seconds from ``start`` until the primary acknowledges a write."""
        port = self.ports[self.primary]
        while time.monotonic() - start < TIMEOUT:
            with contextlib.suppress(valkey.exceptions.ValkeyError):
                if call(port, self.options.password, 'SET', 'bench:probe', '1', timeout=1):
                    return time.monotonic() - start
            time.sleep(0.001)
        raise TimeoutError('the primary never accepted a write')

    def wait_in_sync(self, start: float) -> float:
        """Seconds from ``start`` until every replica is in sync."""
        while time.monotonic() - start < TIMEOUT:
            with contextlib.suppress(valkey.exceptions.ValkeyError):
                if self.in_sync():
                    return time.monotonic() - start
            time.sleep(0.001)
        raise TimeoutError('replicas never caught up')

    def in_sync(self) -> bool:
        """Every replica has all the primary had when we asked (with a writer, more)."""
        offset = self.info(self.primary, 'replication')['master_repl_offset']
        for unit in self.replicas():
            mine = self.info(unit, 'replication')
            if (
                mine.get('master_link_status') != 'up'
                or mine.get('master_port') != self.ports[self.primary]
                or mine.get('slave_repl_offset', -1) < offset
            ):
                return False
        return True

    def sync_stats(self) -> dict[int, tuple[str, int, int]]:
        """Per running unit: ``run_id``, ``sync_full``, ``sync_partial_ok``."""
        stats: dict[int, tuple[str, int, int]] = {}
        for unit in range(3):
            if self.servers[unit].running:
                run_id = str(self.info(unit, 'server')['run_id'])
                values = self.info(unit, 'stats')
                stats[unit] = (run_id, values['sync_full'], values['sync_partial_ok'])
        return stats


def sync_delta(
    before: dict[int, tuple[str, int, int]], after: dict[int, tuple[str, int, int]]
) -> tuple[int, int]:
    """Full and partial resyncs served since ``before`` (a restarted server starts at 0)."""
    full = partial = 0
    for unit, (run_id, f, p) in after.items():
        old = before.get(unit)
        base = (old[1], old[2]) if old is not None and old[0] == run_id else (0, 0)
        full += f - base[0]
        partial += p - base[1]
    return full, partial


@contextlib.contextmanager
def idle_clients(deployment: Deployment) -> Generator[Callable[[], dict[str, int]], None, None]:
    """Two idle connections per server; yields a count of those that were dropped.

    A connection counts as dropped if it fails, or if it answers with another
    ``CLIENT ID``: the client had to connect again.
    """
    opened: list[tuple[bool, valkey.Valkey, object]] = []
    for unit in range(3):
        if not deployment.servers[unit].running:
            continue
        for _ in range(IDLE_CLIENTS):
            client = connect(deployment.ports[unit], deployment.options.password, timeout=2)
            client_id = typing.cast('object', client.execute_command('CLIENT', 'ID'))  # pyright: ignore[reportUnknownMemberType]
            opened.append((unit == deployment.primary, client, client_id))

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


def lost_writes(writer: Writer, deployment: Deployment) -> int:
    """How many of the writer's acknowledged writes the primary does not have."""
    missing = 0
    for start in range(0, len(writer.acknowledged), 10_000):
        chunk = writer.acknowledged[start : start + 10_000]
        port, password = deployment.ports[deployment.primary], deployment.options.password
        values = call(port, password, 'MGET', *(f'w:{i}' for i in chunk))
        missing += sum(1 for i, v in zip(chunk, values, strict=True) if v != str(i))
    return missing


# ------------------------------------------------------------ events


def change_option(deployment: Deployment, option: str) -> None:
    """Change one option (or the password) to its other value."""
    options = deployment.options
    if option == 'log-level':
        options.log_level = 'verbose' if options.log_level == 'notice' else 'notice'
    elif option == 'maxmemory':
        options.maxmemory = '8gb' if options.maxmemory == '' else ''
    elif option == 'maxmemory-policy':
        options.maxmemory_policy = (
            'allkeys-lru' if options.maxmemory_policy == 'noeviction' else 'noeviction'
        )
    else:
        number = int(options.password.rsplit('-', 1)[1]) + 1
        options.password = f'bench-password-{number}'


def run_event(deployment: Deployment, event: str, way: str) -> dict[str, Any]:
    """One event, one way, from a steady state; its figures."""
    result: dict[str, Any] = {}
    restarts_before = list(deployment.restarts)
    writer: Writer | None = None
    old = deployment.primary
    new = (old + 1) % 3
    if event == 'leader-change, old primary gone':
        deployment.servers[old].stop()  # the pod is gone (SIGTERM: it saved its RDB)
    with idle_clients(deployment) as dropped:
        syncs_before = deployment.sync_stats()
        if event == 'switchover under writes':
            writer = Writer(
                deployment.ports[old],
                deployment.options.password,
                key_prefix='w:',
                follow_endpoint=False,  # an open connection through a Service stays put
                seconds=300,
            )
            writer.start()
            time.sleep(0.5)
        start = time.monotonic()
        if event.startswith(('leader-change', 'switchover')):
            result |= leader_change(deployment, way, old, new, writer)
        else:
            change_option(deployment, event.removeprefix('config-changed ').strip())
            if way == 'restart':
                threads = [
                    threading.Thread(target=deployment.restart, args=(unit,))
                    for unit in range(3)
                    if deployment.write_file(unit)[0]
                ]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join()
            else:
                for unit in (deployment.primary, *deployment.replicas()):
                    deployment.apply(unit)
        result['primary_writable_s'] = deployment.wait_writable(start)
        result['replicas_in_sync_s'] = deployment.wait_in_sync(start)
        if writer is not None:
            time.sleep(0.5)
            writer.finish()
            result |= {
                'writes_acknowledged': len(writer.acknowledged),
                'acknowledged_writes_lost': lost_writes(writer, deployment),
                'write_failures': writer.failures,
                'longest_write_gap_s': writer.longest_gap,
            }
        full, partial = sync_delta(syncs_before, deployment.sync_stats())
        result |= {'sync_full': full, 'sync_partial_ok': partial, 'connections_dropped': dropped()}
    restarts = zip(deployment.restarts, restarts_before, strict=True)
    result['restarts_per_unit'] = [after - before for after, before in restarts]
    if event == 'leader-change, old primary gone':
        # The pod comes back (not measured): it starts from its file, as a replica.
        deployment.write_file(old)
        deployment.servers[old].replicaof = deployment.ports[deployment.primary]
        deployment.servers[old].start()
    deployment.wait_in_sync(time.monotonic())
    return result


def leader_change(
    deployment: Deployment, way: str, old: int, new: int, writer: Writer | None
) -> dict[str, Any]:
    """The new leader's hook, then the followers' (the old primary's last)."""
    others = [u for u in range(3) if u not in (old, new)]
    old_alive = deployment.servers[old].running
    deployment.primary = new
    figures: dict[str, Any] = {}
    if way == 'restart':
        deployment.write_file(new)
        deployment.restart(new)
        if writer is not None:
            writer.endpoint = deployment.ports[new]  # the leader re-points the Service
        for unit in others:
            deployment.write_file(unit)
            deployment.restart(unit)
        if old_alive:
            deployment.write_file(old)
            deployment.restart(old)
        return figures
    if old_alive:
        handover = live.hand_over(
            old_primary=(HOST, deployment.ports[old]),
            target=deployment.resolve(dns_name(new)),
            passwords=[deployment.options.password],
            local=(HOST, deployment.ports[new]),
            method='pause' if way == 'live-pause' else 'failover',
        )
        figures['handover'] = {'status': handover.status, 'seconds': handover.seconds}
        if handover.status != 'switched':
            print(f'  handover: {handover.status} ({handover.reason}); promoting directly')
    deployment.apply(new)
    if writer is not None:
        writer.endpoint = deployment.ports[new]
    for unit in others:
        deployment.apply(unit)
    if old_alive:
        deployment.apply(old)
    return figures


def ways(event: str) -> tuple[str, ...]:
    """``restart`` and ``live``; a handover also ``live-pause`` (``hand_over(method='pause')``)."""
    alive = event in {'leader-change, old primary alive', 'switchover under writes'}
    return ('restart', 'live', 'live-pause') if alive else ('restart', 'live')


EVENTS: Final = (
    'leader-change, old primary gone',
    'leader-change, old primary alive',
    'switchover under writes',
    'rotate-password',
    'config-changed log-level',
    'config-changed maxmemory',
    'config-changed maxmemory-policy',
)


def load(deployment: Deployment, keys: int) -> dict[str, Any]:
    """Write ``keys`` keys to the primary with pipelined MSETs; wait for the replicas."""
    start = time.monotonic()
    port, password = deployment.ports[deployment.primary], deployment.options.password
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
    deployment.wait_in_sync(time.monotonic())
    memory = deployment.info(deployment.primary, 'memory')
    return {
        'keys': keys,
        'used_memory': memory['used_memory'],
        'used_memory_human': memory['used_memory_human'],
        'load_seconds': round(time.monotonic() - start, 1),
    }


def run_size(root: Path, name: str, keys: int) -> dict[str, Any]:
    """Every event, both ways, on one dataset."""
    deployment = Deployment(root / name)
    deployment.root.mkdir()
    try:
        deployment.start()
        report: dict[str, Any] = {'dataset': load(deployment, keys), 'events': {}}
        print(f'{name}: {report["dataset"]}', flush=True)
        for event in EVENTS:
            report['events'][event] = {}
            for way in ways(event):
                figures = run_event(deployment, event, way)
                report['events'][event][way] = figures
                print(f'  {event:34} {way:10} {summary(figures)}', flush=True)
        return report
    finally:
        deployment.stop()


def summary(figures: dict[str, Any]) -> str:
    """One line of the printed table."""
    text = (
        f'restarts {figures["restarts_per_unit"]} '
        f'writable {figures["primary_writable_s"] * 1000:8.1f} ms  '
        f'in sync {figures["replicas_in_sync_s"] * 1000:8.1f} ms  '
        f'full/partial {figures["sync_full"]}/{figures["sync_partial_ok"]}  '
        f'dropped {figures["connections_dropped"]}'
    )
    if 'acknowledged_writes_lost' in figures:
        text += (
            f'  lost {figures["acknowledged_writes_lost"]}/{figures["writes_acknowledged"]}'
            f'  longest gap {figures["longest_write_gap_s"] * 1000:.0f} ms'
        )
    return text


def markdown(report: dict[str, Any]) -> str:
    """The table of docs/benchmark.md: one row per event and way, columns per size."""
    sizes = list(report['sizes'])
    head = ['event', 'way', 'restarts', 'full/partial']
    head += [f'{name} keys: writable / in sync (ms)' for name in sizes]
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    first = report['sizes'][sizes[0]]['events']
    for event in first:
        for way in first[event]:
            rows = [report['sizes'][name]['events'][event][way] for name in sizes]
            restarts = sorted({max(row['restarts_per_unit']) for row in rows})
            syncs = ', '.join(f'{row["sync_full"]}/{row["sync_partial_ok"]}' for row in rows)
            cells = [event, way, '/'.join(map(str, restarts)) + ' per unit', syncs]
            cells += [
                f'{row["primary_writable_s"] * 1000:.0f} / {row["replicas_in_sync_s"] * 1000:.0f}'
                for row in rows
            ]
            lines.append('| ' + ' | '.join(cells) + ' |')
    lines += ['', '| writer during the switchover | way | ' + ' | '.join(sizes) + ' |']
    lines.append('|' + '---|' * (len(sizes) + 2))
    for way in first['switchover under writes']:
        rows = [report['sizes'][n]['events']['switchover under writes'][way] for n in sizes]
        lost = [f'{r["acknowledged_writes_lost"]} of {r["writes_acknowledged"]}' for r in rows]
        gap = [f'{r["longest_write_gap_s"] * 1000:.0f} ms' for r in rows]
        lines.append(f'| acknowledged writes lost | {way} | ' + ' | '.join(lost) + ' |')
        gaps = ' | '.join(gap)
        lines.append(f'| longest time without an acknowledged write | {way} | {gaps} |')
    title = 'connections dropped (on the primary / replicas), every size'
    lines += ['', f'| {title} | restart | live | live-pause |']
    lines.append('|---|---|---|---|')
    for event in first:
        cells: list[str] = []
        for way in ('restart', 'live', 'live-pause'):
            if way not in first[event]:
                cells.append('-')
                continue
            figures = [report['sizes'][n]['events'][event][way] for n in sizes]
            dropped = [f['connections_dropped'] for f in figures]
            seen: set[tuple[int, int]] = {(d['on_primary'], d['on_replicas']) for d in dropped}
            cells.append(', '.join(f'{p} / {r}' for p, r in sorted(seen)))
        lines.append(f'| {event} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def main() -> int:
    """Run every size, print the table, write the JSON."""
    parser = argparse.ArgumentParser(description='Failover benchmark: restarts vs live.')
    parser.add_argument('output', nargs='?', default=REPO_ROOT / 'bench/results/failover.json')
    parser.add_argument(
        '--sizes', default=','.join(SIZES), help='comma-separated: ' + ', '.join(SIZES)
    )
    args = parser.parse_args()
    report: dict[str, Any] = {
        'date': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
        'machine': platform.machine(),
        'python': platform.python_version(),
        'valkey_server': valkey_server.version(),
        'valkey_py': valkey.__version__,
        'sizes': {},
    }
    with tempfile.TemporaryDirectory(prefix='valkey-failover-') as tmp:
        for name in args.sizes.split(','):
            report['sizes'][name] = run_size(Path(tmp), name, SIZES[name])
    print(markdown(report))
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + '\n')
    print(f'written: {output}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
