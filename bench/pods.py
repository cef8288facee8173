#!/usr/bin/env python3
# Copyright 2026 The valkey-leader-k8s authors
# See LICENSE file for licensing details.

"""How long the charm waits for an old primary that is gone, or cut off, in pods.

`tox -e bench-pods` (``python -m bench.pods``), as root. A benchmark, not a
test: it prints what it measured. Three units of the real charm run in pods
(network namespaces, ``tests/simulation/pods.py``), nothing of the charm
patched. Two ways the old primary disappears, each ``--runs`` times:

* ``deleted``: its pod is deleted; its stable DNS name stops resolving;
* ``cut off``: its pod's link is cut (a partition); the name still resolves
  to an address that does not answer.

Per way: how long one connection attempt by the charm
(``client.authenticated``, from the next leader's pod) takes to fail, and
how long the next leader's ``leader-elected`` hook takes in all (it asks the
old primary to hand over first).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from tests.simulation import pods
from tests.simulation.driver import Application, Hook
from tests.workload.charm_unit import unit_dns_name
from tests.workload.valkey_server import eventually
from workload import client


def one_run(workdir: Path, way: str) -> tuple[float, float]:
    """Seconds: one failed connection attempt, then unit 1's whole ``leader-elected``."""
    ends: dict[int, float] = {}

    def on_hook(hook: Hook) -> None:
        ends[hook.number] = time.monotonic()

    with (
        pods.Cluster(workdir / 'cluster') as cluster,
        Application(workdir, pods=cluster, on_hook=on_hook) as app,
    ):
        app.deploy()
        app.settle()
        # Replicas in sync first: a new leader hands over only from a primary it is linked to.
        eventually(
            lambda: all(v.role == 'primary' or v.link == 'up' for v in app.observe()) or None,
            timeout=30,
            what='replicas in sync',
        )
        password = app.password()
        if way == 'deleted':
            app.delete_pod(0)
        else:
            app.partition(0)
        with cluster.inside(app.pod_name(1)):
            started = time.monotonic()
            address = (unit_dns_name(0), 6379)
            with client.authenticated(address, [password], client.PEER_CONNECT_TIMEOUT) as c:
                if not isinstance(c, client.NoConnection):
                    raise RuntimeError('the old primary answered')
            attempt = time.monotonic() - started
        app.elect(1)
        app.settle()
        (elected,) = [
            h for h in app.hooks if h.event == 'leader-elected' and h.unit.endswith('/1')
        ]
        return attempt, ends[elected.number] - elected.started


def main() -> int:
    """Print the table; 1 where pods cannot be made."""
    parser = argparse.ArgumentParser(description=(__doc__ or '').splitlines()[0])
    parser.add_argument('--runs', type=int, default=5)
    args = parser.parse_args()
    reason = pods.unavailable()
    if reason is not None:
        print(f'cannot run: {reason}', file=sys.stderr)
        return 1
    print(
        f'{"old primary":<12} {"runs":>4} {"attempt median":>15} {"max":>7} '
        f'{"leader-elected median":>22} {"max":>7}'
    )
    for way in ('deleted', 'cut off'):
        attempts: list[float] = []
        hooks: list[float] = []
        for run in range(args.runs):
            with tempfile.TemporaryDirectory(prefix='bench-pods-') as workdir:
                attempt, hook = one_run(Path(workdir), way)
            attempts.append(attempt)
            hooks.append(hook)
            del run
        print(
            f'{way:<12} {len(attempts):>4} {statistics.median(attempts):>13.4f} s '
            f'{max(attempts):>5.3f} s {statistics.median(hooks):>20.3f} s {max(hooks):>5.3f} s'
        )
    return 0


if __name__ == '__main__':
    sys.exit(main())
