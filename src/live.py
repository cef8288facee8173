# Copyright 2026 The valkey-leader-k8s authors
# See LICENSE file for licensing details.

"""Apply a unit's settings to its running Valkey, live, and hand the primary over.

No Juju here: the charm decides *what* a unit should be (a
``workload.ValkeySettings``, the same value it renders the file from) and
calls this module to bring the running server there without a restart.
Every function returns a result that says what it did, or why it could not;
nothing raises for a server that is down, slow, refusing the password or
refusing a command. A caller that gets a result with ``restart_needed`` falls
back to what the charm did before: restart the service on the file it just
pushed, and log ``result.reason`` (which never holds a password).

The channel is TCP to the pod's loopback address. The charm container and the
workload container are containers of one pod, and "every container in a Pod
shares the network namespace, including the IP address and network ports.
Inside a Pod (and only then), the containers that belong to the Pod can
communicate with one another using localhost"
(https://kubernetes.io/docs/concepts/workloads/pods/#pod-networking). So the
charm reaches Valkey on ``127.0.0.1:6379`` with the maintained client
``valkey`` (valkey-py), and the password travels only inside the AUTH command,
never in a process's arguments or environment (which ``pebble exec
valkey-cli -a ...`` would need). Addresses are parameters, so that tests can
run each unit's server on its own loopback port.

The ``valkey`` package is imported inside the functions: most hooks never
call this module, and Juju starts a new Python process for every hook.

How the charm calls it, in its one reconcile path:

* Every unit, every event, after rendering: read the password in the file it
  is about to replace (``workload.requirepass_from_config``), push the new
  file, then, if the push changed the file and the service need not start
  anyway (it is running, the Pebble plan is not new),
  ``apply_live(settings, passwords=[new, previous])``. On
  ``restart_needed``, log ``reason`` and restart, as before. Only when the
  file changed (and on ``leader-elected`` and ``upgrade-charm``, see below):
  a server started from the file already runs it, and
  importing ``valkey`` costs a hook about 70 ms (a process importing ops and
  valkey: 240 ms, ops alone: 168 ms, on the machine of docs/benchmark.md),
  which every ``update-status`` would otherwise pay. This one call
  covers ``config-changed`` (options), ``rotate-password`` and
  ``secret-changed`` (the password: the leader in its own hook, the others
  on ``valkey-peers-relation-changed``), and a follower following a new
  leader (``REPLICAOF``).
* A new leader (its file says primary, its server replicates from the old
  primary): the same ``apply_live``, after the charm checked ``is_leader()``
  again. The server's link to its primary is up, so the old primary is
  alive: ``hand_over`` from it (``master_host``/``master_port`` of ``INFO
  replication``: no peer data needed) to this unit as the old primary lists
  it (its ``replica-announce-ip``, the stable DNS name in the file). The
  charm's ``method='pause'`` meets issue 10's targets (a few ms,
  docs/benchmark.md); ``'failover'`` (Valkey's own ``FAILOVER``) waits up to
  a second for the replica's periodic ACK. Whatever the outcome, the
  promotion follows (``REPLICAOF NO ONE``). On ``leader-elected`` and
  ``upgrade-charm`` the charm runs ``apply_live`` even when the file did not
  change: a leader that lost its lease right after a handover may have taken
  the role from this unit.
* The demoted unit's own hook later: its file says replica; after a
  handover its server already follows the new primary (``unchanged``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hmac
import time
import typing
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from typing import Final, Literal, Protocol

import workload
from charm_config import maxmemory_bytes

Address = tuple[str, int]
"""``(host, port)`` of a Valkey server as this process reaches it."""
Resolve = Callable[[str], Address]
"""Maps a unit's stable DNS name to the ``(host, port)`` Valkey should use for it."""

LOCAL: Final[Address] = ('127.0.0.1', workload.PORT)
"""This unit's Valkey, seen from the charm container: the pod's loopback address."""
TIMEOUT: Final = 2.0
"""Seconds to wait for the local server to connect or answer."""
PEER_CONNECT_TIMEOUT: Final = 1.0
"""Seconds to wait for another unit's server (the old primary) before giving up on it."""
HANDOVER_TIMEOUT_MS: Final = 5000
"""How long the old primary's writes may stay paused while this unit catches up.

Well inside the 30 seconds for which Juju guarantees leadership once confirmed."""

