# Copyright 2026 The valkey-leader-k8s authors
# See LICENSE file for licensing details.

"""What every unit's server says about replication now, read by the leader in one go.

No Juju here. The leader reads each server once per hook: one connection per
server, and one pipelined round trip on it (``INFO replication`` and ``INFO
persistence``), all servers at once. A server under a saturating writer answers
slowly; asking each one question per round trip, one server after the other,
would multiply that. What each answered becomes an :class:`election.ServerState`
for :func:`workload.election.choose`; the leader then changes roles with :func:`set_role`.

While TLS is on, every server's port speaks TLS only: each connection here uses
it, and checks the certificate against this unit's CA. A plaintext one would read
every server as not answering.

The fields read are Valkey's (https://valkey.io/commands/info/): ``role``,
``master_host``/``master_port``, ``master_link_status``,
``master_last_io_seconds_ago``, ``master_sync_in_progress``,
``master_replid``/``master_replid2``,
``master_repl_offset``, ``second_repl_offset``, and ``loading``.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Mapping, Sequence

from workload import client
from workload.client import Address, Resolve
from workload.election import ServerState


def survey(
    units: Mapping[str, str],
    *,
    this_unit: str,
    passwords: Sequence[str],
    resolve: Resolve,
    local: Address,
    timeout: float = client.PEER_CONNECT_TIMEOUT,
    transports: Sequence[client.Transport] = client.PLAINTEXT,
) -> dict[str, ServerState]:
    """Every unit's server as it answers now, by unit name.

    Args:
        units: each unit's stable DNS name, this unit's too.
        this_unit: this unit's name: its server is reached at ``local``.
        passwords: the passwords to try on every server, in order.
        resolve: maps a DNS name to the address Valkey replicates from.
        local: this unit's own server.
        timeout: how long a server has to connect and answer.
        transports: how to reach every server, in order: while TLS is on,
            each one's port speaks TLS only, checked against this unit's CA.
    """
    reached = {unit: local if unit == this_unit else resolve(name) for unit, name in units.items()}
    # A replica names its primary by the address it was told to replicate from.
    by_address = {resolve(name): unit for unit, name in units.items()}
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(units))) as pool:
        answers = {
            unit: pool.submit(
                _read, unit, address, passwords, timeout, by_address, transports=transports
            )
            for unit, address in reached.items()
        }
        return {unit: answer.result() for unit, answer in answers.items()}


def _read(
    unit: str,
    address: Address,
    passwords: Sequence[str],
    timeout: float,
    by_address: Mapping[Address, str],
    *,
    transports: Sequence[client.Transport],
) -> ServerState:
    import valkey.exceptions  # noqa: PLC0415 - lazy: most hooks never survey

    try:
        with client.authenticated(address, passwords, timeout, transports) as connected:
            if isinstance(connected, client.NoConnection):
                auth = connected.status == 'auth-refused'
                why = 'refused the password' if auth else connected.reason
                return ServerState(unit=unit, answered=False, why_not=why, refused_password=auth)
            pipe = connected.pipeline(transaction=False)
            pipe.execute_command('INFO', 'replication')
            pipe.execute_command('INFO', 'persistence')
            replication, persistence = (client.info(reply) for reply in pipe.execute())
    except valkey.exceptions.ValkeyError as e:
        return ServerState(unit=unit, answered=False, why_not=f'{type(e).__name__}')
    return state_of(unit, replication, persistence, by_address)


def state_of(
    unit: str,
    replication: Mapping[str, object],
    persistence: Mapping[str, object],
    by_address: Mapping[Address, str],
) -> ServerState:
    """A server's ``INFO replication`` and ``INFO persistence``, as the election reads them."""
    primary = replication.get('role') == 'master'
    follows = None
    if not primary and 'master_host' in replication:
        follows = by_address.get(client.primary_of(replication))
    return ServerState(
        unit=unit,
        answered=True,
        primary=primary,
        follows=follows,
        link_up=not primary and replication.get('master_link_status') == 'up',
        last_heard=_int(replication, 'master_last_io_seconds_ago'),
        syncing=_flag(replication, 'master_sync_in_progress') or _flag(persistence, 'loading'),
        history=str(replication.get('master_replid', '')),
        previous_history=_previous(replication),
        previous_history_until=_int(replication, 'second_repl_offset'),
        offset=_int(replication, 'master_repl_offset'),
    )


def set_role(
    address: Address,
    role: tuple[str, ...],
    *,
    passwords: Sequence[str],
    timeout: float,
    transports: Sequence[client.Transport] = client.PLAINTEXT,
) -> str | None:
    """``REPLICAOF`` on another unit's server: ``('NO', 'ONE')`` or ``(host, port)``.

    ``transports`` as for :func:`survey`. Returns ``None`` once done, or why it
    could not be done (never a password).
    """
    import valkey.exceptions  # noqa: PLC0415

    try:
        with client.authenticated(address, passwords, timeout, transports) as connected:
            if isinstance(connected, client.NoConnection):
                return connected.reason
            connected.execute_command('REPLICAOF', *role)
    except valkey.exceptions.ValkeyError as e:
        return f'REPLICAOF refused ({type(e).__name__})'
    return None


_NO_HISTORY = '0' * 40
"""What ``master_replid2`` says when a server never continued another history."""


def _previous(replication: Mapping[str, object]) -> str:
    previous = str(replication.get('master_replid2', ''))
    return '' if previous == _NO_HISTORY else previous


def _flag(info: Mapping[str, object], name: str) -> bool:
    return str(info.get(name, '0')) == '1'


def _int(info: Mapping[str, object], name: str) -> int:
    try:
        return int(str(info.get(name, 0)))
    except ValueError:
        return 0
