# Copyright 2026 The valkey-leader-k8s authors
# See LICENSE file for licensing details.

"""Apply a unit's settings to its running Valkey, live: no restart, no dropped client.

No Juju here: the charm decides *what* a unit should be (a
``ValkeySettings``, the same value it renders the file from) and
:mod:`workload.container` calls this module to bring the running server there.
Every function returns a result that says what it did, or why it could not;
nothing raises for a server that is down, slow, refusing the password or
refusing a command. A result with ``restart_needed`` tells the caller to
restart the service on the file it just pushed (``reason`` never holds a
password).

What one call covers: ``config-changed`` (options), ``rotate-password`` and
``secret-changed`` (the password), a follower following the published
primary (``REPLICAOF``, once that server says it is a primary), and the
leader's server taking the primary role once the leader chose it
(:mod:`workload.primary_choice`, which hands over from a live primary first).
"""

from __future__ import annotations

import dataclasses
import hmac
import typing
from collections.abc import Mapping, Sequence
from typing import Final, Literal

from workload import client
from workload.client import Address, Resolve, same_host
from workload.config import MIN_REPLICAS_MAX_LAG, User, ValkeySettings, maxmemory_bytes

LIVE_OPTIONS: Final = (
    # masterauth before requirepass: see apply_live's docstring. CONFIG SET with
    # several pairs applies them all or none, but the order is the one to read.
    'masterauth',
    'requirepass',
    'loglevel',
    'maxmemory',
    'maxmemory-policy',
    'replica-announce-ip',
    'min-replicas-to-write',
    'min-replicas-max-lag',
    # TLS: the files first (setting them loads and checks them, so a refused
    # certificate changes nothing), then the listening port, released before
    # it is taken again (see _ports_in_order).
    'tls-cert-file',
    'tls-key-file',
    'tls-ca-cert-file',
    'tls-auth-clients',
    'tls-replication',
    'port',
    'tls-port',
)
"""The settings of the file that Valkey can change at run time, all applied live."""
_SECRET_OPTIONS: Final = frozenset({'masterauth', 'requirepass'})

LiveStatus = Literal['unchanged', 'applied', 'not-running', 'auth-refused', 'refused']


@dataclasses.dataclass(frozen=True)
class LiveResult:
    """What ``apply_live`` did to the running server."""

    status: LiveStatus
    """``unchanged``/``applied``: the server now runs the desired settings.
    Anything else: it could not be done live (see ``reason``); restart instead."""
    changes: tuple[str, ...] = ()
    """The settings changed, by Valkey's name (and ``role``), in the order applied."""
    reason: str = ''
    """Why a live apply was impossible; never holds a password."""
    waiting: str = ''
    """Why the file's role was not taken: a primary to follow that is not one
    (yet), or a promotion nobody allowed. Empty when it was, or did not change."""

    @property
    def restart_needed(self) -> bool:
        """Whether the caller must restart the server to get the desired settings."""
        return self.status not in ('unchanged', 'applied')


@dataclasses.dataclass(frozen=True)
class Plan:
    """The commands that bring a server from what it runs to what is desired."""

    config: dict[str, str] = dataclasses.field(repr=False)
    """``CONFIG SET`` pairs, in ``LIVE_OPTIONS`` order (the password among them: not in repr)."""
    role: tuple[str, ...] | None
    """``('NO', 'ONE')`` or ``(host, port)`` for ``REPLICAOF``, or ``None``: no role change."""
    reconnect: bool
    """Drop the link to the primary once, so that the replica reconnects: to announce
    its new name, or to speak TLS (or plaintext) to its primary from now on."""

    @property
    def changes(self) -> tuple[str, ...]:
        """The names of what the plan changes, in the order it does it."""
        role = ('role',) if self.role is not None else ()
        return (*self.config, *role)


