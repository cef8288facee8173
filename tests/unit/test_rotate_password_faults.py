# Copyright 2026 The valkey-leader-k8s authors
# See LICENSE file for licensing details.

"""``rotate-password`` tells the truth in every fault a unit test can make.

What the other units are told is what the peer databag says: the leader
publishes the new revision there, and that write is what wakes them up. So
the action's answer is checked against the databag and the secret the hook
left behind: published means the action succeeded; not published means it
failed and says so; a secret left unchanged means "not rotated".
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import ops
import pytest
from ops import testing

from charm import ValkeyLeaderCharm

from ..fake_kubernetes import FakeKubernetes
from .conftest import (
    Lease,
    UnitFilesystem,
    leader_state,
    make_container,
    password_secret,
    peer_app_data,
)

Ctx = testing.Context[ValkeyLeaderCharm]


@dataclasses.dataclass(frozen=True)
class Answer:
    """What the action said, and what the hook really left behind."""

    succeeded: bool
    text: str
    """The result on success, the failure message otherwise."""
    published_revision: str
    rotated: bool


def rotate(ctx: Ctx, state: testing.State) -> Answer:
    before = password_secret(state).latest_content
    try:
        out = ctx.run(ctx.on.action('rotate-password'), state)
    except testing.ActionFailed as failure:
        out = failure.state if isinstance(failure.state, testing.State) else state
        succeeded, text = False, failure.message
    else:
        succeeded, text = True, (ctx.action_results or {})['result']
    return Answer(
        succeeded=succeeded,
        text=str(text),
        published_revision=peer_app_data(out)['password-revision'],
        rotated=password_secret(out).latest_content != before,
    )


@dataclasses.dataclass(frozen=True)
class Fault:
    """Set up one fault: given the deployed leader's state, return the action's input state."""

    name: str
    make: Callable[[testing.State, pytest.MonkeyPatch, Lease, FakeKubernetes], testing.State]


def _no_fault(state: testing.State, *_: object) -> testing.State:
    return state


def _pebble_not_ready(state: testing.State, *_: object) -> testing.State:
    container = dataclasses.replace(state.get_container('valkey'), can_connect=False)
    return dataclasses.replace(state, containers={container})


def _pebble_refuses_the_push(
    state: testing.State, monkeypatch: pytest.MonkeyPatch, *_: object
) -> testing.State:
    def refuse(*_: object, **__: object) -> None:
        raise ops.pebble.APIError({}, 500, 'Internal Server Error', 'disk full')

    monkeypatch.setattr(ops.Container, 'push', refuse)
    return state


def _kubernetes_fails(
    state: testing.State, _: pytest.MonkeyPatch, __: Lease, kubernetes: FakeKubernetes
) -> testing.State:
    kubernetes.fail_with = 500
    # The Service was applied at deployment: only a new leader, or a failed
    # apply, makes the leader call Kubernetes again. This leader lost it.
    return dataclasses.replace(state, stored_states=set())


def _kubernetes_forbids(
    state: testing.State, _: pytest.MonkeyPatch, __: Lease, kubernetes: FakeKubernetes
) -> testing.State:
    kubernetes.fail_with = 403
    return dataclasses.replace(state, stored_states=set())


def _juju_refuses_the_secret_write(
    state: testing.State, monkeypatch: pytest.MonkeyPatch, *_: object
) -> testing.State:
    def refuse(*_: object, **__: object) -> None:
        raise ops.ModelError('ERROR permission denied')

    monkeypatch.setattr(ops.Secret, 'set_content', refuse)
    return state


def _lease_runs_out_before_the_secret_write(
    state: testing.State, _: pytest.MonkeyPatch, lease: Lease, *__: object
) -> testing.State:
    lease.run_out_after(1)  # the action's own check
    return state


def _lease_runs_out_after_the_secret_write(
    state: testing.State, monkeypatch: pytest.MonkeyPatch, lease: Lease, *_: object
) -> testing.State:
    write = ops.Secret.set_content

    def slow_write(secret: ops.Secret, content: dict[str, str]) -> None:
        write(secret, content)
        lease.run_out()  # Juju moved leadership while the secret was written

    monkeypatch.setattr(ops.Secret, 'set_content', slow_write)
    return state


def _juju_refuses_the_peer_databag_write(
    state: testing.State, monkeypatch: pytest.MonkeyPatch, *_: object
) -> testing.State:
    def refuse(*_: object, **__: object) -> None:
        raise ops.ModelError('ERROR permission denied')

    monkeypatch.setattr(ops.Relation, 'save', refuse)
    return state


FAULTS = [
    Fault('none', _no_fault),
    Fault("the leader's Pebble is not ready", _pebble_not_ready),
    Fault("the leader's Pebble refuses the file", _pebble_refuses_the_push),
    Fault('the Kubernetes API fails', _kubernetes_fails),
    Fault('Kubernetes forbids the Service', _kubernetes_forbids),
    Fault('Juju refuses the secret write', _juju_refuses_the_secret_write),
    Fault('the lease runs out before the secret write', _lease_runs_out_before_the_secret_write),
    Fault('the lease runs out after the secret write', _lease_runs_out_after_the_secret_write),
    Fault('Juju refuses the peer databag write', _juju_refuses_the_peer_databag_write),
]


@pytest.mark.parametrize('fault', FAULTS, ids=[fault.name for fault in FAULTS])
def test_rotate_password_says_what_happened(
    fault: Fault,
    ctx: Ctx,
    fs: UnitFilesystem,
    monkeypatch: pytest.MonkeyPatch,
    lease: Lease,
    kubernetes: FakeKubernetes,
) -> None:
    deployed = ctx.run(ctx.on.leader_elected(), leader_state(fs))
    assert peer_app_data(deployed)['password-revision'] == '1'
    state = fault.make(deployed, monkeypatch, lease, kubernetes)

    answer = rotate(ctx, state)

    published = answer.published_revision == '2'
    assert answer.rotated or not published, 'a revision published without a new secret'
    if published:
        # The others were told: they apply the new password on their own.
        assert answer.succeeded, answer.text
        assert 'not told' not in answer.text
        # Whatever this unit could not finish is named, not hidden.
        pending = 'still pending on this unit: ' in answer.text
        assert pending == (fault.name != 'none'), answer.text
    else:
        assert not answer.succeeded
    if not answer.rotated:
        assert 'was rotated' not in answer.text
    if answer.rotated and not published:
        assert 'not told' in answer.text, answer.text


def test_a_clean_rotation_says_every_unit_applies_it_live(ctx: Ctx, fs: UnitFilesystem) -> None:
    answer = rotate(ctx, ctx.run(ctx.on.leader_elected(), leader_state(fs)))
    assert answer == Answer(
        succeeded=True,
        text='password rotated; every unit applies it live',
        published_revision='2',
        rotated=True,
    )


def test_a_leader_whose_own_server_is_away_says_what_is_pending(
    ctx: Ctx, fs: UnitFilesystem
) -> None:
    deployed = ctx.run(ctx.on.leader_elected(), leader_state(fs))
    away = make_container(fs, can_connect=False)
    answer = rotate(ctx, dataclasses.replace(deployed, containers={away}))
    assert answer == Answer(
        succeeded=True,
        text='password rotated; every unit applies it live; '
        'still pending on this unit: waiting for Pebble in the valkey container',
        published_revision='2',
        rotated=True,
    )
