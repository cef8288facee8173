# Copyright 2026 The valkey-leader-k8s authors
# See LICENSE file for licensing details.

"""Changes reach running servers live (``src/live.py``), and the file stays true.

Three real servers, each started from the file ``valkey_config.render_config``
writes for its unit; each test changes what a unit should be, writes the new
file, and calls ``live.apply_live`` as the charm will (desired password first,
then the one in the file it replaces). After every change:

* the running server's settings equal the file's: a probe server is started
  from the same file, and its ``CONFIG GET`` and ``INFO replication`` must
  match the live one's (Valkey's own reading of the file, not ours);
* nothing restarted: same process id, same ``run_id``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import socket
import time
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import pytest
import valkey
import valkey.exceptions

from workload import client, handover, live
from workload import config as valkey_config

from .charm_unit import REPO_ROOT, unit_dns_name
from .continuous_writes import Writer, connect
from .valkey_server import HOST, ValkeyServer, eventually, free_port

PASSWORD: Final = 'first password with spaces, "quotes" and é'
NEW_PASSWORD: Final = 'the rotated one'
TEMPLATES: Final = REPO_ROOT / 'templates'
DEFAULTS: Final = {'log_level': 'notice', 'maxmemory': '', 'maxmemory_policy': 'noeviction'}


def command(port: int, password: str, *args: str | int) -> object:
    with connect(port, password, timeout=5.0) as client:
        reply = client.execute_command(*args)  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]
        return typing.cast('object', reply)


def info(port: int, password: str, section: str) -> dict[str, object]:
    reply = typing.cast('dict[str, object]', command(port, password, 'INFO', section))
    return dict(reply)


@dataclasses.dataclass
class Unit:
    unit_id: int
    root: Path
    server: ValkeyServer
    settings: valkey_config.ValkeySettings

    @property
    def address(self) -> client.Address:
        return (HOST, self.server.port)

    @property
    def password(self) -> str:
        return self.settings.password

    def identity(self) -> tuple[int | None, object]:
        """Process id and run_id: both change on a restart."""
        return self.server.pid, info(self.server.port, self.password, 'server')['run_id']

    def replication(self) -> dict[str, object]:
        return info(self.server.port, self.password, 'replication')


class Cluster:
    """Three units' files and servers; unit 0 starts as the primary."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.units: list[Unit] = []
        self.probes: list[ValkeyServer] = []
        ports = [free_port() for _ in range(3)]
        for unit_id, port in enumerate(ports):
            settings = self.settings(unit_id, primary=0)
            root = tmp_path / f'unit-{unit_id}'
            root.mkdir()
            (root / 'valkey.conf').write_text(valkey_config.render_config(settings, TEMPLATES))
            server = ValkeyServer(
                root / 'valkey.conf',
                data_dir=root / 'data',
                log_file=root / 'valkey.log',
                port=port,
                replicaof=None if unit_id == 0 else ports[0],
            )
            self.units.append(Unit(unit_id, root, server, settings))

    def start(self) -> None:
        for unit in self.units:
            unit.server.start()
        for unit in self.units[1:]:
            self.wait_in_sync(self.units[0], unit)

    def stop(self) -> None:
        with contextlib.ExitStack() as stack:
            for server in [*(unit.server for unit in self.units), *self.probes]:
                stack.callback(server.stop)

    def resolve(self, host: str) -> client.Address:
        """A unit's stable DNS name -> its server on the loopback address."""
        for unit in self.units:
            if host == unit_dns_name(unit.unit_id):
                return unit.address
        raise AssertionError(f'unknown host {host}')

    @staticmethod
    def settings(
        unit_id: int, *, primary: int, password: str = PASSWORD, **options: str
    ) -> valkey_config.ValkeySettings:
        settings = valkey_config.ValkeySettings(
            password=password,
            primary_address=None if unit_id == primary else unit_dns_name(primary),
            announce_host=unit_dns_name(unit_id),
            log_level=DEFAULTS['log_level'],
            maxmemory=DEFAULTS['maxmemory'],
            maxmemory_policy=DEFAULTS['maxmemory_policy'],
        )
        return dataclasses.replace(settings, **options)

    def reconcile(self, unit: Unit, settings: valkey_config.ValkeySettings) -> live.LiveResult:
        """What the charm does: push the new file, then apply it live.

        A file that says primary is pushed by the leader once it chose that
        unit's server (``may_promote``): it is never a follower's own decision.
        """
        config_file = unit.root / 'valkey.conf'
        previous = valkey_config.requirepass_from_config(config_file.read_text())
        config_file.write_text(valkey_config.render_config(settings, TEMPLATES))
        unit.settings = settings
        passwords = [settings.password, *([previous] if previous else [])]
        return live.apply_live(
            settings,
            passwords=passwords,
            address=unit.address,
            resolve=self.resolve,
            may_promote=settings.primary_address is None,
        )

    def assert_runs_its_file(self, unit: Unit) -> None:
        """Valkey started from the unit's file reads what the live server runs."""
        probe = ValkeyServer(
            unit.root / 'valkey.conf',
            data_dir=self.tmp_path / f'probe-{len(self.probes)}',
            log_file=self.tmp_path / f'probe-{len(self.probes)}.log',
        )
        self.probes.append(probe)
        probe.start()
        try:
            from_file = observed(probe.port, unit.password)
        finally:
            probe.stop()
        running = observed(unit.server.port, unit.password)
        assert running['config'] == from_file['config']
        assert running['role'] == from_file['role']
        if from_file['role'] == 'slave':
            # The file names the primary by its DNS name and port 6379; the
            # test runs it on the loopback address: map the name as tests do.
            named = str(from_file['master_host'])
            assert self.resolve(named) == (running['master_host'], running['master_port'])

    @staticmethod
    def wait_in_sync(primary: Unit, replica: Unit, timeout: float = 15) -> None:
        def synced() -> bool | None:
            mine = replica.replication()
            theirs = primary.replication()
            same = (
                mine.get('master_link_status') == 'up'
                and mine.get('master_port') == primary.server.port
                and mine.get('slave_repl_offset') == theirs.get('master_repl_offset')
            )
            return True if same else None

        eventually(synced, timeout=timeout, what=f'unit {replica.unit_id} in sync')


