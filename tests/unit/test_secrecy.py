# Copyright 2026 The valkey-leader-k8s authors
# See LICENSE file for licensing details.

"""The password never leaves the secret store except into the 0600 config file."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import ops
import pytest
from ops import testing

from .conftest import (
    PEERS,
    leader_state,
    make_container,
    make_context,
    make_filesystem,
    password_secret,
    state_for_unit,
)


def everything_visible(state: testing.State) -> list[str]:
    """Every place Juju or an operator can see, other than the secret itself."""
    seen = [repr(state.unit_status), repr(state.app_status), state.workload_version]
    for relation in state.relations:
        seen.append(repr(relation.local_app_data))
        seen.append(repr(relation.local_unit_data))
        if isinstance(relation, testing.PeerRelation):
            seen.append(repr(relation.peers_data))
    for container in state.containers:
        seen.append(container.plan.to_yaml())
    return seen


def test_the_password_appears_only_in_the_config_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    leader_ctx = make_context(tmp_path, 0)
    leader_fs = make_filesystem(tmp_path, 0)
    leader = leader_ctx.run(leader_ctx.on.leader_elected(), leader_state(leader_fs))
    first_password = password_secret(leader).latest_content['password']
    rotated = leader_ctx.run(leader_ctx.on.action('rotate-password'), leader)
    second_password = password_secret(rotated).latest_content['password']

    follower_ctx = make_context(tmp_path, 1)
    follower_fs = make_filesystem(tmp_path, 1)
    follower_in = state_for_unit(
        rotated, unit=1, leader=False, container=make_container(follower_fs)
    )
    follower = follower_ctx.run(
        follower_ctx.on.relation_changed(follower_in.get_relations(PEERS)[0], remote_unit=0),
        follower_in,
    )
    with pytest.raises(testing.ActionFailed) as failure:
        follower_ctx.run(follower_ctx.on.action('rotate-password'), follower)

    visible = [
        *everything_visible(leader),
        *everything_visible(rotated),
        *everything_visible(follower),
        *(line.message for line in leader_ctx.juju_log),
        *(line.message for line in follower_ctx.juju_log),
        caplog.text,
        repr(leader_ctx.action_results),
        failure.value.message,
        *(' '.join(e.command) for e in leader_ctx.exec_history.get('valkey', [])),
        *(' '.join(e.command) for e in follower_ctx.exec_history.get('valkey', [])),
    ]
    for password in (first_password, second_password):
        assert not [text for text in visible if password in text], 'password leaked'

    # ...and it is where it must be, in both units' files.
    assert second_password in leader_fs.read_config()
    assert second_password in follower_fs.read_config()
    # The checks above looked at real text: the log does record what happened.
    assert 'Rotated the password' in caplog.text


def test_the_users_password_appears_only_in_the_config_file_even_on_faults(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.DEBUG)
    users_password = 'the users own password, with "quotes"'
    user_secret = testing.Secret({'password': users_password})
    config = {'admin-password': user_secret.id}
    ctx = make_context(tmp_path, 0)
    fs = make_filesystem(tmp_path, 0)
    leader = ctx.run(
        ctx.on.config_changed(), leader_state(fs, config=config, secrets={user_secret})
    )
    assert 'requirepass "the users own password, with \\"quotes\\""' in fs.read_config()

    # Faults on the way: the peer record is garbage, then Pebble refuses a push.
    peer = leader.get_relations(PEERS)[0]
    garbage = dataclasses.replace(peer, local_app_data={'leader-unit': 'not json'})
    follower_ctx = make_context(tmp_path, 1)
    follower = follower_ctx.run(
        follower_ctx.on.config_changed(),
        testing.State(
            leader=False,
            config=config,
            relations={dataclasses.replace(garbage, peers_data={0: {}, 2: {}})},
            secrets={user_secret},
            containers={make_container(make_filesystem(tmp_path, 1))},
        ),
    )

    def refuse_push(*_: object, **__: object) -> None:
        raise ops.pebble.PathError('generic-file-error', 'read-only file system')

    monkeypatch.setattr(ops.Container, 'push', refuse_push)
    faulty = ctx.run(
        ctx.on.config_changed(), dataclasses.replace(leader, config={**config, 'maxmemory': '1mb'})
    )

    visible = [
        *everything_visible(leader),
        *everything_visible(follower),
        *everything_visible(faulty),
        *(line.message for line in ctx.juju_log),
        *(line.message for line in follower_ctx.juju_log),
        caplog.text,
    ]
    assert not [text for text in visible if users_password in text], 'password leaked'
    assert 'Pebble error' in repr(faulty.unit_status)
    assert 'Ignoring unusable leader data' in caplog.text
