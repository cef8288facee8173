# Copyright 2026 The valkey-leader-k8s authors
# See LICENSE file for licensing details.

"""Who should be the primary: the leader decides, from what the servers say now.

Pure logic over :class:`ServerState` values (what each unit's server answered
to ``INFO replication`` in this hook): no Juju, no network. The leader calls
:func:`choose` on every hook, and the answer is never a server with less data
than another one that could take the role:

* A server becomes primary only when a live primary handed over to it (it then
  holds every write that primary acknowledged), or when no primary is alive,
  most servers answered (:func:`quorum`), and it is at least as far along as
  every server that answered (the same
  replication history, ``master_replid``, and an offset at least as large:
  https://valkey.io/topics/replication/, "How Valkey replication works").
* While the leader's own server cannot take over (still in its first sync,
  behind, refusing, not answering), the primary that is alive stays in charge:
  the decision names it and says why, and the leader publishes it as the
  acting primary.
* Two servers accepting writes, or a loop of replicas with no primary at the
  top, is repaired: one primary is kept (or promoted), the others follow it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Final, Literal

Action = Literal['keep', 'hand-over', 'promote', 'wait']

STALE_LINK_SECONDS: Final = 20
"""How long a replica may go without hearing from its primary and still vouch for it.

A link says ``up`` until ``repl-timeout`` (60 s by default) after its primary
vanished behind a partition. What the replica last heard is fresher: a primary
pings its replicas every ``repl-ping-replica-period`` (10 s by default;
valkey.conf), and one that no replica acknowledged for ``min-replicas-max-lag``
(10 s here) already refuses writes. After both, a primary that neither the
leader nor any replica hears from takes no more writes, and may be replaced.
"""


@dataclasses.dataclass(frozen=True, kw_only=True)
class ServerState:
    """One unit's server, as ``INFO replication`` described it in this hook."""

    unit: str
    answered: bool
    """It accepted a connection and the password, and answered."""
    why_not: str = ''
    """Why it did not answer (no connection, refused the password); never a password."""
    refused_password: bool = False
    """It accepted the connection but not the leader's password: it is alive."""
    primary: bool = False
    """``role:master``: it accepts writes."""
    follows: str | None = None
    """The unit whose server it replicates from (``None``: a primary, or not a unit's)."""
    link_up: bool = False
    """``master_link_status:up``: it streams its primary's writes."""
    last_heard: int = 0
    """``master_last_io_seconds_ago``: seconds since its primary last sent it anything."""
    syncing: bool = False
    """A full synchronisation is in progress (``master_sync_in_progress:1``) or it is
    loading its dataset: what it holds is not a copy of anything yet."""
    history: str = ''
    """``master_replid``: the replication history its data belongs to."""
    previous_history: str = ''
    """``master_replid2``: the history it continued when it was promoted."""
    previous_history_until: int = 0
    """``second_repl_offset``: the first offset that is not part of ``previous_history``."""
    offset: int = 0
    """``master_repl_offset``: how far along its history its data is."""


@dataclasses.dataclass(frozen=True)
class Decision:
    """Which server should accept writes, and what the leader does about it in this hook."""

    action: Action
    """``keep``: ``primary`` stays as it is. ``hand-over``: ask ``primary`` to hand the
    role over to the leader's server (if it cannot, ``primary`` stays). ``promote``: no
    primary is alive, make ``primary`` one. ``wait``: nobody can be promoted safely now."""
    primary: str | None
    """The unit whose server accepts writes after this hook (``None`` with ``wait``)."""
    reason: str = ''
    """Why the leader's server is not (or not yet) the primary; empty when it is."""
    demote: tuple[str, ...] = ()
    """Other units whose servers accept writes too, to be made replicas of ``primary``."""


def choose(
    leader: str, servers: Mapping[str, ServerState], published: str | None = None
) -> Decision:
    """What the leader should do so that exactly one server, the right one, is primary.

    Args:
        leader: the leader's unit name.
        servers: every unit's server (the leader's too), by unit name.
        published: the unit published as primary until now, if any.
    """
    answered = [s for s in servers.values() if s.answered]
    primaries = [s for s in answered if s.primary]
    # A server that did not answer us, but that a replica streams from: it is
    # alive and probably a primary (it refused our password, or the network between
    # us and it is down). Nothing may be promoted over it.
    hidden = sorted(
        {
            s.follows
            for s in answered
            if s.follows is not None and _vouches_for(s, servers.get(s.follows, _GONE))
        }
    )
    if len(primaries) > 1:
        return _one_of_two(leader, primaries, published)
    if hidden:
        alive = primaries[0].unit if primaries else hidden[0]
        why = servers[hidden[0]].why_not if hidden[0] in servers else ''
        reason = f'{hidden[0]} is alive but does not answer the leader ({why or "no answer"})'
        if alive == leader:
            reason = ''
        return Decision('keep', alive, reason)
    if primaries:
        return _from_live_primary(leader, primaries[0], servers)
    return _without_primary(leader, answered, published, len(servers))


_GONE = ServerState(unit='', answered=False, why_not='not a unit of this application')


def _vouches_for(replica: ServerState, upstream: ServerState) -> bool:
    """Whether ``replica`` proves that ``upstream``, which the leader cannot read, is alive."""
    if upstream.answered or not replica.link_up:
        return False
    return upstream.refused_password or replica.last_heard <= STALE_LINK_SECONDS