def desired_options(
    settings: ValkeySettings, resolve: Resolve, port: int = client.PORT
) -> dict[str, str]:
    """What ``CONFIG GET`` answers on a server started from the file of ``settings``.

    ``port`` is the port the charm reaches the server on: it stays the
    listening port, and speaks TLS or plaintext as ``settings.tls`` says.
    """
    announce = resolve(settings.announce_host)[0] if settings.announce_host else ''
    if settings.tls is not None:
        tls = {
            'tls-cert-file': settings.tls.cert_file,
            'tls-key-file': settings.tls.key_file,
            'tls-ca-cert-file': settings.tls.ca_file,
            'tls-auth-clients': 'no',
            'tls-replication': 'yes',
            'port': '0',
            'tls-port': str(port),
        }
    else:
        # The file names no TLS files: the running server's are left as they are.
        tls = {'tls-replication': 'no', 'port': str(port), 'tls-port': '0'}
    return {
        'masterauth': settings.password,
        'requirepass': settings.password,
        'loglevel': settings.log_level,
        # CONFIG GET answers maxmemory in bytes; the file may say "100mb".
        'maxmemory': str(maxmemory_bytes(settings.maxmemory or '0')),
        'maxmemory-policy': settings.maxmemory_policy,
        'replica-announce-ip': announce,
        **tls,
        'min-replicas-to-write': str(settings.min_replicas_to_write),
        'min-replicas-max-lag': str(MIN_REPLICAS_MAX_LAG),
    }


def plan(
    settings: ValkeySettings,
    current: Mapping[str, str],
    replication: Mapping[str, object],
    resolve: Resolve = same_host,
    port: int = client.PORT,
) -> Plan:
    """Only the differences between the running server and ``settings``.

    Args:
        settings: what the unit's file says.
        current: ``CONFIG GET`` of ``LIVE_OPTIONS`` on the running server.
        replication: its ``INFO replication``.
        resolve: maps the primary's stable DNS name to the address to replicate from.
        port: the port the server is reached on (see :func:`desired_options`).
    """
    wanted = desired_options(settings, resolve, port)
    # No announce_host: the file has no replica-announce-ip line, and the
    # running server's is left as it is. Likewise the TLS files without TLS.
    managed = [
        name
        for name in LIVE_OPTIONS
        if name in wanted and (settings.announce_host or name != 'replica-announce-ip')
    ]
    config = _ports_in_order(
        {
            name: wanted[name]
            for name in managed
            if not hmac.compare_digest(current.get(name, '').encode(), wanted[name].encode())
        }
    )
    role: tuple[str, ...] | None = None
    is_primary = replication.get('role') == 'master'
    if settings.primary_address is None:
        if not is_primary:
            role = ('NO', 'ONE')
    else:
        host, port = resolve(settings.primary_address)
        following = (
            not is_primary
            and str(replication.get('master_host')) == host
            and str(replication.get('master_port')) == str(port)
        )
        if not following:
            role = (host, str(port))
    # A connected replica told its primary its old name, and speaks what it
    # spoke when it connected; it changes both only when it connects again.
    # A new REPLICAOF connects anyway.
    relink = {'replica-announce-ip', 'tls-replication'} & config.keys()
    reconnect = bool(relink) and role is None and not is_primary
    return Plan(config=config, role=role, reconnect=reconnect)


def _ports_in_order(config: dict[str, str]) -> dict[str, str]:
    """The pairs with the port being released (set to 0) before the one taking its number.

    Valkey applies the pairs of one ``CONFIG SET`` in order, and binds a
    listener as it applies it: ``tls-port 6379`` before ``port 0`` finds the
    port still taken and fails (then restores every pair: nothing changes).
    """
    ports = [name for name in ('port', 'tls-port') if name in config]
    ports.sort(key=lambda name: config[name] != '0')
    return {**{n: v for n, v in config.items() if n not in ports}, **{n: config[n] for n in ports}}