def observed(port: int, password: str) -> dict[str, object]:
    config = client.pairs(command(port, password, 'CONFIG', 'GET', *live.LIVE_OPTIONS))
    # Each test server listens on a port of its own (the file says 6379 to all).
    config.pop('port')
    replication = info(port, password, 'replication')
    return {
        'config': config,
        'role': replication['role'],
        'master_host': replication.get('master_host'),
        'master_port': replication.get('master_port'),
    }


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    started = Cluster(tmp_path)
    try:
        started.start()
        yield started
    finally:
        started.stop()


# ------------------------------------------------------------ no change


def test_nothing_to_change_changes_nothing(cluster: Cluster) -> None:
    before = [unit.identity() for unit in cluster.units]
    for unit in cluster.units:
        command(unit.server.port, unit.password, 'CONFIG', 'RESETSTAT')
        result = cluster.reconcile(unit, unit.settings)
        assert result == live.LiveResult('unchanged')
        assert not result.restart_needed
        stats = info(unit.server.port, unit.password, 'commandstats')
        # One read (CONFIG GET + INFO, pipelined) after AUTH; nothing written.
        assert {'cmdstat_config|get', 'cmdstat_info'} <= stats.keys()
        assert not {'cmdstat_config|set', 'cmdstat_replicaof'} & stats.keys()
    assert [unit.identity() for unit in cluster.units] == before


# ------------------------------------------------------------ options


@pytest.mark.parametrize(
    ('option', 'value', 'name'),
    [
        ('log_level', 'debug', 'loglevel'),
        ('maxmemory', '512mb', 'maxmemory'),
        ('maxmemory_policy', 'allkeys-lru', 'maxmemory-policy'),
    ],
)
def test_each_option_changes_live_on_every_unit(
    cluster: Cluster, option: str, value: str, name: str
) -> None:
    before = [unit.identity() for unit in cluster.units]
    for unit in cluster.units:
        changed = cluster.settings(unit.unit_id, primary=0, **{option: value})
        result = cluster.reconcile(unit, changed)
        assert result == live.LiveResult('applied', changes=(name,))
        cluster.assert_runs_its_file(unit)
    assert [unit.identity() for unit in cluster.units] == before
    command(cluster.units[0].server.port, PASSWORD, 'SET', 'after', option)
    for unit in cluster.units[1:]:
        cluster.wait_in_sync(cluster.units[0], unit)


