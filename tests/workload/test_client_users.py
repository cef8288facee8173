# Copyright 2026 The valkey-leader-k8s authors
# See LICENSE file for licensing details.

"""A client relation's user, as real servers enforce it from the files the charm wrote.

The leader answers a client (``valkey-client``) with a username and a password
in a secret; every unit writes the user into its own file, because Valkey does
not replicate users. Here the client's credentials meet real ``valkey-server``
processes: what its user may do works, everything else is refused, and the
admin password keeps working.
"""

from __future__ import annotations

import dataclasses
import json

import pytest
import redis.exceptions
from ops import testing

from . import valkey_server
from .charm_unit import (
    PEER_RELATION_ID,
    CharmUnit,
    app_password,
    follower_state,
    is_active,
    leader_state,
    peer_relation,
)
from .conftest import StartServer
from .valkey_server import ValkeyServer

CLIENT_RELATION_ID = 20


def client_relation() -> testing.Relation:
    """A client application, ``shop``, asking for its keys under ``shop:``."""
    request = {'resource': 'shop:*', 'request-id': 'r1', 'salt': 'salt'}
    return testing.Relation(
        'valkey-client',
        id=CLIENT_RELATION_ID,
        remote_app_name='shop',
        remote_app_data={'version': 'v1', 'requests': json.dumps([request])},
    )


def with_client(state: testing.State, leader_out: testing.State | None = None) -> testing.State:
    """``state`` with the client relation: as the leader left it (its answer), or new."""
    relation = leader_out.get_relation(CLIENT_RELATION_ID) if leader_out else client_relation()
    return dataclasses.replace(state, relations={*state.relations, relation})


def serve_client(unit: CharmUnit, peers: tuple[int, ...] = (0, 1)) -> testing.State:
    """The leader's hooks: leader-elected, then the client's relation-changed."""
    elected = with_client(leader_state(unit, peers=peers))
    state = unit.ctx.run(unit.ctx.on.leader_elected(), elected)
    relation = state.get_relation(CLIENT_RELATION_ID)
    out = unit.ctx.run(unit.ctx.on.relation_changed(relation, remote_unit=0), state)
    assert is_active(out), out.unit_status
    return out


def client_credentials(state: testing.State) -> tuple[str, str]:
    """What the client application reads from the secret its answer points at."""
    relation = state.get_relation(CLIENT_RELATION_ID)
    (answer,) = json.loads(relation.local_app_data['requests'])
    (secret,) = [s for s in state.secrets if s.id == answer['secret-user']]
    content = secret.latest_content or {}
    return content['username'], content['password']


def refused(server: ValkeyServer, username: str, password: str, *command: str) -> bool:
    with server.client(password, username=username) as client:
        try:
            client.command(*command)
        except redis.exceptions.NoPermissionError:
            return True
    return False


def test_a_clients_user_may_use_its_own_keys_and_nothing_else(
    leader_unit: CharmUnit, start_server: StartServer
) -> None:
    out = serve_client(leader_unit, peers=(0,))  # one unit: no replica to wait for
    username, password = client_credentials(out)
    server = start_server(leader_unit)

    with server.client(password, username=username) as client:
        client.set('shop:basket:1', 'apples')
        assert client.get('shop:basket:1') == 'apples'
        assert client.ping()
    for command in (
        ('SET', 'orders:1', 'x'),  # another prefix
        ('GET', 'orders:1'),
        ('PUBLISH', 'orders', 'x'),  # another channel
        ('FLUSHALL',),  # @dangerous
        ('KEYS', '*'),
        ('CONFIG', 'GET', 'requirepass'),  # @admin
        ('REPLICAOF', 'NO', 'ONE'),
        ('EVAL', 'return 1', '0'),  # @scripting
    ):
        assert refused(server, username, password, *command), command
    # A wrong password for the user is refused; the admin password still works.
    with (
        server.client('not-' + password, username=username) as client,
        pytest.raises(redis.exceptions.AuthenticationError),
    ):
        client.ping()
    with server.client(app_password(out)) as admin:
        admin.set('orders:1', 'written by the admin')
        assert admin.get('shop:basket:1') == 'apples'


def test_a_replica_enforces_the_same_user(
    leader_unit: CharmUnit, follower_unit: CharmUnit, start_server: StartServer
) -> None:
    leader_out = serve_client(leader_unit)
    username, password = client_credentials(leader_out)
    state = with_client(follower_state(follower_unit, leader_out), leader_out)
    peers = state.get_relation(PEER_RELATION_ID)
    follower_out = follower_unit.ctx.run(
        follower_unit.ctx.on.relation_changed(peers, remote_unit=0), state
    )
    assert is_active(follower_out), follower_out.unit_status

    primary = start_server(leader_unit)
    replica = start_server(follower_unit, replicaof=primary.port)  # masterauth still works
    valkey_server.wait_in_sync(replica, app_password(leader_out))
    with primary.client(password, username=username) as client:
        client.set('shop:stock', '12')
    assert (
        valkey_server.eventually(
            lambda: read_as(replica, username, password, 'shop:stock'), timeout=20
        )
        == '12'
    )
    assert refused(replica, username, password, 'GET', 'orders:1')
    with (
        replica.client(password, username=username) as client,
        pytest.raises(redis.exceptions.ReadOnlyError),
    ):
        client.set('shop:stock', '11')


def read_as(server: ValkeyServer, username: str, password: str, key: str) -> str | None:
    try:
        with server.client(password, username=username) as client:
            return client.get(key)
    except redis.exceptions.RedisError:
        return None


def test_the_same_credentials_write_through_a_new_primary(
    leader_unit: CharmUnit, follower_unit: CharmUnit, start_server: StartServer
) -> None:
    old = serve_client(leader_unit)
    credentials = client_credentials(old)
    # Unit 0 is gone (scaled down) and unit 1 is elected: it reads what its
    # predecessor published, the client's answer and secret included, and, alone,
    # writes its file as the primary (no other server's data to wait for).
    state = with_client(follower_state(follower_unit, old), old)
    alone = peer_relation(1, old.get_relation(PEER_RELATION_ID).local_app_data, [1])
    others = {r for r in state.relations if r.endpoint != 'valkey-peers'}
    state = dataclasses.replace(state, leader=True, relations={*others, alone})
    new = follower_unit.ctx.run(follower_unit.ctx.on.leader_elected(), state)
    assert is_active(new), new.unit_status
    assert client_credentials(new) == credentials

    username, password = credentials
    new_primary = start_server(follower_unit)
    # Unit 0 is still in the application: the new primary takes writes once it follows.
    valkey_server.wait_in_sync(
        start_server(leader_unit, replicaof=new_primary.port), app_password(new)
    )
    with new_primary.client(password, username=username) as client:
        client.set('shop:after-failover', 'yes')
        assert client.get('shop:after-failover') == 'yes'


def test_removing_the_relation_removes_the_user(
    leader_unit: CharmUnit, start_server: StartServer
) -> None:
    out = serve_client(leader_unit)
    username, password = client_credentials(out)
    server = start_server(leader_unit)
    with server.client(password, username=username) as client:
        assert client.ping()

    leader_unit.ctx.run(
        leader_unit.ctx.on.relation_broken(out.get_relation(CLIENT_RELATION_ID)), out
    )
    server.restart()  # the charm restarts Valkey on its new file
    with (
        server.client(password, username=username) as client,
        pytest.raises(redis.exceptions.AuthenticationError),
    ):
        client.ping()