def apply_live(
    settings: ValkeySettings,
    *,
    passwords: Sequence[str],
    address: Address = client.LOCAL,
    resolve: Resolve = same_host,
    timeout: float = client.TIMEOUT,
    transports: Sequence[client.Transport] = client.PLAINTEXT,
    may_promote: bool = False,
) -> LiveResult:
    """Bring the running server at ``address`` to ``settings``, without a restart.

    Connects with the first of ``passwords`` the server accepts: pass the
    desired password first, then the one in the file the server was last
    started from or set to (``requirepass_from_config`` of the file
    before this hook pushed the new one). Reads ``CONFIG GET`` and ``INFO
    replication`` in one round trip; if they match, that is all it does
    (``unchanged``). Otherwise it sends, in one pipeline, one ``CONFIG SET``
    of every differing option, then ``REPLICAOF`` if the role or the primary
    differs.

    The role is the leader's decision, made before this call, never this
    function's: it promotes the server (``REPLICAOF NO ONE``) only with
    ``may_promote`` (the leader chose this unit's server), and it makes the
    server follow another one only once that one says it is a primary:
    following a replica could close a loop of replicas in which no server
    accepts writes. A role left as it is is said in ``LiveResult.waiting``;
    the other settings are applied anyway.

    The password change, and why replication never needs a restart for it:

    * Valkey checks a password when a connection authenticates, not after: a
      ``CONFIG SET requirepass`` leaves every open connection authenticated,
      the replicas' replication links included. So a primary that rotates
      keeps streaming to replicas that still hold the old password.
    * The leader rotates first (it writes the new secret revision, in the
      same hook applies it to its own server), the replicas after, when
      ``relation-changed`` tells them. This is the only order Juju allows
      (followers cannot know a password before the leader publishes it), and
      the right one: a replica's ``masterauth`` must be what its primary
      *has*, and from the leader's hook on, the primary has the new one.
    * Each unit sets ``masterauth`` and ``requirepass`` in one ``CONFIG SET``
      (all or nothing). ``masterauth`` is on the primary too, so that a
      demoted leader can authenticate to its successor.
    * The one window: if a replica's link drops after the primary rotated and
      before the replica's own hook, the replica's reconnections are refused
      until that hook sets the new ``masterauth``; then it resumes with a
      partial resync (its data and replication offset were kept). Nothing is
      restarted and no acknowledged write is lost.
    * A role change that needs a new password (a follower of a new leader
      after a rotation) sets ``masterauth`` before ``REPLICAOF``, in the same
      pipeline, so the first connection to the new primary authenticates.

    Returns:
        ``unchanged`` or ``applied`` (with the settings changed), or why it
        could not be done live: ``not-running`` (nothing answers at
        ``address``), ``auth-refused`` (no password was accepted),
        ``refused`` (the server refused a command, or stopped answering).
    """
    import valkey.exceptions  # noqa: PLC0415 - lazy: see the module docstring

    try:
        with client.authenticated(address, passwords, timeout, transports) as connected:
            if isinstance(connected, client.NoConnection):
                return LiveResult(connected.status, reason=connected.reason)
            pipe = connected.pipeline(transaction=False)
            pipe.execute_command('CONFIG', 'GET', *LIVE_OPTIONS)
            pipe.execute_command('INFO', 'replication')
            config_reply, info_reply = pipe.execute()
            replication = client.info(info_reply)
            current = client.pairs(config_reply)
            todo = plan(settings, current, replication, resolve, port=address[1])
            waiting = _role_held_back(todo, may_promote, passwords, transports)
            if waiting:
                todo = dataclasses.replace(todo, role=None)
            if not todo.changes:
                return LiveResult('unchanged', waiting=waiting)
            return dataclasses.replace(_execute(connected, todo, passwords), waiting=waiting)
    except valkey.exceptions.ResponseError as e:
        reason = f'reading the settings refused: {client.scrub(str(e), passwords)}'
        return LiveResult('refused', reason=reason)
    except (valkey.exceptions.ConnectionError, valkey.exceptions.TimeoutError) as e:
        return LiveResult('refused', reason=f'the server stopped answering ({type(e).__name__})')


def _role_held_back(
    todo: Plan,
    may_promote: bool,
    passwords: Sequence[str],
    transports: Sequence[client.Transport],
) -> str:
    """Why the role change ``todo`` plans must wait, or ``''``."""
    if todo.role is None:
        return ''
    if todo.role == ('NO', 'ONE'):
        return '' if may_promote else 'only the leader promotes a server'
    host, port = todo.role[0], int(todo.role[1])
    role = read_role((host, port), passwords, client.PEER_CONNECT_TIMEOUT, transports)
    if role != 'master':
        return f'{host} is not a primary ({role})'
    return ''


