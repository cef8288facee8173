# Copyright 2026 The valkey-leader-k8s authors
# See LICENSE file for licensing details.

"""Watch a leadership change, without a cluster: ``tox -e demo``.

Three units of the real charm (run by ops.testing) and three real
``valkey-server`` processes on 127.0.0.1, driven in Juju's event order by
``driver.py``. Narrates six scenes: deploy; the leader's pod is deleted and
Juju elects another unit, whose ``leader-elected`` does the leader's work; the
StatefulSet recreates the pod, which comes back as a replica;
``rotate-password``; the lease moves between live units while a client
writes (the old primary hands over: how long until the new one accepts
writes, and no acknowledged write lost); a client application integrated,
then the lease moves (its credentials and address do not change). With
``--lease-runs-out``, one more: a new leader's lease runs out mid-hook.
Exits non-zero if the application does not converge or a check fails (one
primary, the leader; every other unit replicates from it;
``<app>-primary`` selects the leader's pod). Never prints a password: the demo
checks its own output for every revision of it before it ends.

With ``--pods`` (as root), each unit runs in a pod of its own, a network
namespace with its own ``127.0.0.1:6379`` and pod address, and the charm's
DNS names resolve as in Kubernetes (``pods.py``): nothing is patched.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import redis.exceptions

from ..workload import valkey_server
from ..workload.charm_unit import APP, MODEL, unit_name
from . import pods
from .driver import (
    PRIMARY_SERVICE,
    Application,
    ClientCredentials,
    Handover,
    Hook,
    LeaseExpiry,
    Settled,
    UnitView,
)
from .service_client import ServiceClient

KEYS = 20


class Narrator:
    """Prints the timeline, and keeps a copy to check that no password was printed."""

    def __init__(self, *, verbose: bool) -> None:
        self.verbose = verbose
        self.transcript = io.StringIO()
        self._checks: list[Hook] = []

    def say(self, text: str = '') -> None:
        print(text, flush=True)
        self.transcript.write(text + '\n')

    def hook(self, hook: Hook) -> None:
        if hook.check and not hook.changed and not self.verbose:
            self._checks.append(hook)
            return
        self._flush_checks()
        lead = 'leader' if hook.leader else ''
        self.say(f'  #{hook.number:<3} {short(hook.unit):<7} {lead:<6} {hook.event}')
        pad = ' ' * 20
        if hook.lease_ran_out:
            self.say(f'{pad}its lease ran out during a slow call')
        # In the order the charm does them.
        for relation in hook.answered:
            self.say(f'{pad}answered the client in the app databag of {relation}')
        if hook.wrote:
            self.say(f'{pad}wrote /run/valkey/valkey.conf: {hook.wrote}')
        if hook.handover:
            self.say(f'{pad}{handed_over(hook.handover)}')
        if hook.workload:
            self.say(f'{pad}{hook.workload}')
        if hook.service_selects:
            self.say(f'{pad}pointed the {PRIMARY_SERVICE} Service at pod {hook.service_selects}')
        if hook.published:
            self.say(f'{pad}published in the peer app databag: {published(hook)}')
        self.say(f'{pad}status: {hook.status.name}: {hook.status.message}')
        if hook.failed:
            self.say(f'{pad}hook failed ({hook.failed}); Juju runs it again')

    def _flush_checks(self) -> None:
        if self._checks:
            units = ', '.join(short(h.unit) for h in self._checks)
            first, last = self._checks[0].number, self._checks[-1].number
            numbers = f'#{first}' if first == last else f'#{first}-{last}'
            self.say(f'  {numbers} update-status on {units}: nothing changed')
            self._checks.clear()

    def settled(self, settled: Settled) -> None:
        self._flush_checks()
        self.say(
            f'  => converged: {settled.hooks} hooks in {settled.rounds} rounds, '
            f'then {settled.checks} update-status hooks changed nothing'
        )

    def table(self, views: list[UnitView]) -> None:
        rows = [('unit', 'role', 'replicating from', 'link', 'keys', 'juju status')]
        for v in views:
            unit = v.unit + (' *' if v.leader else '')
            keys = '-' if v.keys is None else str(v.keys)
            rows.append((unit, v.role, v.replicating_from or '-', v.link or '-', keys, v.status))
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        self.say()
        for row in rows:
            self.say(
                '  '
                + '  '.join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
            )
        self.say('  (* = Juju leader; role, source, link and keys are what each server reports)')
        self.say()


def short(unit: str) -> str:
    return 'unit/' + unit.rsplit('/', 1)[1]


def handed_over(handover: Handover) -> str:
    old = short(handover.from_unit or 'an unknown unit')
    if handover.status == 'switched':
        return f"{old}'s server handed the primary role over in {handover.seconds * 1000:.0f} ms"
    return f'no handover from {old} ({handover.status}: {handover.reason}); promoted directly'


def published(hook: Hook) -> str:
    shown = ('leader-unit', 'password-revision')
    parts = [f'{key}={json.loads(hook.published[key])}' for key in shown if key in hook.published]
    others = sorted(set(hook.published) - set(shown))
    if others:
        parts.append(('and ' if parts else '') + ', '.join(others))
    return ' '.join(parts)


def wait_everywhere(app: Application, items: dict[str, str]) -> float:
    """Seconds until every live unit's server holds every key."""
    start = time.monotonic()
    password = app.password()
    for unit in app.live_units():

        def holds(server: valkey_server.ValkeyServer = unit.server) -> bool | None:
            with server.client(password) as client:
                return True if all(client.get(k) == v for k, v in items.items()) else None

        valkey_server.eventually(holds, timeout=30, what=f'keys on {unit.name}')
    return time.monotonic() - start


