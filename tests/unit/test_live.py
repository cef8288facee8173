# Copyright 2026 The valkey-leader-k8s authors
# See LICENSE file for licensing details.

"""The pure parts of the live channel: what differs, and the password in the file.

Against real servers: tests/workload/test_live.py.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import hypothesis
import pytest
import valkey.exceptions
from hypothesis import strategies as st

from workload import client, handover, live
from workload import config as valkey_config

REPO_ROOT = Path(__file__).resolve().parents[2]
PRIMARY_NAME = 'valkey-leader-k8s-0.valkey-leader-k8s-endpoints.demo.svc.cluster.local'
OWN_NAME = 'valkey-leader-k8s-1.valkey-leader-k8s-endpoints.demo.svc.cluster.local'


@pytest.fixture(autouse=True)
def live_server() -> None:
    """Overrides conftest's fake: these tests exercise the real ``live.apply_live``."""


def settings(primary: str | None = PRIMARY_NAME, **values: str) -> valkey_config.ValkeySettings:
    defaults = valkey_config.ValkeySettings(
        primary_address=primary,
        password='pw',
        log_level='notice',
        maxmemory='',
        maxmemory_policy='noeviction',
        announce_host=OWN_NAME,
    )
    return dataclasses.replace(defaults, **values)


def running(desired: valkey_config.ValkeySettings) -> dict[str, str]:
    """CONFIG GET of a server that already runs ``desired``."""
    return live.desired_options(desired, client.same_host)


FOLLOWING = {'role': 'slave', 'master_host': PRIMARY_NAME, 'master_port': 6379}
PRIMARY = {'role': 'master'}


# ------------------------------------------------------------ plan


def test_a_server_that_runs_the_file_needs_nothing() -> None:
    desired = settings()
    todo = live.plan(desired, running(desired), FOLLOWING)
    assert todo == live.Plan(config={}, role=None, reconnect=False)


def test_without_an_announced_name_the_servers_own_is_left_alone() -> None:
    desired = dataclasses.replace(settings(), announce_host=None)
    current = {**running(desired), 'replica-announce-ip': '10.1.2.3'}
    todo = live.plan(desired, current, FOLLOWING)
    assert todo == live.Plan(config={}, role=None, reconnect=False)
    assert todo.changes == ()


def test_only_the_differing_options_are_set() -> None:
    current = running(settings())
    todo = live.plan(settings(log_level='debug', maxmemory='1gb'), current, FOLLOWING)
    assert todo.config == {'loglevel': 'debug', 'maxmemory': str(1024**3)}
    assert todo.changes == ('loglevel', 'maxmemory')


def test_maxmemory_is_compared_in_bytes_as_config_get_answers() -> None:
    current = {**running(settings()), 'maxmemory': str(100 * 1024**2)}
    assert live.plan(settings(maxmemory='100mb'), current, FOLLOWING).changes == ()
    current['maxmemory'] = '0'
    assert live.plan(settings(maxmemory=''), current, FOLLOWING).changes == ()


def test_a_new_password_sets_masterauth_before_requirepass() -> None:
    current = running(settings())
    todo = live.plan(settings(password='new-secret'), current, FOLLOWING)
    assert list(todo.config.items()) == [
        ('masterauth', 'new-secret'),
        ('requirepass', 'new-secret'),
    ]
    assert 'new-secret' not in repr(todo)


def test_a_new_leader_is_promoted_and_a_follower_follows() -> None:
    current = running(settings())
    assert live.plan(settings(primary=None), current, FOLLOWING).role == ('NO', 'ONE')
    assert live.plan(settings(primary=None), current, PRIMARY).role is None
    elsewhere = {**FOLLOWING, 'master_host': 'another.unit'}
    assert live.plan(settings(), current, elsewhere).role == (PRIMARY_NAME, '6379')
    assert live.plan(settings(), current, PRIMARY).role == (PRIMARY_NAME, '6379')