def read_role(
    address: Address,
    passwords: Sequence[str],
    timeout: float,
    transports: Sequence[client.Transport] = client.PLAINTEXT,
) -> str:
    """``master`` or ``slave``, or why the server at ``address`` did not say.

    ``transports``: as for this unit's own server. While TLS is on the other
    unit's port speaks TLS only: a plaintext attempt would read it as not running.
    """
    import valkey.exceptions  # noqa: PLC0415 - lazy: see the module docstring

    try:
        with client.authenticated(address, passwords, timeout, transports) as connected:
            if isinstance(connected, client.NoConnection):
                return connected.status
            replication = client.info(connected.execute_command('INFO', 'replication'))
            return str(replication.get('role'))
    except valkey.exceptions.ValkeyError as e:
        return type(e).__name__


def apply_users(
    users: Sequence[User],
    *,
    passwords: Sequence[str],
    address: Address = client.LOCAL,
    timeout: float = client.TIMEOUT,
    transports: Sequence[client.Transport] = client.PLAINTEXT,
) -> LiveResult:
    """Make the running server's client users exactly ``users``, without a restart.

    Valkey does not replicate users, and reads ``user`` lines only when it
    starts: each unit sets its own, live. Every user in ``users`` is set
    afresh (``ACL SETUSER <name> reset <its rules>``: only the password's
    SHA-256 travels), and every other user but ``default`` is deleted, which
    also closes its connections. Call it when the file's users changed.
    """
    import valkey.exceptions  # noqa: PLC0415 - lazy: see the module docstring

    try:
        with client.authenticated(address, passwords, timeout, transports) as connected:
            if isinstance(connected, client.NoConnection):
                return LiveResult(connected.status, reason=connected.reason)
            names = typing.cast('list[object]', connected.execute_command('ACL', 'USERS'))
            obsolete = sorted({str(n) for n in names} - {'default'} - {u.name for u in users})
            commands = [
                *(('ACL', 'DELUSER', name) for name in obsolete),
                *(('ACL', 'SETUSER', u.name, 'reset', *u.acl_rules.split()) for u in users),
            ]
            pipe = connected.pipeline(transaction=False)
            for command in commands:
                pipe.execute_command(*command)
            for command, reply in zip(commands, pipe.execute(raise_on_error=False), strict=True):
                if isinstance(reply, Exception):
                    # Named without its rules: they hold the password's hash.
                    what, detail = ' '.join(command[:3]), client.scrub(str(reply), passwords)
                    return LiveResult('refused', reason=f'{what} refused: {detail}')
            return LiveResult('applied', changes=tuple(' '.join(c[:3]) for c in commands))
    except valkey.exceptions.ResponseError as e:
        return LiveResult(
            'refused', reason=f'ACL USERS refused: {client.scrub(str(e), passwords)}'
        )
    except (valkey.exceptions.ConnectionError, valkey.exceptions.TimeoutError) as e:
        return LiveResult('refused', reason=f'the server stopped answering ({type(e).__name__})')


def _execute(connection: client.Client, todo: Plan, passwords: Sequence[str]) -> LiveResult:
    pipe = connection.pipeline(transaction=False)
    if todo.config:
        pipe.execute_command('CONFIG', 'SET', *(x for pair in todo.config.items() for x in pair))
    if todo.role is not None:
        pipe.execute_command('REPLICAOF', *todo.role)
    if todo.reconnect:
        pipe.execute_command('CLIENT', 'KILL', 'TYPE', 'master')
    replies = pipe.execute(raise_on_error=False)
    commands = [
        *(['CONFIG SET ' + ' '.join(todo.config)] if todo.config else []),
        *([f'REPLICAOF {" ".join(todo.role)}'] if todo.role is not None else []),
        *(['CLIENT KILL TYPE master'] if todo.reconnect else []),
    ]
    for command, reply in zip(commands, replies, strict=True):
        # Any error counts: a server still loading its dataset answers
        # REPLICAOF with LOADING, which valkey-py raises as a ConnectionError.
        if isinstance(reply, Exception):
            secret = command.startswith('CONFIG') and bool(_SECRET_OPTIONS & todo.config.keys())
            # Valkey may quote a refused value back: never the password's.
            detail = 'a refused value' if secret else client.scrub(str(reply), passwords)
            return LiveResult('refused', reason=f'{command} refused: {detail}')
    return LiveResult('applied', changes=todo.changes)