# ------------------------------------------------------------ password


def test_password_rotation_keeps_replication_and_restarts_nothing(cluster: Cluster) -> None:
    primary, first, second = cluster.units
    before = [unit.identity() for unit in cluster.units]
    full_syncs = info(primary.server.port, PASSWORD, 'stats')['sync_full']

    # The leader rotates first: its replicas' links stay authenticated.
    rotated = cluster.reconcile(primary, cluster.settings(0, primary=0, password=NEW_PASSWORD))
    assert rotated == live.LiveResult('applied', changes=('masterauth', 'requirepass'))
    command(primary.server.port, NEW_PASSWORD, 'SET', 'written-after-rotation', 'yes')
    cluster.wait_in_sync(primary, first)
    cluster.wait_in_sync(primary, second)
    assert command(first.server.port, PASSWORD, 'GET', 'written-after-rotation') == 'yes'

    # The window: a replica's link drops before its own hook ran. It cannot
    # reconnect with the old masterauth...
    command(first.server.port, PASSWORD, 'CLIENT', 'KILL', 'TYPE', 'master')
    time.sleep(1.5)
    assert first.replication()['master_link_status'] == 'down'

    # ...until its hook applies the new password; then it resumes.
    for unit in (first, second):
        rotated = cluster.settings(unit.unit_id, primary=0, password=NEW_PASSWORD)
        result = cluster.reconcile(unit, rotated)
        assert result == live.LiveResult('applied', changes=('masterauth', 'requirepass'))
    for unit in cluster.units:
        cluster.assert_runs_its_file(unit)
    cluster.wait_in_sync(primary, first)
    cluster.wait_in_sync(primary, second)
    assert command(first.server.port, NEW_PASSWORD, 'GET', 'written-after-rotation') == 'yes'
    assert info(primary.server.port, NEW_PASSWORD, 'stats')['sync_full'] == full_syncs
    assert [unit.identity() for unit in cluster.units] == before
    with pytest.raises(valkey.exceptions.AuthenticationError):
        command(second.server.port, PASSWORD, 'PING')


# ------------------------------------------------------------ roles


def test_leader_change_with_the_old_primary_gone(cluster: Cluster) -> None:
    old, new, other = cluster.units
    command(old.server.port, PASSWORD, 'SET', 'before', 'the change')
    cluster.wait_in_sync(old, new)
    cluster.wait_in_sync(old, other)
    old.server.stop()
    before = [new.identity(), other.identity()]

    promoted = cluster.reconcile(new, cluster.settings(1, primary=1))
    assert promoted == live.LiveResult('applied', changes=('role',))
    command(new.server.port, PASSWORD, 'SET', 'after', 'the change')
    followed = cluster.reconcile(other, cluster.settings(2, primary=1))
    assert followed == live.LiveResult('applied', changes=('role',))
    cluster.wait_in_sync(new, other)

    for unit in (new, other):
        cluster.assert_runs_its_file(unit)
    assert [new.identity(), other.identity()] == before
    assert command(other.server.port, PASSWORD, 'MGET', 'before', 'after') == [
        'the change',
        'the change',
    ]
    # The follower continued from its offset: no full resynchronisation.
    assert info(new.server.port, PASSWORD, 'stats')['sync_full'] == 0


def test_a_former_primary_becomes_a_replica_live(cluster: Cluster) -> None:
    """replica -> primary on one unit, primary -> replica on another, both live.

    The old primary still answers: the leader's choice starts with its handover,
    which already makes it a replica of the new one; its own file follows later.
    """
    old, new, other = cluster.units
    before = [unit.identity() for unit in cluster.units]
    handed = handover.hand_over(
        old_primary=old.address,
        target=cluster.resolve(unit_dns_name(1)),
        passwords=[PASSWORD],
        local=new.address,
    )
    assert handed.status == 'switched', handed
    assert cluster.reconcile(new, cluster.settings(1, primary=1)).changes == ()
    assert cluster.reconcile(old, cluster.settings(0, primary=1)).changes == ()
    assert cluster.reconcile(other, cluster.settings(2, primary=1)).changes == ('role',)
    command(new.server.port, PASSWORD, 'SET', 'on the new primary', '1')
    for unit in (old, other):
        cluster.wait_in_sync(new, unit)
    for unit in cluster.units:
        cluster.assert_runs_its_file(unit)
    assert [unit.identity() for unit in cluster.units] == before
    with pytest.raises(valkey.exceptions.ReadOnlyError):
        command(old.server.port, PASSWORD, 'SET', 'on the old primary', '1')