LIVE_OPTIONS: Final = (
    # masterauth before requirepass: see apply_live's docstring. CONFIG SET with
    # several pairs applies them all or none, but the order is the one to read.
    'masterauth',
    'requirepass',
    'loglevel',
    'maxmemory',
    'maxmemory-policy',
    'replica-announce-ip',
)
"""The settings of the file that Valkey can change at run time, all applied live."""
_SECRET_OPTIONS: Final = frozenset({'masterauth', 'requirepass'})

LiveStatus = Literal['unchanged', 'applied', 'not-running', 'auth-refused', 'refused']
HandoverMethod = Literal['failover', 'pause']
HandoverStatus = Literal[
    'switched', 'forced', 'already-primary', 'unreachable', 'auth-refused', 'refused', 'timed-out'
]


def same_host(host: str) -> Address:
    """The production mapping: a stable DNS name is used as is, on Valkey's port."""
    return (host, workload.PORT)


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
    handover: HandoverResult | None = None
    """How the old primary handed over, when this apply promoted the server."""

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
    reannounce: bool
    """Drop the link to the primary once, so that the replica announces its new name."""

    @property
    def changes(self) -> tuple[str, ...]:
        """The names of what the plan changes, in the order it does it."""
        role = ('role',) if self.role is not None else ()
        return (*self.config, *role)


def desired_options(settings: workload.ValkeySettings, resolve: Resolve) -> dict[str, str]:
    """What ``CONFIG GET`` answers on a server started from the file of ``settings``."""
    announce = resolve(settings.announce_host)[0] if settings.announce_host else ''
    return {
        'masterauth': settings.password,
        'requirepass': settings.password,
        'loglevel': settings.log_level,
        # CONFIG GET answers maxmemory in bytes; the file may say "100mb".
        'maxmemory': str(maxmemory_bytes(settings.maxmemory or '0')),
        'maxmemory-policy': settings.maxmemory_policy,
        'replica-announce-ip': announce,
    }


def plan(
    settings: workload.ValkeySettings,
    current: Mapping[str, str],
    replication: Mapping[str, object],
    resolve: Resolve = same_host,
) -> Plan:
    """Only the differences between the running server and ``settings``.

    Args:
        settings: what the unit's file says.
        current: ``CONFIG GET`` of ``LIVE_OPTIONS`` on the running server.
        replication: its ``INFO replication``.
        resolve: maps the primary's stable DNS name to the address to replicate from.
    """
    wanted = desired_options(settings, resolve)
    # No announce_host: the file has no replica-announce-ip line, and the
    # running server's is left as it is.
    managed = [n for n in LIVE_OPTIONS if settings.announce_host or n != 'replica-announce-ip']
    config = {
        name: wanted[name]
        for name in managed
        if not hmac.compare_digest(current.get(name, '').encode(), wanted[name].encode())
    }
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
    # A connected replica told its primary its old name; it tells the new one
    # only when it connects again. A new REPLICAOF connects anyway.
    reannounce = 'replica-announce-ip' in config and role is None and not is_primary
    return Plan(config=config, role=role, reannounce=reannounce)


