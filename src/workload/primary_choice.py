# Copyright 2026 The valkey-leader-k8s authors
# See LICENSE file for licensing details.

"""The leader's choice of primary, carried out: read every server, decide, act.

No Juju here. The charm's leader calls :func:`settle` on every hook with every
unit's stable DNS name; it reads the servers (:func:`workload.survey.survey`), decides
(:func:`workload.election.choose`, pure), then does what the decision says: asks the
live primary to hand over to the leader's server, promotes the server with
every write when no primary is alive, or makes a second primary a replica of
the one kept. Before it changes another unit's server it calls
``before_change``: the charm's check that it still leads.

What it returns is what the leader publishes: the unit whose server accepts
writes after this hook, and, when that is not the leader's, why.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Final

from workload import client, election, handover, survey
from workload.client import Address, Resolve

logger = logging.getLogger(__name__)

CATCH_UP_SECONDS: Final = 10.0
"""How long a leader's hook waits for its restarted server to stream from the acting primary.

A server restarted from its own RDB file continues with a partial resync (the
file carries its replication id and offset: https://valkey.io/topics/replication/,
"Partial sync after restarts and failovers"), which takes the time to load the
file and little more. Past this bound the hook ends, and the leader's next event
takes the role back: the acting primary takes the writes meanwhile. Well inside
the 30 s for which Juju guarantees leadership once confirmed."""


@dataclasses.dataclass(frozen=True)
class Chosen:
    """The server that accepts writes after this hook, as the leader publishes it."""

    unit: str
    """Its unit."""
    reason: str = ''
    """Why it is not the leader's server; empty when it is."""
    changed: tuple[str, ...] = ()
    """What this hook changed, in words (``handed over from ...``), for the log."""


def settle(
    *,
    leader: str,
    units: Mapping[str, str],
    published: str | None,
    passwords: Sequence[str],
    resolve: Resolve,
    local: Address,
    before_change: Callable[[], None],
    transports: Sequence[client.Transport] = client.PLAINTEXT,
) -> Chosen:
    """Make exactly one server, the one with the data, the primary; say which.

    Args:
        leader: this unit, the leader.
        units: every unit's stable DNS name, the leader's too.
        published: the unit published as primary until now, if any.
        passwords: the passwords to try on every server, in order.
        resolve: maps a DNS name to the address Valkey replicates from.
        local: the leader's own server.
        before_change: raises if this unit no longer leads; called right
            before another unit's server is changed.
        transports: how to reach every server, in order (TLS with this unit's
            CA, or plaintext): a server that speaks TLS only must not be read
            as one that does not answer.
    """
    servers = survey.survey(
        units,
        this_unit=leader,
        passwords=passwords,
        resolve=resolve,
        local=local,
        transports=transports,
    )
    decision = election.choose(leader, servers, published)
    primary = decision.primary
    if primary is None:
        # Nobody answers (a fresh deployment, before any server started; or every
        # pod restarting): keep what was published; the leader's own at first.
        return Chosen(published or leader, decision.reason)
    changed: list[str] = []
    for other in decision.demote:
        before_change()
        host, port = resolve(units[primary])
        why = survey.set_role(
            _reach(other, leader, units, resolve, local),
            (host, str(port)),
            passwords=passwords,
            timeout=client.PEER_CONNECT_TIMEOUT,
            transports=transports,
        )
        changed.append(f'{other} made a replica of {primary}' + (f': {why}' if why else ''))
    if decision.action == 'hand-over':
        before_change()
        handed_over = handover.hand_over(
            old_primary=resolve(units[primary]),
            target=resolve(units[leader]),
            passwords=passwords,
            local=local,
            transports=transports,
        )
        if handed_over.status in ('switched', 'already-primary'):
            return Chosen(leader, '', (*changed, f'{primary} handed over'))
        reason = f'{primary} did not hand over ({handed_over.status}: {handed_over.reason})'
        return Chosen(primary, reason, tuple(changed))
    if decision.action == 'promote' and primary != leader:
        before_change()
        why = survey.set_role(
            _reach(primary, leader, units, resolve, local),
            ('NO', 'ONE'),
            passwords=passwords,
            timeout=client.PEER_CONNECT_TIMEOUT,
            transports=transports,
        )
        if why:
            reason = f'could not promote {primary}: {why}'
            return Chosen(published or leader, reason, tuple(changed))
        changed.append(f'promoted {primary}')
    return Chosen(primary, decision.reason, tuple(changed))


def _reach(
    unit: str, leader: str, units: Mapping[str, str], resolve: Resolve, local: Address
) -> Address:
    return local if unit == leader else resolve(units[unit])


def step_down(
    *,
    leader: str,
    units: Mapping[str, str],
    passwords: Sequence[str],
    resolve: Resolve,
    local: Address,
    before_change: Callable[[], None],
    transports: Sequence[client.Transport] = client.PLAINTEXT,
) -> Chosen:
    """Hand the primary role from the leader's server, about to go away, to the best replica.

    The live handover (:func:`workload.handover.hand_over`), driven from the
    old primary's side: its writes pause, the replica catches up, the old
    primary becomes its replica, the replica is promoted. Bounded: one survey
    (``client.PEER_CONNECT_TIMEOUT``) and one pause (``handover.HANDOVER_TIMEOUT_MS``).
    Returns the unit whose server is primary afterwards: the leader's own when
    no replica could take over (the role stays; nothing changed).
    """
    servers = survey.survey(
        units,
        this_unit=leader,
        passwords=passwords,
        resolve=resolve,
        local=local,
        transports=transports,
    )
    target = election.successor(leader, servers)
    if target is None:
        return Chosen(leader, 'no replica is in sync to take over')
    before_change()
    reached = resolve(units[target])
    handed_over = handover.hand_over(
        old_primary=local,
        target=reached,
        passwords=passwords,
        local=reached,
        transports=transports,
    )
    if handed_over.status != 'switched':
        why = f'{target} did not take over ({handed_over.status}: {handed_over.reason})'
        return Chosen(leader, why)
    return Chosen(target, '', (f'handed over to {target}',))


def wait_for_sync(
    local: Address,
    passwords: Sequence[str],
    *,
    seconds: float = CATCH_UP_SECONDS,
    transports: Sequence[client.Transport] = client.PLAINTEXT,
) -> bool:
    """Wait until the server at ``local`` is a replica streaming from its primary.

    ``True`` once its link is up and it neither syncs nor loads; ``False`` at
    once when it is a primary or does not answer, or after ``seconds``.
    """
    import valkey.exceptions  # noqa: PLC0415

    deadline = time.monotonic() + seconds
    try:
        with client.authenticated(local, passwords, client.TIMEOUT, transports) as connected:
            if isinstance(connected, client.NoConnection):
                return False
            while True:
                pipe = connected.pipeline(transaction=False)
                pipe.execute_command('INFO', 'replication')
                pipe.execute_command('INFO', 'persistence')
                replication, persistence = (client.info(reply) for reply in pipe.execute())
                mine = survey.state_of('', replication, persistence, {})
                if mine.primary:
                    return False
                if mine.link_up and not mine.syncing:
                    return True
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.05)
    except valkey.exceptions.ValkeyError:
        # Loading its dataset, it answers LOADING: an error for valkey-py.
        return False