def test_the_primary_is_reached_through_resolve() -> None:
    def resolve(host: str) -> client.Address:
        return ('127.0.0.1', 40001) if host == PRIMARY_NAME else ('127.0.0.1', 40002)

    desired = settings()
    current = live.desired_options(desired, resolve)
    assert current['replica-announce-ip'] == '127.0.0.1'
    follows = {'role': 'slave', 'master_host': '127.0.0.1', 'master_port': 40001}
    assert live.plan(desired, current, follows, resolve).changes == ()
    assert live.plan(desired, current, FOLLOWING, resolve).role == ('127.0.0.1', '40001')


def test_a_connected_replica_that_announces_a_new_name_reconnects_once() -> None:
    current = {**running(settings()), 'replica-announce-ip': ''}
    todo = live.plan(settings(), current, FOLLOWING)
    assert todo.config == {'replica-announce-ip': OWN_NAME}
    assert todo.reconnect
    # A primary has no link to drop; a new REPLICAOF connects anyway.
    assert not live.plan(settings(primary=None), current, PRIMARY).reconnect
    assert not live.plan(settings(), current, PRIMARY).reconnect


def test_only_failures_need_a_restart() -> None:
    assert not live.LiveResult('unchanged').restart_needed
    assert not live.LiveResult('applied', changes=('role',)).restart_needed
    for status in ('not-running', 'auth-refused', 'refused'):
        assert live.LiveResult(status).restart_needed  # type: ignore[arg-type]