# ------------------------------------------------------------ switchover


def test_switchover_between_live_units_loses_no_acknowledged_write(cluster: Cluster) -> None:
    old, new, other = cluster.units
    before = [unit.identity() for unit in cluster.units]
    writer = Writer(old.server.port, PASSWORD, key_prefix='key:', follow_endpoint=True, seconds=60)
    writer.start()
    eventually(lambda: True if len(writer.acknowledged) > 200 else None, what='writes')

    result = handover.hand_over(
        old_primary=old.address,
        target=cluster.resolve(unit_dns_name(1)),
        passwords=[PASSWORD],
        local=new.address,
    )
    assert result.status == 'switched', result
    writer.endpoint = new.server.port  # the new leader re-points <app>-primary
    # The new leader's file says primary: the server already is one.
    assert cluster.reconcile(new, cluster.settings(1, primary=1)).status == 'unchanged'
    assert cluster.reconcile(other, cluster.settings(2, primary=1)).changes == ('role',)
    # The demoted unit's own hook: the handover already made it follow the new primary.
    assert cluster.reconcile(old, cluster.settings(0, primary=1)).status == 'unchanged'
    count = len(writer.acknowledged)
    eventually(lambda: True if len(writer.acknowledged) > count + 200 else None, what='writes')
    writer.finish(timeout=10)

    keys = [f'key:{i}' for i in writer.acknowledged]
    stored = typing.cast('list[str | None]', command(new.server.port, PASSWORD, 'MGET', *keys))
    lost = [i for i, value in zip(writer.acknowledged, stored, strict=True) if value != str(i)]
    assert lost == []
    for unit in (old, other):
        cluster.wait_in_sync(new, unit)
        cluster.assert_runs_its_file(unit)
    assert [unit.identity() for unit in cluster.units] == before
    assert info(new.server.port, PASSWORD, 'stats')['sync_full'] == 0


def test_old_primary_unreachable_is_reported_within_the_bound(cluster: Cluster) -> None:
    _, new, _ = cluster.units
    nothing_listens = (HOST, free_port())
    result = handover.hand_over(
        old_primary=nothing_listens, target=new.address, passwords=[PASSWORD], local=new.address
    )
    assert result.status == 'unreachable', result
    assert result.seconds < client.PEER_CONNECT_TIMEOUT + 0.5

    # A server that accepts the connection and never answers (hung, overloaded).
    with socket.socket() as silent:
        silent.bind((HOST, 0))
        silent.listen(8)
        result = handover.hand_over(
            old_primary=silent.getsockname(),
            target=new.address,
            passwords=[PASSWORD],
            local=new.address,
            connect_timeout=0.5,
        )
    assert result.status == 'unreachable', result
    assert result.seconds < 0.5 * 2 + 0.5
    assert new.replication()['role'] == 'slave'  # nothing changed: the caller promotes


def test_a_refused_handover_leaves_both_servers_as_they_were(cluster: Cluster) -> None:
    old, new, _ = cluster.units
    result = handover.hand_over(
        old_primary=old.address,
        target=(HOST, free_port()),  # not a replica the old primary knows
        passwords=[PASSWORD],
        local=new.address,
    )
    assert result.status == 'refused'
    assert 'not a replica' in result.reason
    assert info(old.server.port, PASSWORD, 'clients')['paused_actions'] == 'none'
    assert old.replication()['master_failover_state'] == 'no-failover'
    command(old.server.port, PASSWORD, 'SET', 'still', 'writable')
    assert new.replication()['role'] == 'slave'


def test_handover_to_a_unit_that_already_is_primary_does_nothing(cluster: Cluster) -> None:
    old, _, _ = cluster.units
    result = handover.hand_over(
        old_primary=old.address, target=old.address, passwords=[PASSWORD], local=old.address
    )
    assert result.status == 'already-primary'


# ------------------------------------------------------------ faults