def apply_live(
    settings: workload.ValkeySettings,
    *,
    passwords: Sequence[str],
    address: Address = LOCAL,
    resolve: Resolve = same_host,
    timeout: float = TIMEOUT,
) -> LiveResult:
    """Bring the running server at ``address`` to ``settings``, without a restart.

    Connects with the first of ``passwords`` the server accepts: pass the
    desired password first, then the one in the file the server was last
    started from or set to (``workload.requirepass_from_config`` of the file
    before this hook pushed the new one). Reads ``CONFIG GET`` and ``INFO
    replication`` in one round trip; if they match, that is all it does
    (``unchanged``). Otherwise it sends, in one pipeline, one ``CONFIG SET``
    of every differing option, then ``REPLICAOF`` if the role or the primary
    differs.

    A promotion (``REPLICAOF NO ONE``) of a server whose link to its primary
    is up starts with ``hand_over`` from that primary: it may still take
    writes (Juju moved the lease, the old leader's pod lives on). Whatever the
    handover's outcome (in ``LiveResult.handover``), the server is then
    promoted (a no-op after ``switched`` or ``forced``): if the old primary
    did not answer within a second, refused, or refused the password, as
    after a crash.

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
        with _authenticated(address, passwords, timeout) as connected:
            if isinstance(connected, LiveResult):
                return connected
            pipe = connected.pipeline(transaction=False)
            pipe.execute_command('CONFIG', 'GET', *LIVE_OPTIONS)
            pipe.execute_command('INFO', 'replication')
            config_reply, info_reply = pipe.execute()
            replication = _info(info_reply)
            todo = plan(settings, _pairs(config_reply), replication, resolve)
            if not todo.changes:
                return LiveResult('unchanged')
            handover = None
            linked = replication.get('master_link_status') == 'up'
            if todo.role == ('NO', 'ONE') and linked and settings.announce_host:
                # Its primary still answers: it may hold writes this server has not
                # received yet. It hands over first; then REPLICAOF NO ONE is a no-op.
                handover = hand_over(
                    old_primary=_primary_of(replication),
                    target=resolve(settings.announce_host),
                    passwords=passwords,
                    local=address,
                )
            return dataclasses.replace(_execute(connected, todo, passwords), handover=handover)
    except valkey.exceptions.ResponseError as e:
        reason = f'reading the settings refused: {_scrub(str(e), passwords)}'
        return LiveResult('refused', reason=reason)
    except (valkey.exceptions.ConnectionError, valkey.exceptions.TimeoutError) as e:
        return LiveResult('refused', reason=f'the server stopped answering ({type(e).__name__})')


def apply_users(
    users: Sequence[workload.AclUser],
    *,
    passwords: Sequence[str],
    address: Address = LOCAL,
    timeout: float = TIMEOUT,
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
        with _authenticated(address, passwords, timeout) as connected:
            if isinstance(connected, LiveResult):
                return connected
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
                    what, detail = ' '.join(command[:3]), _scrub(str(reply), passwords)
                    return LiveResult('refused', reason=f'{what} refused: {detail}')
            return LiveResult('applied', changes=tuple(' '.join(c[:3]) for c in commands))
    except valkey.exceptions.ResponseError as e:
        return LiveResult('refused', reason=f'ACL USERS refused: {_scrub(str(e), passwords)}')
    except (valkey.exceptions.ConnectionError, valkey.exceptions.TimeoutError) as e:
        return LiveResult('refused', reason=f'the server stopped answering ({type(e).__name__})')


def _execute(client: _Client, todo: Plan, passwords: Sequence[str]) -> LiveResult:
    pipe = client.pipeline(transaction=False)
    if todo.config:
        pipe.execute_command('CONFIG', 'SET', *(x for pair in todo.config.items() for x in pair))
    if todo.role is not None:
        pipe.execute_command('REPLICAOF', *todo.role)
    if todo.reannounce:
        pipe.execute_command('CLIENT', 'KILL', 'TYPE', 'master')
    replies = pipe.execute(raise_on_error=False)
    commands = [
        *(['CONFIG SET ' + ' '.join(todo.config)] if todo.config else []),
        *([f'REPLICAOF {" ".join(todo.role)}'] if todo.role is not None else []),
        *(['CLIENT KILL TYPE master'] if todo.reannounce else []),
    ]
    for command, reply in zip(commands, replies, strict=True):
        # Any error counts: a server still loading its dataset answers
        # REPLICAOF with LOADING, which valkey-py raises as a ConnectionError.
        if isinstance(reply, Exception):
            secret = command.startswith('CONFIG') and bool(_SECRET_OPTIONS & todo.config.keys())
            # Valkey may quote a refused value back: never the password's.
            detail = 'a refused value' if secret else _scrub(str(reply), passwords)
            return LiveResult('refused', reason=f'{command} refused: {detail}')
    return LiveResult('applied', changes=todo.changes)


@dataclasses.dataclass(frozen=True)
class HandoverResult:
    """What ``hand_over`` did; the caller promotes this unit's server whatever it is."""

    status: HandoverStatus
    """``switched``: the old primary handed over and this unit is the primary now.
    ``forced``: this unit did not catch up within the bound, and the old
    primary was demoted anyway, so that two servers never take writes: the
    writes it acknowledged in the gap are lost. ``already-primary``: nothing
    to do. Anything else: the old primary was left as it was, and the caller
    promotes with ``REPLICAOF NO ONE``; two servers take writes until the old
    one's own hook demotes it."""
    reason: str = ''
    """What went wrong, in Valkey's words where it said; never holds a password."""
    seconds: float = 0.0
    """From the call until the result was known."""