def test_importing_live_does_not_import_the_client() -> None:
    """Juju starts a process per hook: the client is imported only when used."""
    probe = 'import sys\nfrom workload import live\nprint("valkey" in sys.modules)'
    result = subprocess.run(
        [sys.executable, '-c', probe],
        env={'PYTHONPATH': str(REPO_ROOT / 'src')},
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == 'False'


# ------------------------------------------------------------ the file's password


@hypothesis.given(st.text())
def test_the_password_read_back_from_the_file_is_the_one_written(password: str) -> None:
    quoted = valkey_config.valkey_quote(password)
    assert valkey_config.valkey_unquote(quoted) == password
    text = valkey_config.render_config(settings(password=password), REPO_ROOT / 'templates')
    assert valkey_config.requirepass_from_config(text) == password


@pytest.mark.parametrize(
    ('quoted', 'value'),
    [
        ('"plain"', 'plain'),
        (r'"a\"b"', 'a"b'),
        (r'"back\\slash"', 'back\\slash'),
        (r'"\x41\x42"', 'AB'),
        (r'"\n\t"', '\n\t'),
        (r'"\xZZ"', 'xZZ'),  # not hex: Valkey reads the x as itself
        ('unquoted', None),
        ('"unterminated', None),
        (r'"ends in a backslash\"', None),
        ('"two" "args"', None),
        (r'"\xff"', None),  # not UTF-8: not a password this charm wrote
    ],
)
def test_unquote_reads_what_valkey_reads(quoted: str, value: str | None) -> None:
    assert valkey_config.valkey_unquote(quoted) == value


def test_a_file_without_requirepass_has_no_password() -> None:
    assert valkey_config.requirepass_from_config('port 6379\nloglevel notice\n') is None
    assert valkey_config.requirepass_from_config('requirepass "a"\nrequirepass "b"\n') == 'b'


def test_the_file_announces_the_units_own_name_when_given() -> None:
    templates = REPO_ROOT / 'templates'
    text = valkey_config.render_config(settings(), templates)
    assert f'\nreplica-announce-ip {OWN_NAME}\n' in text
    without = valkey_config.render_config(settings(announce_host=''), templates)
    assert 'replica-announce-ip' not in without


# ------------------------------------------------------------ the channel, faked
# The same paths against real servers: tests/workload/test_live.py. Here a fake
# client stands in for valkey-py, to pin down each outcome without a server.


class FakeServer:
    """What one Valkey server answers, as the few commands live.py sends see it."""

    def __init__(self, desired: valkey_config.ValkeySettings, *, role: str = 'slave') -> None:
        self.password = desired.password
        self.config = running(desired) | {'port': '6379'}
        self.replication: dict[str, object] = {'role': role, 'master_replid': 'history-1'}
        if role == 'slave' and desired.primary_address:
            self.replication |= {'master_host': desired.primary_address, 'master_port': 6379}
        self.refuse: dict[str, str | Exception] = {}
        self.sent: list[tuple[str | int, ...]] = []
        self.users = {'default'}
        # The CA of the certificate it serves with: its port then speaks TLS only.
        self.tls_ca: str | None = None

    def answer(self, *args: str | int) -> object:
        self.sent.append(args)
        name = str(args[0]).upper()
        for refused in (name, f'{name} {args[1:2]}'):
            error = self.refuse.get(refused)
            if isinstance(error, Exception):
                raise error
            if error is not None:
                raise valkey.exceptions.ResponseError(error)
        if name == 'CONFIG' and args[1] == 'GET':
            return [x for key in args[2:] for x in (key, self.config.get(str(key), ''))]
        if name == 'CONFIG':
            pairs = [str(x) for x in args[2:]]
            self.config |= dict(zip(pairs[::2], pairs[1::2], strict=True))
            return True
        if name == 'INFO':
            return dict(self.replication)
        if name == 'REPLICAOF':
            history = {'master_replid': self.replication.get('master_replid')}
            self.replication = history | (
                {'role': 'master'}
                if args[1:] == ('NO', 'ONE')
                else {'role': 'slave', 'master_host': args[1], 'master_port': int(args[2])}
            )
            return True
        if name == 'ACL':
            verb, names = str(args[1]).upper(), {str(a) for a in args[2:3]}
            self.users = self.users | names if verb == 'SETUSER' else self.users - names
            return sorted(self.users) if verb == 'USERS' else 1
        return True


class FakeClient:
    def __init__(self, server: FakeServer) -> None:
        self.server = server
        self.queued: list[tuple[str | int, ...]] = []

    def execute_command(self, *args: str | int) -> object:
        return self.server.answer(*args)

    def pipeline(self, transaction: bool = True) -> FakeClient:
        return FakePipeline(self.server)

    def execute(self, raise_on_error: bool = True) -> list[object]:
        replies: list[object] = []
        for args in self.queued:
            try:
                replies.append(self.server.answer(*args))
            except valkey.exceptions.ValkeyError as e:
                if raise_on_error:
                    raise
                replies.append(e)
        return replies

    def close(self) -> None:
        pass


class FakePipeline(FakeClient):
    def execute_command(self, *args: str | int) -> object:
        self.queued.append(args)
        return self


Servers = dict[client.Address, FakeServer]


@pytest.fixture
def servers(monkeypatch: pytest.MonkeyPatch) -> dict[client.Address, FakeServer]:
    known: dict[client.Address, FakeServer] = {}

    def connect(
        address: client.Address, password: str, timeout: float, transport: client.Transport
    ) -> FakeClient:
        server = known.get(address)
        if server is None:
            raise valkey.exceptions.ConnectionError('Connection refused.')
        if server.tls_ca is not None and transport != client.Tls(server.tls_ca):
            # Plaintext on a TLS port, or a certificate the given CA did not sign.
            raise valkey.exceptions.ConnectionError('Connection closed by server.')
        if server.tls_ca is None and transport is not None:
            raise valkey.exceptions.TimeoutError('Timeout reading from socket')  # no handshake
        if server.password != password:
            raise valkey.exceptions.AuthenticationError('invalid username-password pair')
        return FakeClient(server)

    monkeypatch.setattr(client, '_client', connect)
    return known


OLD = ('10.0.0.1', 6379)


def test_fake_a_no_op_reads_once_and_writes_nothing(servers: Servers) -> None:
    server = servers[client.LOCAL] = FakeServer(settings())
    assert live.apply_live(settings(), passwords=['pw']) == live.LiveResult('unchanged')
    assert [args[:2] for args in server.sent] == [('CONFIG', 'GET'), ('INFO', 'replication')]


def test_fake_changes_are_applied_in_one_pipeline(servers: Servers) -> None:
    server = servers[client.LOCAL] = FakeServer(settings())
    promote = settings(primary=None, password='new')
    result = live.apply_live(promote, passwords=['new', 'pw'], may_promote=True)
    assert result == live.LiveResult('applied', changes=('masterauth', 'requirepass', 'role'))
    assert server.sent[2:] == [
        ('CONFIG', 'SET', 'masterauth', 'new', 'requirepass', 'new'),
        ('REPLICAOF', 'NO', 'ONE'),
    ]


def test_fake_a_new_name_is_announced_by_reconnecting(servers: Servers) -> None:
    server = servers[client.LOCAL] = FakeServer(settings(announce_host='old.name'))
    assert live.apply_live(settings(), passwords=['pw']).changes == ('replica-announce-ip',)
    assert server.sent[-1] == ('CLIENT', 'KILL', 'TYPE', 'master')


def test_fake_failures_say_why_without_the_password(servers: Servers) -> None:
    assert live.apply_live(settings(), passwords=['pw']).status == 'not-running'
    server = servers[client.LOCAL] = FakeServer(settings(password='secret-one'))
    refused = live.apply_live(settings(), passwords=['pw', 'also-wrong'])
    assert refused.status == 'auth-refused'
    server.refuse['REPLICAOF'] = 'ERR REPLICAOF not allowed for secret-one'
    result = live.apply_live(settings(primary=None), passwords=['secret-one'], may_promote=True)
    assert result.status == 'refused'
    # The desired settings' password is 'pw'; the server's message is scrubbed of
    # every password the caller gave.
    assert 'secret-one' not in result.reason
    server.refuse["CONFIG ('SET',)"] = 'ERR Invalid argument secret-one'
    bad_level = settings(log_level='x')
    result = live.apply_live(bad_level, passwords=['secret-one'])
    assert result.reason == 'CONFIG SET loglevel refused: ERR Invalid argument ***'
    server.refuse['REPLICAOF'] = valkey.exceptions.BusyLoadingError('LOADING')
    loading = live.apply_live(settings(primary=None), passwords=['secret-one'], may_promote=True)
    assert loading.status == 'refused'
    assert loading.reason == 'REPLICAOF NO ONE refused: LOADING'
    server.refuse['CONFIG'] = 'NOPERM this user has no permissions to run the config command'
    result = live.apply_live(settings(password='secret-one'), passwords=['secret-one'])
    assert result.status == 'refused'
    assert result.reason.startswith('reading the settings refused: NOPERM')


def test_a_replica_is_promoted_only_when_the_leader_chose_it(servers: Servers) -> None:
    mine = servers[client.LOCAL] = FakeServer(settings())
    mine.replication |= {'master_link_status': 'up'}

    held = live.apply_live(settings(primary=None, log_level='debug'), passwords=['pw'])
    assert held.waiting == 'only the leader promotes a server'
    assert held.changes == ('loglevel',), 'the other settings are applied anyway'
    assert mine.replication['role'] == 'slave'

    promote = settings(primary=None, log_level='debug')
    chosen = live.apply_live(promote, passwords=['pw'], may_promote=True)
    assert (chosen.changes, chosen.waiting) == (('role',), '')
    assert mine.replication['role'] == 'master'


def test_a_server_follows_only_a_server_that_says_it_is_a_primary(servers: Servers) -> None:
    mine = servers[client.LOCAL] = FakeServer(settings(primary=None), role='master')
    target = servers[(PRIMARY_NAME, 6379)] = FakeServer(settings(primary=OWN_NAME))

    to_a_replica = live.apply_live(settings(), passwords=['pw'])
    assert to_a_replica == live.LiveResult(
        'unchanged', waiting=f'{PRIMARY_NAME} is not a primary (slave)'
    )
    assert mine.replication['role'] == 'master', 'no loop of replicas: it stays as it is'

    del servers[(PRIMARY_NAME, 6379)]
    gone = live.apply_live(settings(), passwords=['pw'])
    assert gone.waiting == f'{PRIMARY_NAME} is not a primary (not-running)'

    servers[(PRIMARY_NAME, 6379)] = target
    target.replication = {'role': 'master'}
    followed = live.apply_live(settings(), passwords=['pw'])
    assert (followed.changes, followed.waiting) == (('role',), '')
    assert mine.replication['master_host'] == PRIMARY_NAME

    target.refuse['INFO'] = valkey.exceptions.TimeoutError('slow')
    mine.replication = {'role': 'master'}
    assert live.apply_live(settings(), passwords=['pw']).waiting.endswith('(TimeoutError)')


def test_over_tls_the_primary_to_follow_is_checked_over_tls(servers: Servers) -> None:
    over_tls = [client.Tls('the CA')]
    mine = servers[client.LOCAL] = FakeServer(settings(primary=None), role='master')
    target = servers[(PRIMARY_NAME, 6379)] = FakeServer(settings(primary=None), role='master')
    mine.tls_ca = target.tls_ca = 'the CA'

    assert live.read_role((PRIMARY_NAME, 6379), ['pw'], 1.0, over_tls) == 'master'
    assert live.read_role((PRIMARY_NAME, 6379), ['pw'], 1.0) == 'not-running', 'plaintext'
    followed = live.apply_live(settings(), passwords=['pw'], transports=over_tls)
    assert (followed.changes, followed.waiting) == (('role',), '')
    assert mine.replication['master_host'] == PRIMARY_NAME


def pause_hand_over(timeout_ms: int = 5000, target: str = OWN_NAME) -> handover.HandoverResult:
    return handover.hand_over(
        old_primary=OLD, target=(target, 6379), passwords=['pw'], timeout_ms=timeout_ms
    )


def old_and_mine(servers: Servers, *, behind: int = 0) -> tuple[FakeServer, FakeServer]:
    """The old primary at offset 100, and this unit's server ``behind`` bytes behind it."""
    mine = servers[client.LOCAL] = FakeServer(settings())
    mine.replication |= {'slave_repl_offset': 100 - behind}
    old = servers[OLD] = FakeServer(settings(primary=None), role='master')
    old.replication |= {'master_repl_offset': 100}
    return old, mine


def test_fake_pause_handover_demotes_first_then_promotes_then_unpauses(servers: Servers) -> None:
    old, mine = old_and_mine(servers)
    result = pause_hand_over()
    assert result.status == 'switched', result
    assert [args for args in old.sent if args[0] != 'INFO'] == [
        ('CLIENT', 'PAUSE', 5000, 'WRITE'),
        ('REPLICAOF', OWN_NAME, 6379),
        ('CLIENT', 'UNPAUSE'),
    ]
    assert mine.sent[-1] == ('REPLICAOF', 'NO', 'ONE')


def test_fake_pause_handover_that_cannot_catch_up_leaves_the_old_primary_in_charge(
    servers: Servers,
) -> None:
    """No path demotes a primary before its writes reached its replacement."""
    old, mine = old_and_mine(servers, behind=50)
    timed_out = pause_hand_over(timeout_ms=50)
    assert timed_out.status == 'timed-out'
    assert timed_out.reason == 'this unit was 50 bytes behind after 40 ms'
    assert old.replication['role'] == 'master'
    assert mine.replication['role'] == 'slave'
    assert [args for args in old.sent if args[0] != 'INFO'] == [
        ('CLIENT', 'PAUSE', 50, 'WRITE'),
        ('CLIENT', 'UNPAUSE'),
    ]


def test_fake_pause_handover_refusals_unpause_and_change_nothing(servers: Servers) -> None:
    old, mine = old_and_mine(servers)
    wrong = pause_hand_over(target='someone.else')
    assert wrong.reason == 'someone.else:6379 is not this unit: not a replica to hand over to'
    assert old.sent == [('INFO', 'replication')], 'not even paused'
    mine.replication['master_replid'] = 'another history'
    assert pause_hand_over().reason == "this unit's server does not replicate the old primary"
    assert old.sent[-1] == ('CLIENT', 'UNPAUSE')
    mine.replication['master_replid'] = 'history-1'
    old.refuse['CLIENT'] = 'ERR no permission'
    assert pause_hand_over().reason == 'CLIENT PAUSE refused: ERR no permission'
    del old.refuse['CLIENT']
    mine.refuse['REPLICAOF'] = 'ERR refused'
    rolled_back = pause_hand_over()
    assert rolled_back.reason.endswith('rolled back')
    assert old.replication['role'] == 'master'
    assert old.sent[-1] == ('CLIENT', 'UNPAUSE')
    del mine.refuse['REPLICAOF']
    old.refuse['INFO'] = 'ERR pw is not allowed here'  # Valkey may quote an argument back
    refused = pause_hand_over()
    assert refused.status == 'refused'
    assert refused.reason == 'a server refused: ERR *** is not allowed here'


def test_fake_handover_asks_the_primary_that_the_old_primary_follows(servers: Servers) -> None:
    """A leader took the role from the old primary, then lost its lease: ask that one."""
    old, mine = old_and_mine(servers)
    top = servers[('10.0.0.9', 6379)] = FakeServer(settings(primary=None), role='master')
    top.replication |= {'master_repl_offset': 100}
    old.replication = {
        'role': 'slave',
        'master_host': '10.0.0.9',
        'master_port': 6379,
        'master_link_status': 'up',
        'master_replid': 'history-1',
    }
    assert pause_hand_over().status == 'switched'
    assert ('REPLICAOF', OWN_NAME, 6379) in top.sent
    assert not any(args[0] == 'REPLICAOF' for args in old.sent), 'the old one is left alone'
    assert mine.replication['role'] == 'master'

    mine.replication = {'role': 'slave', 'master_replid': 'history-1'}
    top.replication = dict(old.replication) | {'master_host': OLD[0]}  # a loop: no primary
    assert pause_hand_over().reason == 'no primary within 3 servers'
    old.replication['master_link_status'] = 'down'
    assert pause_hand_over().reason == 'the old primary is a replica of nothing up'


# ------------------------------------------------------------ client users

CLIENT_USER = valkey_config.AclUser(
    name='relation-7-req1', password_sha256='a' * 64, key_pattern='app:*'
)


def test_fake_client_users_are_set_and_others_deleted(servers: Servers) -> None:
    server = servers[client.LOCAL] = FakeServer(settings())
    server.users |= {'relation-3-req1'}
    result = live.apply_users((CLIENT_USER,), passwords=['pw'])
    assert result == live.LiveResult(
        'applied', changes=('ACL DELUSER relation-3-req1', 'ACL SETUSER relation-7-req1')
    )
    assert server.users == {'default', 'relation-7-req1'}
    (setuser,) = [c for c in server.sent if c[:2] == ('ACL', 'SETUSER')]
    rules = CLIENT_USER.acl_rules.split()
    assert setuser == ('ACL', 'SETUSER', 'relation-7-req1', 'reset', *rules)


def test_fake_client_users_refused_say_which_without_the_rules(servers: Servers) -> None:
    assert live.apply_users((CLIENT_USER,), passwords=['pw']).status == 'not-running'
    server = servers[client.LOCAL] = FakeServer(settings())
    server.refuse["ACL ('SETUSER',)"] = 'ERR Error in ACL SETUSER modifier'
    result = live.apply_users((CLIENT_USER,), passwords=['pw'])
    assert result == live.LiveResult(
        'refused', reason='ACL SETUSER relation-7-req1 refused: ERR Error in ACL SETUSER modifier'
    )
    assert 'a' * 64 not in result.reason
    server.refuse["ACL ('USERS',)"] = 'NOPERM'
    assert live.apply_users((), passwords=['pw']).reason == 'ACL USERS refused: NOPERM'
    server.refuse["ACL ('USERS',)"] = valkey.exceptions.ConnectionError('gone')
    assert live.apply_users((), passwords=['pw']).status == 'refused'
