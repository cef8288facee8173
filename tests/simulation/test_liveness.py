# Copyright 2026 The valkey-leader-k8s authors
# See LICENSE file for licensing details.

"""Leadership is not liveness: the leader's server goes away while its unit keeps the lease.

Each scenario runs the real charm on three units with real servers (loopback
mode: each server on its own port; the pods add nothing to these, whose
faults are processes and hooks, not names or links), a writer through
``<app>-primary`` and a probe of every server's role (``watch.py``). What
must hold: never two servers accepting writes at once; once the hooks
settled, exactly one does, the one ``<app>-primary`` selects; no acknowledged
write lost that a surviving server had. How long writes waited is the
benchmark's to measure (``bench/liveness.py``), never asserted here.
"""

from __future__ import annotations

import time
import typing
from typing import Any

import pytest

from workload import handover

from ..workload import valkey_server
from ..workload.charm_unit import unit_name
from . import driver
from .driver import Application, LeaseExpiry, Pending
from .test_leadership import deploy
from .test_one_primary import leader_primary
from .watch import Watch, assert_one_primary_selected, settle_until, writable_servers


def keys_on(app: Application, unit_id: int) -> set[str]:
    """The writer's keys one server holds now."""
    with valkey_server.Client(app.server(unit_id).port, app.password()) as client:
        found: object = client.command('KEYS', 'watched:*')
    keys = typing.cast('list[object]', found) if isinstance(found, list) else []
    return {str(k) for k in keys}


def test_a_crashed_primary_comes_back_as_a_replica_and_loses_nothing(app: Application) -> None:
    """The leader's server is killed; Pebble does not restart it; the leader's hook does.

    Before this, Pebble restarted it at once from its last RDB snapshot as the
    primary, and both replicas resynchronised from it: every write since the
    snapshot was gone from all three servers.
    """
    deploy(app)

    with Watch(app) as watch:
        time.sleep(0.3)
        app.crash(0)
        # What the replicas had received when the primary died: none of it may be lost.
        had = keys_on(app, 1) | keys_on(app, 2)
        app.settle()
        assert writable_servers(app) in ([unit_name(1)], [unit_name(2)]), 'a replica took over'
        assert app.file_role(0) != 'primary', 'the crashed server came back as a replica'
        settle_until(app, lambda: leader_primary(app))

    assert assert_one_primary_selected(app, watch, lost_at_crash=True) == unit_name(0)
    assert had <= keys_on(app, 0), 'a write a replica had at the crash was lost'
    assert app.errors == []


def test_the_leaders_pod_restarts_within_its_lease_and_hands_over_in_stop(
    app: Application,
) -> None:
    """``kubectl delete pod``: ``stop`` hands the role over; the new pod takes it back."""
    deploy(app)

    with Watch(app) as watch:
        app.delete_pod(0)
        (stop,) = [h for h in app.hooks if h.event == 'stop']
        assert stop.handover is not None
        assert stop.handover.status == 'switched'
        acting = app.primary_service_selects()
        assert acting in ('valkey-leader-k8s-1', 'valkey-leader-k8s-2')
        assert writable_servers(app) == [
            acting.replace('valkey-leader-k8s-', 'valkey-leader-k8s/')
        ]
        app.settle()  # the others follow the acting primary while pod 0 is away
        assert 'acting primary' in str(app.status(1)) + str(app.status(2))
        app.recreate_pod(0)
        settle_until(app, lambda: leader_primary(app))

    assert assert_one_primary_selected(app, watch) == unit_name(0)
    assert app.errors == []


@pytest.mark.parametrize('leader', [0, 1, 2])
def test_juju_refresh_restarts_every_pod_highest_first_and_loses_nothing(
    app: Application, leader: int
) -> None:
    """``juju refresh``: pods 2, 1, 0 in turn, each back before the next goes."""
    deploy(app, leader=leader)

    with Watch(app) as watch:
        for unit_id in (2, 1, 0):
            app.delete_pod(unit_id)
            app.recreate_pod(unit_id)
            settle_until(app, lambda: leader_primary(app))

    assert assert_one_primary_selected(app, watch) == unit_name(leader)
    assert app.errors == []