def wait_in_sync(app: Application) -> list[UnitView]:
    def synced() -> list[UnitView] | None:
        views = app.observe()
        live = [v for v in views if v.role != 'down']
        return views if all(v.role == 'primary' or v.link == 'up' for v in live) else None

    return valkey_server.eventually(synced, timeout=30, what='replicas in sync')


def check(condition: bool, what: str) -> None:
    """Fail the demo (exit 1) unless ``condition`` holds."""
    if not condition:
        raise AssertionError(what)


@dataclasses.dataclass
class Demo:
    """The three scenarios, on one application, one after the other."""

    app: Application
    narrator: Narrator
    written: dict[str, str] = dataclasses.field(default_factory=dict[str, str])
    """Every key written so far, on whichever unit was primary."""

    def say(self, text: str = '') -> None:
        self.narrator.say(text)

    def write_keys(self, unit_id: int, prefix: str) -> None:
        items = {f'{prefix}:{i}': f'{prefix} value {i}' for i in range(KEYS)}
        wait_in_sync(self.app)  # with replicas, the primary takes writes once one is in sync
        with self.app.server(unit_id).client(self.app.password()) as client:
            for key, value in items.items():
                client.set(key, value)
        self.written.update(items)
        seconds = wait_everywhere(self.app, self.written)
        self.say(
            f'  wrote {KEYS} keys on unit/{unit_id}: all {len(self.written)} keys written so far '
            f'are on every live unit after {seconds:.1f} s'
        )

    def show_primary(self, leader_id: int) -> None:
        views = wait_in_sync(self.app)
        leader = unit_name(leader_id)
        live = [v for v in views if v.role != 'down']
        primaries = [v.unit for v in live if v.role == 'primary']
        check(primaries == [leader], f'{leader} is the only primary (primaries: {primaries})')
        for v in live:
            if v.unit != leader:
                check(v.replicating_from == leader, f'{v.unit} replicates from {leader}')
        pod = leader.replace('/', '-')
        selects = self.app.primary_service_selects()
        check(selects == pod, f'{PRIMARY_SERVICE} must select {pod}; it selects {selects}')
        self.narrator.table(views)
        self.say(f'  {PRIMARY_SERVICE} (the address for writes) selects pod {selects}')
        self.say()

    def deploy(self) -> Settled:
        self.app.deploy(leader=0)
        settled = self.app.settle()
        self.narrator.settled(settled)
        self.write_keys(0, 'deploy')
        self.show_primary(0)
        return settled

    def leaders_pod_dies(self) -> Settled:
        password = self.app.password()
        self.say('  kubectl delete pod valkey-leader-k8s-0: Juju runs stop in the dying pod;')
        self.say('  Valkey stops with it. Nobody leaves the peer relation: the StatefulSet will')
        self.say("  recreate the pod under the same unit name. Once unit/0's lease runs out,")
        self.say("  Juju elects unit/1, and its leader-elected does the leader's work:")
        self.app.delete_pod(0)
        self.app.elect(1)
        settled = self.app.settle()
        self.narrator.settled(settled)
        elected = [h for h in self.app.hooks if h.event == 'leader-elected'][-1]
        check(elected.unit == unit_name(1), 'leader-elected ran on unit/1')
        check(bool(elected.published), 'leader-elected published the new leader')
        self.say('  Why there: leader-elected is the event Juju sends the new leader. It tells')
        self.say('  the other units through the peer relation (they get relation-changed and')
        self.say('  follow), and because Juju guarantees leadership for only 30 s, it checks')
        self.say(
            '  is_leader() again right before each write that follows the slow Kubernetes call.'
        )
        check(self.app.password() == password, 'the password did not change')
        self.say('  the password did not change (same secret, same revision)')
        seconds = wait_everywhere(self.app, self.written)
        self.say(f'  every key written on unit/0 is on both live units ({seconds:.1f} s)')
        self.write_keys(1, 'new-leader')
        self.show_primary(1)
        return settled

    def pod_comes_back(self) -> Settled:
        self.say('  The StatefulSet recreates pod valkey-leader-k8s-0: same unit, same data')
        self.say('  volume; new containers (empty /run/valkey, no StoredState). It runs')
        self.say('  upgrade-charm, config-changed, start, pebble-ready, and follows unit/1:')
        self.app.recreate_pod(0)
        settled = self.app.settle()
        self.narrator.settled(settled)
        seconds = wait_everywhere(self.app, self.written)
        self.say(f'  every key written so far is on unit/0 again ({seconds:.1f} s)')
        self.show_primary(1)
        return settled

    def rotate_password(self) -> Settled:
        old = self.app.password()
        results = self.app.run_action(1, 'rotate-password')
        self.say(f'  action result: {results["result"]} (secret {results["secret-id"]})')
        settled = self.app.settle()
        self.narrator.settled(settled)
        new = self.app.password()
        check(old != new, 'the password changed')
        for unit in self.app.live_units():
            with unit.server.client(new) as client:
                check(client.ping(), f'{unit.name} accepts the new password')
            with unit.server.client(old) as client:
                try:
                    client.ping()
                except redis.exceptions.AuthenticationError:
                    continue
                raise AssertionError(f'{unit.name} still accepts the old password')
        self.say('  every live server refuses the old password and accepts the new one')
        self.write_keys(1, 'rotated')
        self.show_primary(1)
        return settled

    def live_switchover(self) -> Settled:
        """The lease moves between live units; the old primary hands over."""
        app = self.app
        old, new = 1, 0
        pids = {unit.unit_id: unit.server.pid for unit in app.live_units()}
        self.say(f"  Juju moves the lease to unit/{new} while unit/{old}'s pod keeps running (its")
        self.say('  agent restarted, say). A client writes through the Service all along.')
        self.say(f"  unit/{new}'s leader-elected checks is_leader() again, then its server takes")
        self.say(f"  the primary role live: unit/{old}'s server still answers, so it hands over")
        self.say(f'  first: writes paused, unit/{new} catches up, unit/{old} demotes itself,')
        self.say(f'  unit/{new} promotes, writes resume. Only then is the Service re-pointed:')
        with ServiceClient(app, probe=new) as client:
            app.elect(new)
            settled = app.settle()
            self.narrator.settled(settled)
        elected = [h for h in app.hooks if h.event == 'leader-elected'][-1]
        handover, writable_at = elected.handover, client.writable_at
        check(elected.unit == unit_name(new), f'leader-elected ran on unit/{new}')
        if handover is None or handover.status != 'switched' or writable_at is None:
            raise AssertionError(f'no handover, or no write accepted on unit/{new}: {handover}')
        check(client.lost == 0, f'{client.lost} acknowledged writes were lost')
        restarted = [u.name for u in app.live_units() if u.server.pid != pids[u.unit_id]]
        check(not restarted, f'no server restarted ({restarted})')
        self.say(
            f"  unit/{old}'s server handed over in {handover.seconds * 1000:.0f} ms; unit/{new} "
            'accepted writes '
            f'{(writable_at - handover.started) * 1000:.0f} ms after the handover began'
        )
        self.say(
            f'  ({(writable_at - elected.started) * 1000:.0f} ms after its leader-elected '
            'began, most of it the simulated hook itself).'
        )
        self.say(
            f'  The client: {len(client.writer.acknowledged)} writes acknowledged, '
            f'{client.lost} lost, the longest wait {client.writer.longest_gap * 1000:.0f} ms '
            '(until it reconnected'
        )
        self.say('  through the re-pointed Service). No server restarted (same process IDs).')
        self.show_primary(new)
        return settled

    def client_keeps_its_credentials(self) -> Settled:
        """A client integrated, then a leadership change it does not notice."""
        app = self.app
        leader = app.leader()
        check(leader is not None, 'Juju has a leader')
        old = leader.unit_id if leader is not None else 0
        new = (old + 1) % len(app.units)
        self.say('  juju integrate shop valkey-leader-k8s: shop asks for the keys shop:*.')
        self.say('  Every unit gets valkey-client-relation-created and -changed; only the')
        self.say(
            f'  leader (unit/{old}) answers: a user, its password in a secret granted to shop,'
        )
        self.say(f'  and {PRIMARY_SERVICE} as the address for writes. It tells the other units')
        self.say('  about the user (not the password) in the peer databag: Valkey does not')
        self.say('  replicate users, so each unit writes the user into its own file:')
        relation = app.integrate_client('shop', resource='shop:*')
        joined = app.settle()
        self.narrator.settled(joined)
        before = app.client_credentials(relation.id)
        self.say(
            f'  shop reads: user {before.username}, keys {before.resource}, writes to '
            f'{before.endpoints.split(".")[0]}, password in secret revision '
            f'{before.secret_revision}'
        )
        self.client_works(before, 'shop:basket:1', old)
        self.say(f"  Juju moves the lease to unit/{new} (unit/{old}'s pod keeps running):")
        app.elect(new)
        moved = app.settle()
        self.narrator.settled(moved)
        after = app.client_credentials(relation.id)
        same = [
            (after.username, after.endpoints, after.secret_id, after.secret_revision)
            == (before.username, before.endpoints, before.secret_id, before.secret_revision),
            after.password == before.password,
        ]
        check(all(same), "the new leader left the client's credentials and address unchanged")
        self.say('  shop reads the same user, password (same secret revision) and address; the')
        self.say(f'  address now reaches unit/{new}, the new primary:')
        self.client_works(after, 'shop:basket:2', new)
        check(
            before.password not in self.narrator.transcript.getvalue(),
            "the client's password was not printed",
        )
        self.show_primary(new)
        return Settled(
            hooks=joined.hooks + moved.hooks,
            rounds=joined.rounds + moved.rounds,
            checks=joined.checks + moved.checks,
        )

    def client_works(self, creds: ClientCredentials, key: str, primary: int) -> None:
        """Check and say: the address leads to ``primary``; the user may use its keys only."""
        wait_in_sync(self.app)
        through = self.primary_endpoint(creds, primary)
        check(client_can(creds, through, 'SET', key, 'apples'), f'shop may write {key}')
        check(not client_can(creds, through, 'GET', 'deploy:0'), 'shop may not read deploy:0')
        for unit in self.app.live_units():
            allowed = client_can(creds, unit.server, 'EXISTS', key)
            check(allowed, f'{unit.name} knows the user')
            refused = not client_can(creds, unit.server, 'EXISTS', 'deploy:0')
            check(refused, f'{unit.name} keeps the user to the keys shop:*')
        self.say(f'  through it, shop wrote {key} on unit/{primary}; reading deploy:0 was refused')
        self.say('  (NOPERM); every live server knows the user and keeps it to the keys shop:*.')

    def primary_endpoint(self, creds: ClientCredentials, primary: int) -> Endpoint:
        """Check that the client's write address leads to ``primary``; return it."""
        cluster = self.app.pods
        if cluster is None:
            port = self.app.resolve(creds.endpoints)
            check(port == self.app.server(primary).port, f'the address reaches unit/{primary}')
            return PortEndpoint(port)
        host = creds.endpoints.rsplit(':', 1)[0]
        pod = self.app.pod_name(primary)
        check(cluster.names.get(host) == cluster.address_of(pod), f'{host} resolves to {pod}')
        client_pod = cluster.pods.get('client') or cluster.add_client('client')
        return NameEndpoint(client_pod.namespace, host)

    def lease_runs_out(self) -> Settled:
        """A new leader's lease runs out mid-hook (opt-in: ``tox -e demo -- --lease-runs-out``)."""
        leader = self.app.leader()
        check(leader is not None, 'Juju has a leader')
        back = leader.unit_id if leader is not None else 0
        new = (back + 1) % len(self.app.units)
        self.say(f'  Juju moves the lease to unit/{new} (its pod keeps running: say its agent')
        self.say('  restarted). Its server takes the primary role (a handover), then, in its')
        self.say('  second Kubernetes request, the lease runs out, and Juju hands leadership')
        self.say(f'  back to unit/{back}. Whatever unit/{new} did outside Juju stays: the Service')
        self.say(f"  and its server's role. unit/{back}'s leader-elected must check both against")
        self.say('  the world, whatever was recorded, and take them back:')
        self.app.elect(new)
        self.app.expire_lease(LeaseExpiry(unit_id=new, at_slow_call=2, then=back))
        settled = self.app.settle()
        self.narrator.settled(settled)
        check(not self.app.errors, f'no hook raised ({self.app.errors})')
        self.show_primary(back)
        return settled