MAX_HOPS: Final = 3
"""How far ``hand_over`` follows replicas of replicas to the primary at the top."""


def hand_over(
    *,
    old_primary: Address,
    target: Address,
    passwords: Sequence[str],
    local: Address = LOCAL,
    timeout_ms: int = HANDOVER_TIMEOUT_MS,
    connect_timeout: float = PEER_CONNECT_TIMEOUT,
    method: HandoverMethod = 'pause',
) -> HandoverResult:
    """Ask the old primary to hand the primary role over to this unit's server.

    The charm's way (``method='pause'``, see ``_pause_and_swap``): pause writes
    on the old primary, wait until this unit has every byte of its replication
    stream, demote it to a replica of this unit, promote this unit. No write
    the old primary acknowledged is lost; writes sent meanwhile wait, then are
    refused as on any replica (``-READONLY``), so clients retry on the new
    primary. Valkey's own ``FAILOVER TO <target> TIMEOUT <ms>``
    (https://valkey.io/commands/failover/, ``method='failover'``) does the
    same inside the old primary, but waits for the replica's once-a-second
    ``REPLCONF ACK``: up to a second (docs/benchmark.md).

    If the server at ``old_primary`` is itself a replica (a leader took the
    role from it, then lost its lease before saying so), the primary it
    follows is asked instead, up to ``MAX_HOPS`` servers away.

    Args:
        old_primary: the server this unit's server replicates from.
        target: this unit as the old primary knows it: its announced name
            (``replica-announce-ip``, the stable DNS name in the file) and port.
        passwords: the passwords to try, on every server, in order (the
            desired one, then the one in the file this unit's server started from).
        local: this unit's own server.
        timeout_ms: how long the old primary's writes may stay paused while this
            unit catches up (``pause``), or how long ``FAILOVER`` may take.
        connect_timeout: how long the old primary has to answer at all; past
            it the result is ``unreachable`` and the caller promotes directly.
        method: ``pause`` (the charm's) or ``failover`` (Valkey's ``FAILOVER``).
    """
    import valkey.exceptions  # noqa: PLC0415

    start = time.monotonic()

    def done(status: HandoverStatus, reason: str = '') -> HandoverResult:
        return HandoverResult(status, _scrub(reason, passwords), time.monotonic() - start)

    try:
        with _authenticated(local, passwords, TIMEOUT) as mine:
            if isinstance(mine, LiveResult):
                return done('refused', f"this unit's server: {mine.reason}")
            if _info(mine.execute_command('INFO', 'replication')).get('role') == 'master':
                return done('already-primary')
            address = old_primary
            for _ in range(MAX_HOPS):
                with _authenticated(address, passwords, connect_timeout) as old:
                    if isinstance(old, LiveResult):
                        if old.status == 'auth-refused':
                            return done('auth-refused', 'the old primary refused the password')
                        reason = f'the old primary did not answer ({old.reason})'
                        return done('unreachable', reason)
                    replication = _info(old.execute_command('INFO', 'replication'))
                    if replication.get('role') == 'master':
                        if method == 'pause':
                            return done(*_pause_and_swap(old, mine, target, timeout_ms))
                        return done(*_failover(old, mine, target, timeout_ms))
                    if replication.get('master_link_status') != 'up':
                        return done('refused', 'the old primary is a replica of nothing up')
                    address = _primary_of(replication)
            return done('refused', f'no primary within {MAX_HOPS} servers')
    except valkey.exceptions.ResponseError as e:
        return done('refused', f'a server refused: {e}')
    except (valkey.exceptions.ConnectionError, valkey.exceptions.TimeoutError) as e:
        return done('unreachable', f'a server stopped answering ({type(e).__name__})')