def test_scale_down_removing_the_leader_hands_over_before_it_goes(app: Application) -> None:
    """``juju scale-application <app> 2`` with unit 2 leading: it leaves, with its lease."""
    deploy(app, leader=2)

    with Watch(app) as watch:
        assert app.scale_down() == 2
        app.settle()
        assert not app.units[2].alive
        (acting,) = writable_servers(app)
        assert app.primary_service_selects() == acting.replace('/', '-')
        # Its lease runs out; Juju elects one of the two left.
        app.elect(0)
        settle_until(app, lambda: leader_primary(app))

    assert assert_one_primary_selected(app, watch) == unit_name(0)
    assert app.errors == []


def test_the_lease_running_out_during_the_stop_handover_leaves_one_primary(
    app: Application,
) -> None:
    """Unit 0's lease runs out once its ``stop`` handed over: it publishes nothing; 1 leads."""
    deploy(app)

    with Watch(app) as watch:
        app.expire_lease(LeaseExpiry(unit_id=0, at_slow_call=1, then=1, points=('valkey',)))
        app.delete_pod(0)
        settle_until(app, lambda: leader_primary(app))
        app.recreate_pod(0)
        settle_until(app, lambda: leader_primary(app))

    assert assert_one_primary_selected(app, watch) == unit_name(1)
    assert app.errors == []


class PodKilledError(Exception):
    """Kubernetes killed the pod (SIGKILL) at the end of its 30 s grace period."""


def test_a_stop_hook_cut_off_after_the_handover_leaves_one_primary(
    app: Application, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The grace period ends right after the handover: nothing published, the Service not moved.

    The hook dies (Juju commits none of its writes); the pod goes; the new pod's
    hooks find the server that took over and publish it, then take the role back.
    """
    deploy(app)
    real_hand_over = driver._HAND_OVER  # pyright: ignore[reportPrivateUsage]

    def handed_over_then_killed(**kwargs: Any) -> handover.HandoverResult:
        result = real_hand_over(**kwargs)
        raise PodKilledError(result.status)

    with Watch(app) as watch:
        monkeypatch.setattr(driver, '_HAND_OVER', handed_over_then_killed)
        app.delete_pod(0)
        monkeypatch.undo()
        assert app.units[0].queue.popleft() == Pending('stop'), 'the stop hook failed'
        assert app.primary_service_selects() == 'valkey-leader-k8s-0', 'nobody moved it'
        app.recreate_pod(0)
        settle_until(app, lambda: leader_primary(app))

    assert assert_one_primary_selected(app, watch) == unit_name(0)
    assert [e for e in app.errors if 'PodKilledError' not in e] == []


def test_the_whole_set_restarting_at_once_ends_with_one_primary(app: Application) -> None:
    """Every pod deleted together (a namespace restarted, a node drained): all come back.

    Unit 0's ``stop`` hands the role to unit 1's server, which takes writes until
    its own pod stops; each server saves its snapshot on SIGTERM, the primary
    once its replicas caught up. Then every pod comes back: no server starts as
    the primary (unit 1's record says it acts, but only the leader may make a
    stopped server primary again); the leader promotes the one with every
    write, and takes the role back once its own server caught up.
    """
    deploy(app)

    with Watch(app) as watch:
        time.sleep(0.3)
        for unit_id in (0, 1, 2):
            app.delete_pod(unit_id)
        for unit_id in (0, 1, 2):
            app.recreate_pod(unit_id)
        settle_until(app, lambda: leader_primary(app))

    assert assert_one_primary_selected(app, watch) == unit_name(0)
    assert app.errors == []
