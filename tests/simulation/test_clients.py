# Copyright 2026 The valkey-leader-k8s authors
# See LICENSE file for licensing details.

"""A client application on three units: its credentials survive a leadership change.

``juju integrate shop valkey-leader-k8s``, in the driver's Juju event order,
with real servers: the client reads what Juju lets it read (the leader's
answer in the relation, the secret granted to it), connects through the
address it was given (``<app>-primary``, which the driver routes to the pod
the Service selects), and may use its own keys only. Then Juju elects another
unit, either while the old leader's pod keeps running or after it was
deleted, and the client's view must be the same and keep working against the
new primary, through the same address. Then ``juju remove-relation``: its user
is gone from every server and its secret from Juju.
"""

from __future__ import annotations

import dataclasses
import json

import pytest
import redis.exceptions

from ..workload import valkey_server
from .driver import Application, ClientCredentials, ClientRelation
from .test_leadership import assert_quiescent, wait_in_sync

PREFIX = 'shop:'


def integrate(app: Application) -> tuple[ClientRelation, ClientCredentials]:
    """Deploy three units, integrate the client ``shop``; return its relation and its view."""
    app.deploy(leader=0)
    app.settle()
    relation = app.integrate_client('shop', resource=f'{PREFIX}*')
    app.settle()
    assert_quiescent(app)
    return relation, app.client_credentials(relation.id)


def public(creds: ClientCredentials) -> dict[str, object]:
    """Everything the client reads but the password."""
    return {k: v for k, v in dataclasses.asdict(creds).items() if k != 'password'}


def refused(port: int, creds: ClientCredentials, *command: str) -> bool:
    """Whether the server on ``port`` refuses the client's command (ACL ``NOPERM``)."""
    with valkey_server.Client(port, creds.password, username=creds.username) as client:
        try:
            client.command(*command)
        except redis.exceptions.NoPermissionError:
            return True
    return False


def assert_client_works(app: Application, creds: ClientCredentials, key: str) -> None:
    """Through the write address: own keys written and read; other keys refused.

    Then on every live unit's own server (the read-only endpoints): the key
    replicated, readable with the client's user, which may not write there
    either outside its prefix (Valkey does not replicate ACL users: each
    server enforces the user its own file gave it).
    """
    wait_in_sync(app)  # with replicas, the primary takes writes once one is in sync
    port = app.resolve(creds.endpoints)
    with valkey_server.Client(port, creds.password, username=creds.username) as client:
        client.set(key, 'basket')
        assert client.get(key) == 'basket'
    assert refused(port, creds, 'SET', 'orders:1', 'x')
    assert refused(port, creds, 'GET', 'orders:1')
    assert refused(port, creds, 'FLUSHALL')
    for endpoint in creds.read_only_endpoints.split(','):
        unit_port = app.resolve(endpoint)

        def replicated(unit_port: int = unit_port) -> bool | None:
            with valkey_server.Client(unit_port, creds.password, username=creds.username) as c:
                return True if c.get(key) == 'basket' else None

        valkey_server.eventually(replicated, timeout=20, what=f'{key} on {endpoint}')
        assert refused(unit_port, creds, 'GET', 'orders:1')


def assert_every_server_knows(app: Application, username: str, *, present: bool) -> None:
    """Whether each live unit's server has the user (``ACL USERS``, as the admin asks)."""
    for unit in app.live_units():
        with unit.server.client(app.password()) as admin:
            users = admin.command('ACL', 'USERS')
        assert isinstance(users, list)
        assert (username in users) is present, f'{unit.name}: {users}'


def test_the_leader_answers_the_client_and_its_user_is_enforced_on_every_unit(
    app: Application,
) -> None:
    relation, creds = integrate(app)

    assert creds.username.startswith(f'relation-{relation.id}')
    assert creds.resource == f'{PREFIX}*'
    host = creds.endpoints.rsplit(':', 1)[0]
    assert host.startswith('valkey-leader-k8s-primary.')  # the Service, not a pod
    assert len(creds.read_only_endpoints.split(',')) == 3
    # The password is in the secret only: not in the relation, not in the peer databag.
    leaked = creds.password in json.dumps([relation.provider_data, app.app_data])
    assert not leaked, 'the password is in a databag'
    assert app.resolve(creds.endpoints) == app.server(0).port
    assert_client_works(app, creds, f'{PREFIX}first')
    assert_every_server_knows(app, creds.username, present=True)


@pytest.mark.parametrize('how', ['lease-moves', 'pod-deleted'])
def test_a_new_leader_keeps_the_clients_credentials_and_address_working(
    app: Application, how: str
) -> None:
    relation, before = integrate(app)
    answer_before = dict(relation.provider_data)
    assert_client_works(app, before, f'{PREFIX}before')

    if how == 'lease-moves':
        # The old leader's pod keeps running (say its agent restarted): Juju elects unit/1.
        app.elect(1)
        app.settle()
    else:
        app.delete_pod(0)
        app.elect(1)
        app.settle()
        app.recreate_pod(0)
        app.settle()
    assert_quiescent(app)

    after = app.client_credentials(relation.id)
    # What the client sees is unchanged: the same user, address, secret revision, password
    # (compared without showing it: a failure prints no password).
    assert public(after) == public(before)
    same_password = after.password == before.password
    assert same_password, 'the new leader changed the password'
    assert relation.provider_data == answer_before
    # The same address now reaches the new leader's server, and the credentials work there.
    assert app.primary_service_selects() == 'valkey-leader-k8s-1'
    assert app.resolve(after.endpoints) == app.server(1).port
    assert_client_works(app, after, f'{PREFIX}after')
    assert_every_server_knows(app, after.username, present=True)
    with valkey_server.Client(app.server(1).port, after.password, username=after.username) as c:
        assert c.get(f'{PREFIX}before') == 'basket'  # written on the old primary


def test_removing_the_relation_removes_the_user_everywhere_and_the_secret(
    app: Application,
) -> None:
    relation, creds = integrate(app)
    app.elect(2)  # served by one leader, removed under another
    app.settle()

    app.remove_client(relation.id)
    app.settle()
    assert_quiescent(app)

    assert relation.id not in app.client_relations
    assert creds.secret_id in app.removed_secrets
    assert creds.secret_id not in app.secrets
    assert_every_server_knows(app, creds.username, present=False)
    port = app.resolve(creds.endpoints)
    with (
        valkey_server.Client(port, creds.password, username=creds.username) as client,
        pytest.raises(redis.exceptions.AuthenticationError),
    ):
        client.ping()
    assert json.loads(app.app_data.get('client-users') or '[]') == []