class Endpoint(Protocol):
    """A server as a client reaches it: a unit's own, or the write address."""

    def client(
        self, password: str | None = None, *, username: str | None = None
    ) -> valkey_server.Client: ...


@dataclasses.dataclass(frozen=True)
class PortEndpoint:
    """A server on a loopback port (the driver's mapping of a DNS name)."""

    port: int

    def client(
        self, password: str | None = None, *, username: str | None = None
    ) -> valkey_server.Client:
        return valkey_server.Client(self.port, password, username=username)


@dataclasses.dataclass(frozen=True)
class NameEndpoint:
    """``<host>:6379`` by name, from a client pod, as the client application connects."""

    namespace: str
    host: str

    def client(
        self, password: str | None = None, *, username: str | None = None
    ) -> valkey_server.Client:
        return pods.PodClient(self.namespace, password, host=self.host, username=username)


def client_can(creds: ClientCredentials, server: Endpoint, *command: str) -> bool:
    """Whether ``server`` lets the client's user run ``command`` (no ``NOPERM``)."""
    with server.client(creds.password, username=creds.username) as client:
        try:
            client.command(*command)
        except redis.exceptions.NoPermissionError:
            return False
        except redis.exceptions.AuthenticationError:
            raise AssertionError(f"{server} refuses the client's credentials") from None
    return True