def _failover(
    old: _Client, mine: _Client, target: Address, timeout_ms: int
) -> tuple[HandoverStatus, str]:
    """Valkey's ``FAILOVER TO``; then wait for this unit to report ``role:master``."""
    import valkey.exceptions  # noqa: PLC0415

    try:
        old.execute_command('FAILOVER', 'TO', target[0], target[1], 'TIMEOUT', timeout_ms)
    except valkey.exceptions.ResponseError as e:
        return 'refused', f'FAILOVER refused: {e}'
    deadline = time.monotonic() + timeout_ms / 1000 + 1.0
    while time.monotonic() < deadline:
        if _info(mine.execute_command('INFO', 'replication')).get('role') == 'master':
            return 'switched', ''
        time.sleep(0.002)
    # Already over if the old primary gave up by itself.
    with contextlib.suppress(valkey.exceptions.ValkeyError):
        old.execute_command('FAILOVER', 'ABORT')
    return 'timed-out', f'no switch within {timeout_ms} ms; aborted'


def _pause_and_swap(
    old: _Client, mine: _Client, target: Address, timeout_ms: int
) -> tuple[HandoverStatus, str]:
    """``FAILOVER``'s steps, driven from the new leader, without waiting for an ACK.

    Valkey's ``FAILOVER`` switches when the target's *acknowledged* offset
    reaches the primary's, and a replica acknowledges once a second on its
    own; so it takes up to a second (docs/benchmark.md). Here the target's
    offset is read from the target itself:

    0. check that ``target`` is this unit's server, as it announces itself;
    1. ``CLIENT PAUSE <timeout_ms> WRITE`` on the old primary: no write is
       acknowledged from now on (writers wait), and the pause ends by itself
       if this hook dies;
    2. read its ``master_repl_offset``, and check that this unit replicates
       its history (the same ``master_replid``: directly, or through a replica);
    3. wait until this unit's ``slave_repl_offset`` reaches that offset: it
       has every write the old primary acknowledged. If it does not within
       80% of the pause, go on anyway (``forced``): this unit is the leader,
       and one primary that lost the gap beats two that both take writes;
    4. ``REPLICAOF <target>`` on the old primary: it demotes itself first, so
       that at no moment do two servers accept writes (if this hook dies
       now, there is no primary until the hook is retried, never two);
    5. ``REPLICAOF NO ONE`` here: the new primary accepts writes;
    6. ``CLIENT UNPAUSE``: the waiting writes reach a replica and are
       refused (``-READONLY``), so clients retry on the new primary.

    Any failure before step 4 unpauses the old primary and changes nothing.
    """
    import valkey.exceptions  # noqa: PLC0415

    # The old primary will replicate from ``target``: it must be this unit's
    # server, as it announces itself (its replica-announce-ip and port).
    announced = _pairs(mine.execute_command('CONFIG', 'GET', 'replica-announce-ip', 'port'))
    host, port = target[0], str(target[1])
    if (announced.get('replica-announce-ip'), announced.get('port')) != (host, port):
        return 'refused', f'{host}:{port} is not this unit: not a replica to hand over to'
    deadline = time.monotonic() + timeout_ms / 1000 * 0.8  # well inside the pause
    try:
        old.execute_command('CLIENT', 'PAUSE', timeout_ms, 'WRITE')
    except valkey.exceptions.ResponseError as e:
        return 'refused', f'CLIENT PAUSE refused: {e}'
    demoted = False
    try:
        replication = _info(old.execute_command('INFO', 'replication'))
        if replication.get('role') != 'master':
            return 'refused', 'the old primary is not a primary any more'
        history = replication.get('master_replid')
        if _info(mine.execute_command('INFO', 'replication')).get('master_replid') != history:
            return 'refused', "this unit's server does not replicate the old primary"
        offset = int(str(replication['master_repl_offset']))
        behind = 0
        while True:
            mine_now = _info(mine.execute_command('INFO', 'replication'))
            behind = offset - int(str(mine_now.get('slave_repl_offset', -1)))
            if behind <= 0 or time.monotonic() > deadline:
                break
            time.sleep(0.0005)
        old.execute_command('REPLICAOF', target[0], target[1])
        demoted = True
    except valkey.exceptions.ResponseError as e:
        return 'refused', f'the old primary refused: {e}'
    finally:
        if not demoted:
            with contextlib.suppress(valkey.exceptions.ValkeyError):
                old.execute_command('CLIENT', 'UNPAUSE')
    try:
        mine.execute_command('REPLICAOF', 'NO', 'ONE')
    except valkey.exceptions.ResponseError as e:
        # Undo step 4: the old primary stays the primary, as if nothing happened.
        with contextlib.suppress(valkey.exceptions.ValkeyError):
            old.execute_command('REPLICAOF', 'NO', 'ONE')
        return 'refused', f'this unit refused REPLICAOF NO ONE: {e}; rolled back'
    finally:
        with contextlib.suppress(valkey.exceptions.ValkeyError):
            old.execute_command('CLIENT', 'UNPAUSE')
    if behind > 0:
        lost = f'{behind} bytes of writes the old primary acknowledged are lost'
        return 'forced', f'this unit did not catch up within {timeout_ms * 0.8:.0f} ms; {lost}'
    return 'switched', ''