def test_wrong_passwords_are_a_clear_result_without_the_password(cluster: Cluster) -> None:
    unit = cluster.units[0]
    wrong = ['a wrong password', 'another wrong one']
    result = live.apply_live(unit.settings, passwords=wrong, address=unit.address)
    assert result.status == 'auth-refused'
    assert result.restart_needed
    assert result.reason == 'the server refused every password it was given'
    for text in (repr(result), result.reason):
        assert not any(password in text for password in [*wrong, PASSWORD])

    # The old primary already has another password (it rotated): no handover.
    old, new, _ = cluster.units
    command(old.server.port, PASSWORD, 'CONFIG', 'SET', 'requirepass', NEW_PASSWORD)
    refused = handover.hand_over(
        old_primary=old.address, target=new.address, passwords=[PASSWORD], local=new.address
    )
    assert refused.status == 'auth-refused'
    assert PASSWORD not in repr(refused)
    assert NEW_PASSWORD not in repr(refused)


def test_the_second_password_is_the_one_the_server_still_has(cluster: Cluster) -> None:
    unit = cluster.units[2]
    rotated = cluster.settings(2, primary=0, password=NEW_PASSWORD)
    result = live.apply_live(
        rotated, passwords=[NEW_PASSWORD, PASSWORD], address=unit.address, resolve=cluster.resolve
    )
    assert result.changes == ('masterauth', 'requirepass')
    assert command(unit.server.port, NEW_PASSWORD, 'PING') is True


def test_no_server_running_is_not_running(tmp_path: Path) -> None:
    settings = Cluster.settings(0, primary=0)
    result = live.apply_live(settings, passwords=[PASSWORD], address=(HOST, free_port()))
    assert result.status == 'not-running'
    assert result.restart_needed
    assert 'connection refused' in result.reason


def test_a_refused_command_names_the_command_not_the_value(cluster: Cluster) -> None:
    unit = cluster.units[0]
    # Valkey refuses a log level it does not know (the charm's validation would not).
    bad = dataclasses.replace(unit.settings, log_level='loud')
    result = live.apply_live(
        bad, passwords=[PASSWORD], address=unit.address, resolve=cluster.resolve
    )
    assert result.status == 'refused'
    assert result.reason.startswith('CONFIG SET loglevel refused:')
    bad_both = dataclasses.replace(unit.settings, log_level='loud', password='new but refused')
    result = live.apply_live(
        bad_both, passwords=[PASSWORD], address=unit.address, resolve=cluster.resolve
    )
    assert result.reason == 'CONFIG SET masterauth requirepass loglevel refused: a refused value'
    # All or nothing: the password did not change.
    assert command(unit.server.port, PASSWORD, 'PING') is True


# ------------------------------------------------------------ client users


def test_client_users_are_set_and_removed_live_on_every_unit(cluster: Cluster) -> None:
    """Valkey does not replicate users: each unit sets its own, without a restart."""
    user_password = 'client-secret-0123456789'
    user = valkey_config.AclUser(
        name='relation-7-req1',
        password_sha256=hashlib.sha256(user_password.encode()).hexdigest(),
        key_pattern='myapp:*',
    )
    before = [unit.identity() for unit in cluster.units]
    for unit in cluster.units:
        result = live.apply_users((user,), passwords=[unit.password], address=unit.address)
        assert result == live.LiveResult('applied', changes=('ACL SETUSER relation-7-req1',))
    primary = cluster.units[0].server.port
    with valkey.Valkey(
        host=HOST, port=primary, username=user.name, password=user_password, socket_timeout=5
    ) as client:
        client.set('myapp:key', 'value')
        with pytest.raises(valkey.exceptions.NoPermissionError):
            client.set('other:key', 'value')
        with pytest.raises(valkey.exceptions.NoPermissionError):
            client.execute_command('CONFIG', 'GET', 'requirepass')  # pyright: ignore[reportUnknownMemberType]
    for unit in cluster.units:
        result = live.apply_users((), passwords=[unit.password], address=unit.address)
        assert result == live.LiveResult('applied', changes=('ACL DELUSER relation-7-req1',))
        users = command(unit.server.port, unit.password, 'ACL', 'USERS')
        assert users == ['default']
    assert [unit.identity() for unit in cluster.units] == before
