# Copyright 2026 The valkey-leader-k8s authors
# See LICENSE file for licensing details.

"""Move the primary role from a live old primary to this unit's server, losing no write.

Called by :func:`workload.primary_choice.settle` when the leader chose its own
server and the primary is alive: it may still take writes (Juju moved the
lease; the old leader's pod lives on). It never demotes the old primary before
every write it acknowledged reached this unit's server. No Juju here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Sequence
from typing import Final, Literal

from workload import client

HANDOVER_TIMEOUT_MS: Final = 5000
"""How long the old primary's writes may stay paused while this unit catches up.

Well inside the 30 seconds for which Juju guarantees leadership once confirmed."""

HandoverStatus = Literal[
    'switched', 'already-primary', 'unreachable', 'auth-refused', 'refused', 'timed-out'
]


@dataclasses.dataclass(frozen=True)
class HandoverResult:
    """What ``hand_over`` did."""

    status: HandoverStatus
    """``switched``: the old primary handed over and this unit is the primary now.
    ``already-primary``: nothing to do. Anything else (``timed-out``: this
    unit did not catch up within the pause): the old primary was left the
    primary, its writes resumed, and this unit's server is still its replica."""
    reason: str = ''
    """What went wrong, in Valkey's words where it said; never holds a password."""
    seconds: float = 0.0
    """From the call until the result was known."""


MAX_HOPS: Final = 3
"""How far ``hand_over`` follows replicas of replicas to the primary at the top."""


def hand_over(
    *,
    old_primary: client.Address,
    target: client.Address,
    passwords: Sequence[str],
    local: client.Address = client.LOCAL,
    timeout_ms: int = HANDOVER_TIMEOUT_MS,
    connect_timeout: float = client.PEER_CONNECT_TIMEOUT,
    transports: Sequence[client.Transport] = client.PLAINTEXT,
) -> HandoverResult:
    """Ask the old primary to hand the primary role over to this unit's server.

    Pause writes on the old primary, wait until this unit has every byte of
    its replication stream, demote it to a replica of this unit, promote this
    unit (see ``_pause_and_swap``). No write the old primary acknowledged is
    lost; writes sent meanwhile wait, then are refused as on any replica
    (``-READONLY``), so clients retry on the new primary. Valkey's own
    ``FAILOVER TO <target>`` (https://valkey.io/commands/failover/) does the
    same inside the old primary, but switches only when the replica's
    periodic ``REPLCONF ACK`` (sent once a second) reports the offset.

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
            unit catches up.
        connect_timeout: how long the old primary has to answer at all; past
            it the result is ``unreachable`` and nothing changed.
        transports: how to reach the servers, in order (TLS with the unit's CA,
            or plaintext): what this unit's server was started with first.
    """
    import valkey.exceptions  # noqa: PLC0415

    start = time.monotonic()

    def done(status: HandoverStatus, reason: str = '') -> HandoverResult:
        return HandoverResult(status, client.scrub(reason, passwords), time.monotonic() - start)

    try:
        with client.authenticated(local, passwords, client.TIMEOUT, transports) as mine:
            if isinstance(mine, client.NoConnection):
                return done('refused', f"this unit's server: {mine.reason}")
            if client.info(mine.execute_command('INFO', 'replication')).get('role') == 'master':
                return done('already-primary')
            address = old_primary
            for _ in range(MAX_HOPS):
                with client.authenticated(address, passwords, connect_timeout, transports) as old:
                    if isinstance(old, client.NoConnection):
                        if old.status == 'auth-refused':
                            return done('auth-refused', 'the old primary refused the password')
                        reason = f'the old primary did not answer ({old.reason})'
                        return done('unreachable', reason)
                    replication = client.info(old.execute_command('INFO', 'replication'))
                    if replication.get('role') == 'master':
                        return done(*_pause_and_swap(old, mine, target, timeout_ms))
                    if replication.get('master_link_status') != 'up':
                        return done('refused', 'the old primary is a replica of nothing up')
                    address = client.primary_of(replication)
            return done('refused', f'no primary within {MAX_HOPS} servers')
    except valkey.exceptions.ResponseError as e:
        return done('refused', f'a server refused: {e}')
    except (valkey.exceptions.ConnectionError, valkey.exceptions.TimeoutError) as e:
        return done('unreachable', f'a server stopped answering ({type(e).__name__})')