def _from_live_primary(
    leader: str, primary: ServerState, servers: Mapping[str, ServerState]
) -> Decision:
    """One primary is alive: it stays, unless it can hand over to the leader's server now."""
    if primary.unit == leader:
        return Decision('keep', leader)
    mine = servers.get(leader, _GONE)
    if not mine.answered:
        why = mine.why_not or 'no answer'
        return Decision('keep', primary.unit, f"the leader's server does not answer ({why})")
    if mine.syncing:
        return Decision('keep', primary.unit, f'the leader is still syncing from {primary.unit}')
    if not _streams_from(mine, primary.unit, servers):
        return Decision('keep', primary.unit, f'the leader is not replicating {primary.unit} yet')
    return Decision('hand-over', primary.unit)


def _streams_from(server: ServerState, primary: str, servers: Mapping[str, ServerState]) -> bool:
    """Whether ``server`` gets ``primary``'s writes, directly or through replicas, links up.

    A replica of a replica has the same history: a handover can wait for its offset.
    """
    seen = {server.unit}
    while server.link_up and not server.syncing and server.follows is not None:
        if server.follows == primary:
            return True
        upstream = servers.get(server.follows)
        if upstream is None or upstream.unit in seen:
            return False
        seen.add(upstream.unit)
        server = upstream
    return False


def _one_of_two(leader: str, primaries: list[ServerState], published: str | None) -> Decision:
    """Two or more servers accept writes: keep the one clients were sent to, demote the others.

    Writes that reached a demoted server only are lost when it resynchronises:
    they were not sent through ``<app>-primary``, which selects the published one.
    """
    names = [s.unit for s in primaries]
    if published in names:
        keeper = published
    elif leader in names:
        keeper = leader
    else:
        keeper = max(primaries, key=lambda s: (s.offset, s.unit)).unit
    others = tuple(sorted(n for n in names if n != keeper))
    reason = '' if keeper == leader else f'{keeper} was the primary clients were sent to'
    return Decision('keep', keeper, reason, demote=others)


def _without_primary(
    leader: str, answered: list[ServerState], published: str | None, units: int
) -> Decision:
    """No primary is alive: promote a server that holds at least what every other one holds.

    Only when most servers answered: those that did not may hold newer writes,
    or follow a primary the leader cannot see (a partition, or TLS turned on
    while the leader has no certificate yet).
    """
    if not answered:
        return Decision('wait', None, 'no server answers')
    if len(answered) < quorum(units):
        return Decision(
            'wait',
            None,
            f'no primary answers, and only {len(answered)} of {units} servers do: '
            'the others may have newer writes',
        )
    ready = [s for s in answered if not s.syncing]
    best = [s for s in ready if all(at_least_as_far(s, other) for other in answered)]
    if not best:
        return Decision(
            'wait',
            None,
            'no primary is alive, and no server is provably as far along as the others',
        )
    names = [s.unit for s in best]
    if all(s.offset == 0 for s in best) and leader not in names:
        # Nothing written anywhere yet (a fresh deployment, before the leader's server
        # started): nobody has data to protect, and the leader's server takes the role.
        return Decision('wait', None, "no server holds data yet; waiting for the leader's")
    if leader in names:
        chosen = leader
    elif published in names:
        chosen = published
    else:
        chosen = max(best, key=lambda s: (s.offset, s.unit)).unit
    reason = '' if chosen == leader else _why_not_leader(leader, answered, chosen)
    return Decision('promote', chosen, reason)


def quorum(units: int) -> int:
    """How many servers must answer before one is promoted with no primary alive.

    A majority, so that the servers that did not answer cannot hold a primary
    with replicas of its own. Two units cannot have a majority without both:
    there one suffices, and ``min-replicas-to-write`` bounds what a primary cut
    off from its only replica accepts.
    """
    return units // 2 + 1 if units > 2 else 1


def _why_not_leader(leader: str, answered: Iterable[ServerState], chosen: str) -> str:
    mine = next((s for s in answered if s.unit == leader), None)
    if mine is None:
        return f"the leader's server does not answer; {chosen} has the latest writes"
    if mine.syncing:
        return f"the leader's server is still syncing; {chosen} has the latest writes"
    return f"the leader's server is behind {chosen}"


def at_least_as_far(a: ServerState, b: ServerState) -> bool:
    """Whether ``a`` holds every write ``b`` holds, as far as replication offsets prove it.

    Offsets compare only within one history (``master_replid``). A server
    promoted from a history (its ``master_replid2``) holds that history up to
    ``second_repl_offset - 1``. An empty server (offset 0) holds nothing.
    """
    if b.offset == 0:
        return True
    if a.history == b.history:
        return a.offset >= b.offset
    if a.previous_history and a.previous_history == b.history:
        return b.offset <= a.previous_history_until - 1
    return False


def successor(leader: str, servers: Mapping[str, ServerState]) -> str | None:
    """The replica to hand the primary role to when the leader's server goes away.

    A server that streams the leader's server's writes directly (link up, not
    syncing): the live handover can wait for its offset. The most up to date
    of those; among equals the lowest-numbered unit, the last one a refresh
    restarts and a scale-down removes (both go from the highest number down).
    ``None`` when no replica can take over: the leader's server keeps the role.
    """
    ready = [
        s
        for s in servers.values()
        if s.unit != leader and s.answered and s.link_up and not s.syncing and s.follows == leader
    ]
    if not ready:
        return None
    return min(ready, key=lambda s: (-s.offset, _ordinal(s.unit), s.unit)).unit


def _ordinal(unit: str) -> int:
    number = unit.rpartition('/')[2]
    return int(number) if number.isdigit() else 0