# ------------------------------------------------------------------ helpers


class _Commands(Protocol):
    """The part of ``valkey.Valkey`` (and of its pipeline) this module uses, typed."""

    def execute_command(self, *args: str | int) -> object: ...


class _Pipeline(_Commands, Protocol):
    def execute(self, raise_on_error: bool = True) -> list[object]: ...


class _Client(_Commands, Protocol):
    def pipeline(self, transaction: bool = True) -> _Pipeline: ...

    def close(self) -> None: ...


@contextlib.contextmanager
def _authenticated(
    address: Address, passwords: Sequence[str], timeout: float
) -> Generator[_Client | LiveResult, None, None]:
    """A connection to ``address`` authenticated with the first accepted password.

    Yields the client, or a ``LiveResult`` saying why there is none
    (``not-running``, ``auth-refused``); closes the client on exit.
    """
    import valkey.exceptions  # noqa: PLC0415

    for password in dict.fromkeys(passwords):
        try:
            # Connects and sends AUTH now (one connection, nothing else: no
            # PING), so that a refused password is told apart here.
            client = _client(address, password, timeout)
        except valkey.exceptions.AuthenticationError:
            continue
        except (valkey.exceptions.ConnectionError, valkey.exceptions.TimeoutError) as e:
            yield LiveResult('not-running', reason=_connection_reason(address, e))
            return
        try:
            yield client
        finally:
            client.close()
        return
    yield LiveResult('auth-refused', reason='the server refused every password it was given')


def _client(address: Address, password: str, timeout: float) -> _Client:
    import valkey  # noqa: PLC0415
    from valkey.backoff import NoBackoff  # noqa: PLC0415
    from valkey.retry import Retry  # noqa: PLC0415

    host, port = address
    # No CLIENT SETINFO after AUTH: two round trips fewer per connection
    # (valkey-py accepts None here; its annotations say str).
    no_setinfo: dict[str, typing.Any] = {'lib_name': None, 'lib_version': None}
    client = valkey.Valkey(
        host=host,
        port=port,
        password=password,
        socket_connect_timeout=timeout,
        socket_timeout=timeout,
        decode_responses=True,
        # One connection, made here, and one attempt: a refused password or a
        # dead server is an answer, not something to retry behind the caller.
        single_connection_client=True,
        retry=Retry(NoBackoff(), 0),
        **no_setinfo,
    )
    return typing.cast('_Client', client)


def _connection_reason(address: Address, error: Exception) -> str:
    kind = 'timed out' if 'timeout' in type(error).__name__.lower() else 'refused'
    return f'no answer from {address[0]}:{address[1]} (connection {kind})'


def _pairs(reply: object) -> dict[str, str]:
    """``CONFIG GET``'s flat list (RESP2) as a dict."""
    if isinstance(reply, dict):
        items = typing.cast('dict[object, object]', reply)
        return {str(k): str(v) for k, v in items.items()}
    flat = [str(x) for x in typing.cast('list[object]', reply)]
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _primary_of(replication: Mapping[str, object]) -> Address:
    """The primary a replica's ``INFO replication`` names."""
    return (str(replication['master_host']), int(str(replication['master_port'])))


def _info(reply: object) -> dict[str, object]:
    return {str(k): v for k, v in typing.cast('dict[object, object]', reply).items()}


def _scrub(text: str, passwords: Iterator[str] | Sequence[str]) -> str:
    for password in passwords:
        if password:
            text = text.replace(password, '***')
    return text