def _announces(mine: client.Client, target: client.Address) -> bool:
    """Whether ``target`` is how this unit's server announces itself.

    Its ``replica-announce-ip``, and the port it listens on: ``tls-port``
    while TLS is on (``port`` is then 0).
    """
    announced = client.pairs(
        mine.execute_command('CONFIG', 'GET', 'replica-announce-ip', 'port', 'tls-port')
    )
    listening = announced.get('port')
    if listening == '0':
        listening = announced.get('tls-port')
    return (announced.get('replica-announce-ip'), listening) == (target[0], str(target[1]))


def _pause_and_swap(
    old: client.Client, mine: client.Client, target: client.Address, timeout_ms: int
) -> tuple[HandoverStatus, str]:
    """``FAILOVER``'s steps, driven from the new leader, without waiting for an ACK.

    Valkey's ``FAILOVER`` switches when the target's *acknowledged* offset
    reaches the primary's, and a replica acknowledges once a second on its
    own. Here the target's offset is read from the target itself:

    0. check that ``target`` is this unit's server, as it announces itself;
    1. ``CLIENT PAUSE <timeout_ms> WRITE`` on the old primary: no write is
       acknowledged from now on (writers wait), and the pause ends by itself
       if this hook dies;
    2. read its ``master_repl_offset``, and check that this unit replicates
       its history (the same ``master_replid``: directly, or through a replica);
    3. wait until this unit's ``slave_repl_offset`` reaches that offset: it
       has every write the old primary acknowledged. If it does not within
       80% of the pause, stop (``timed-out``): the old primary stays the
       primary; it is never demoted before its writes reached this unit;
    4. ``REPLICAOF <target>`` on the old primary: it demotes itself first, so
       that at no moment do two servers accept writes (if this hook dies
       now, there is no primary until the hook is retried, never two);
    5. ``REPLICAOF NO ONE`` here: the new primary accepts writes;
    6. ``CLIENT UNPAUSE``: the waiting writes reach a replica and are
       refused (``-READONLY``), so clients retry on the new primary.

    Any failure before step 4, and a timeout, unpause the old primary and change nothing.
    """
    import valkey.exceptions  # noqa: PLC0415

    # The old primary will replicate from ``target``: it must be this unit's server.
    if not _announces(mine, target):
        host, port = target
        return 'refused', f'{host}:{port} is not this unit: not a replica to hand over to'
    deadline = time.monotonic() + timeout_ms / 1000 * 0.8  # well inside the pause
    try:
        old.execute_command('CLIENT', 'PAUSE', timeout_ms, 'WRITE')
    except valkey.exceptions.ResponseError as e:
        return 'refused', f'CLIENT PAUSE refused: {e}'
    demoted = False
    try:
        replication = client.info(old.execute_command('INFO', 'replication'))
        if replication.get('role') != 'master':
            return 'refused', 'the old primary is not a primary any more'
        history = replication.get('master_replid')
        if (
            client.info(mine.execute_command('INFO', 'replication')).get('master_replid')
            != history
        ):
            return 'refused', "this unit's server does not replicate the old primary"
        offset = int(str(replication['master_repl_offset']))
        behind = 0
        while True:
            mine_now = client.info(mine.execute_command('INFO', 'replication'))
            behind = offset - int(str(mine_now.get('slave_repl_offset', -1)))
            if behind <= 0 or time.monotonic() > deadline:
                break
            time.sleep(0.0005)
        if behind > 0:
            waited = f'{timeout_ms * 0.8:.0f} ms'
            return 'timed-out', f'this unit was {behind} bytes behind after {waited}'
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
    return 'switched', ''