def run(
    workdir: Path,
    narrator: Narrator,
    *,
    lease_scene: bool = False,
    cluster: pods.Cluster | None = None,
) -> list[tuple[str, Settled, float]]:
    say = narrator.say
    say(f'{APP}: 3 units of the charm (ops.testing) in model "{MODEL.name}", each')
    where = 'in a pod (a network namespace)' if cluster is not None else 'on 127.0.0.1'
    say(f'with a real valkey-server {valkey_server.version()} {where}, standing in for')
    say(f'  juju deploy ./{APP}_amd64.charm -n 3 --trust --resource valkey-image=...')
    say('and what Juju and Kubernetes do next. One line per hook: its number, the unit,')
    say('whether it leads, the event; then what it changed.')
    say("A follower's file names the leader by its Kubernetes DNS name; the driver")
    if cluster is None:
        say("starts its server with --replicaof 127.0.0.1 <that unit's port> instead.")
    else:
        say('starts its server from that file as written: the name resolves in the pods.')
    say('A round: every unit with an event queued runs its next one (Juju runs units')
    say('side by side). Converged: one update-status per unit changed nothing.')
    say("Keys take a few seconds to reach a new replica: a primary waits 5 s (Valkey's")
    say('default repl-diskless-sync-delay) before a full sync, so replicas can share it.')
    say()
    timings: list[tuple[str, Settled, float]] = []
    passwords: set[str] = set()
    with Application(workdir, on_hook=narrator.hook, pods=cluster) as app:
        demo = Demo(app, narrator)
        scenarios: list[tuple[str, Callable[[], Settled]]] = [
            ('1. juju deploy ... -n 3 --trust', demo.deploy),
            ("2. the leader's pod is deleted; Juju elects unit/1", demo.leaders_pod_dies),
            ('3. the StatefulSet recreates pod 0', demo.pod_comes_back),
            ('4. juju run valkey-leader-k8s/1 rotate-password', demo.rotate_password),
            ("5. the lease moves to unit/0, unit/1's pod still up", demo.live_switchover),
        ]
        if lease_scene:
            scenarios.append(
                (
                    f"{len(scenarios) + 1}. a new leader's lease runs out in leader-elected",
                    demo.lease_runs_out,
                )
            )
        scenarios.append(
            (
                f'{len(scenarios) + 1}. juju integrate shop; then the lease moves',
                demo.client_keeps_its_credentials,
            )
        )
        for title, scenario in scenarios:
            say(f'=== {title} ' + '=' * max(3, 75 - len(title)))
            passwords.update(app.password_revisions().values() if app.secrets else ())
            start = time.monotonic()
            settled = scenario()
            timings.append((title, settled, time.monotonic() - start))
            passwords.update(app.password_revisions().values())
    # The transcript is the demo's whole output: not one password in it.
    transcript = narrator.transcript.getvalue()
    check(not any(p in transcript for p in passwords), 'no password was printed')
    return timings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument('-v', '--verbose', action='store_true', help='show every update-status')
    parser.add_argument(
        '--lease-runs-out',
        action='store_true',
        help="add a scene: a new leader's lease runs out during its Kubernetes call",
    )
    parser.add_argument(
        '--pods',
        action='store_true',
        help='run each unit in a pod of its own: a network namespace (needs root)',
    )
    args = parser.parse_args(argv)
    if args.pods and (reason := pods.unavailable()) is not None:
        print(f'--pods: {reason}', file=sys.stderr)
        return 2
    narrator = Narrator(verbose=args.verbose)
    start = time.monotonic()
    try:
        with (
            tempfile.TemporaryDirectory(prefix='valkey-demo-') as tmp,
            contextlib.ExitStack() as stack,
        ):
            cluster = stack.enter_context(pods.Cluster(Path(tmp) / 'pods')) if args.pods else None
            timings = run(Path(tmp), narrator, lease_scene=args.lease_runs_out, cluster=cluster)
    except (AssertionError, TimeoutError, valkey_server.ServerError) as e:
        print(f'\nDEMO FAILED: {type(e).__name__}: {e}', file=sys.stderr)
        return 1
    wall = time.monotonic() - start
    narrator.say('=== Summary ' + '=' * 68)
    for title, settled, seconds in timings:
        narrator.say(
            f'  {title:<52} {settled.hooks:>2} hooks  {settled.rounds:>2} rounds  '
            f'(+{settled.checks} checks)  {seconds:5.1f} s'
        )
    hooks = sum(settled.hooks for _, settled, _ in timings)
    checks = sum(settled.checks for _, settled, _ in timings)
    narrator.say(
        f'  total: {hooks} hooks (+{checks} update-status checks), wall time {wall:.1f} s'
    )
    narrator.say('  no password was printed: the demo checked its own output')
    return 0


if __name__ == '__main__':
    sys.exit(main())
