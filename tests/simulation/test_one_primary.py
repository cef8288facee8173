# Copyright 2026 The valkey-leader-k8s authors
# See LICENSE file for licensing details.

"""One primary, never a worse one: leadership changes that used to leave zero, two or an empty one.

Each scenario runs the real charm on three units with real servers, a writer
through ``<app>-primary`` and a probe of every server's role (``watch.py``),
and asserts what must hold whatever the hooks' order: never two servers
accepting writes at once; once the hooks settled, exactly one does, the one
``<app>-primary`` selects; no acknowledged write lost.
"""

from __future__ import annotations

import shutil
from typing import Any

import pytest
import redis.exceptions

from workload import handover

from ..workload import valkey_server
from ..workload.charm_unit import unit_name
from . import driver
from .driver import Application, LeaseExpiry, Pending
from .test_leadership import BEFORE, deploy
from .watch import Watch, assert_one_primary_selected, settle_until, writable_servers


def leader_primary(app: Application) -> bool:
    leader = app.leader()
    return leader is not None and writable_servers(app) == [leader.name]


def test_leadership_flapping_back_during_a_handover_leaves_one_primary(app: Application) -> None:
    """Unit 0 is elected again while unit 1's handover from it is under way.

    Unit 0's ``leader-elected`` runs first and sees its server still primary.
    Unit 1's hook started while it led: ops cached its leadership, so it goes
    on and its handover demotes unit 0's server; Juju refuses what the hook
    wrote (unit 1 no longer leads) and runs it again. Unit 1 must not follow
    unit 0's server, now a replica of its own, and the leader must notice that
    its server is not the primary any more, on whatever hook it runs next.
    """
    deploy(app)

    with Watch(app) as watch:
        app.elect(1)
        app.units[1].queue.remove(Pending('leader-elected'))
        app.elect(0)
        app.units[0].queue.remove(Pending('leader-elected'))
        app._dispatch(app.units[0], Pending('leader-elected'))  # pyright: ignore[reportPrivateUsage]
        # Unit 1's hook, begun while it led: the lease runs out, unnoticed, once it handed over.
        app.units[1].leader = True
        app.expire_lease(
            LeaseExpiry(unit_id=1, at_slow_call=1, then=0, noticed=False, points=('valkey',))
        )
        app._dispatch(app.units[1], Pending('leader-elected'))  # pyright: ignore[reportPrivateUsage]
        # Juju elected nobody new: unit 0 led all along and gets no second leader-elected.
        while Pending('leader-elected') in app.units[0].queue:
            app.units[0].queue.remove(Pending('leader-elected'))
        settle_until(app, lambda: leader_primary(app))

    assert assert_one_primary_selected(app, watch) == unit_name(0)


def test_two_units_that_both_think_they_lead_never_make_two_primaries(
    app: Application,
) -> None:
    """The primary's pod is gone; unit 1 is elected, its lease runs out unnoticed, unit 2 is."""
    deploy(app)

    with Watch(app) as watch:
        app.delete_pod(0)
        app.expire_lease(LeaseExpiry(unit_id=1, at_slow_call=1, then=2, noticed=False))
        app.elect(1)
        settle_until(app, lambda: leader_primary(app))

    assert assert_one_primary_selected(app, watch) == unit_name(2)
    assert app.errors == []


def test_a_new_leader_in_its_first_sync_leaves_the_data_where_it_is(app: Application) -> None:
    """Unit 2 comes back on empty storage and is elected while the primary still sends it the data.

    Valkey waits ``repl-diskless-sync-delay`` (5 s by default) before a full
    sync: until then unit 2's server holds nothing. It must not be promoted;
    unit 0's server acts as primary, published as such, until unit 2 caught up.
    """
    deploy(app)
    app.delete_pod(2)
    shutil.rmtree(app.units[2].charm.data_dir)
    app.units[2].charm.data_dir.mkdir()
    app.recreate_pod(2)
    app.settle()
    assert app.observe()[2].link != 'up', 'the scenario needs unit 2 still in its first sync'

    with Watch(app) as watch:
        app.elect(2)
        app.settle()
        assert writable_servers(app) == [unit_name(0)], 'the primary with the data stays'
        assert app.primary_service_selects() == 'valkey-leader-k8s-0'
        assert 'acting primary' in app.status(1).message  # pyright: ignore[reportOptionalMemberAccess]
        settle_until(app, lambda: leader_primary(app))

    assert assert_one_primary_selected(app, watch) == unit_name(2)
    with app.server(2).client(app.password()) as client:
        assert all(client.get(k) == v for k, v in BEFORE.items())


def test_an_old_primary_that_refuses_the_new_leaders_password_is_not_overruled(
    app: Application,
) -> None:
    """Unit 0's server refuses the password unit 1 has; unit 1's server still streams from it."""
    deploy(app)
    password = app.password()

    with Watch(app) as watch:
        # Open connections stay authenticated: the writer and the replicas' links go on.
        with app.server(0).client(password) as client:
            client.command('CONFIG', 'SET', 'requirepass', 'not-what-the-leader-knows')
        watch.password = 'not-what-the-leader-knows'
        app.elect(1)
        app.settle()
        assert writable_servers_with(app, 'not-what-the-leader-knows') == [unit_name(0)]
        with app.server(0).client('not-what-the-leader-knows') as client:
            client.command('CONFIG', 'SET', 'requirepass', password)
        watch.password = password
        settle_until(app, lambda: leader_primary(app))

    assert assert_one_primary_selected(app, watch) == unit_name(1)


def writable_servers_with(app: Application, password: str) -> list[str]:
    found: list[str] = []
    for unit in app.live_units():
        for attempt in (password, app.password()):
            try:
                with valkey_server.Client(unit.server.port, attempt) as client:
                    role = client.command('ROLE')
            except redis.exceptions.AuthenticationError:
                continue  # the other password, then
            if isinstance(role, list) and role and role[0] == 'master':
                found.append(unit.name)
            break
    return found


def test_a_target_that_cannot_catch_up_in_time_leaves_the_old_primary_in_charge(
    app: Application, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Unit 1's link is down as the handover starts: it cannot catch up within the pause."""
    deploy(app)
    real = driver._HAND_OVER  # pyright: ignore[reportPrivateUsage]
    outcomes: list[handover.HandoverResult] = []

    def lagging_hand_over(**kwargs: Any) -> handover.HandoverResult:
        # Unit 1's server is cut off from unit 0's (it no longer has the password
        # unit 0's wants) while unit 0's acknowledges more writes.
        with app.server(1).client(app.password()) as client:
            client.command('CONFIG', 'SET', 'masterauth', 'not-the-password')
            client.command('CLIENT', 'KILL', 'TYPE', 'master')
        with app.server(0).client(app.password()) as client:
            for key, value in LAG.items():
                client.set(key, value)
        kwargs['timeout_ms'] = 300
        result = real(**kwargs)
        outcomes.append(result)
        return result

    with Watch(app) as watch:
        monkeypatch.setattr(driver, '_HAND_OVER', lagging_hand_over)
        app.elect(1)
        app.settle()
        monkeypatch.setattr(driver, '_HAND_OVER', real)
        settle_until(app, lambda: leader_primary(app))

    assert outcomes, 'the new leader asked for a handover'
    assert outcomes[0].status == 'timed-out', outcomes[0]
    assert assert_one_primary_selected(app, watch) == unit_name(1)
    with app.server(1).client(app.password()) as client:
        assert all(client.get(k) == v for k, v in LAG.items())


LAG = {f'lag:{i}': 'x' * 1024 for i in range(256)}
