# Copyright 2026 The valkey-leader-k8s authors
# See LICENSE file for licensing details.

"""The how-to's Scenario test, for this charm: copy this file to start your own.

"Manage leadership changes" tests leadership by passing it to the State:
https://documentation.ubuntu.com/ops/latest/howto/manage-leadership-changes/

This file needs no conftest and no fixture beyond pytest's own ``tmp_path``
and ``monkeypatch``: everything the test sees is built below. It lives
outside ``tests/unit`` on purpose, where the suite's shared fakes do not reach.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import ops
import pytest
from ops import testing

import primary_service
from charm import ValkeyLeaderCharm
from workload import primary_choice

# The charm finds its config template relative to its own directory
# (self.charm_dir / 'templates'), so the test gives it one with the templates in.
TEMPLATES = Path(__file__).resolve().parents[2] / 'templates'

# The unit under test is unit 0. Unit 1 led until now: the state below holds
# what it published. With leader=True, Juju has just made unit 0 the leader;
# with leader=False, unit 1 still leads and unit 0 follows it.
APP = 'valkey-leader-k8s'
PREVIOUS_LEADER = f'{APP}/1'
PREVIOUS_LEADER_ADDRESS = f'{APP}-1.{APP}-endpoints.test-model.svc.cluster.local'


@pytest.mark.parametrize('leader', [True, False])
def test_leader_is_primary_and_the_others_replicate_from_it(
    leader: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Only the leader points the `<app>-primary` Service at its own pod. A unit
    # test has no Kubernetes API, so the one call that talks to it is replaced
    # here; the fake still runs the charm's "am I still the leader?" check
    # (`before_write`), as the real call does right before its write.
    repointed: list[str] = []

    def repoint(
        app: ops.Application, model_name: str, unit_name: str, before_write: Callable[[], None]
    ) -> None:
        before_write()
        repointed.append(unit_name)

    monkeypatch.setattr(primary_service, 'repoint', repoint)

    # The leader chooses the primary from what every Valkey server says, and a
    # unit test runs no server. The choice is replaced too: here every server
    # agrees that the new leader's own may take over (its logic has tests of its
    # own, on pure data and on real servers).
    def settle(*, leader: str, **_: object) -> primary_choice.Chosen:
        return primary_choice.Chosen(leader)

    monkeypatch.setattr(primary_choice, 'settle', settle)

    shutil.copytree(TEMPLATES, tmp_path / 'templates')
    ctx = testing.Context(ValkeyLeaderCharm, charm_root=tmp_path, unit_id=0)

    # The app secret with the password: owned by the application, so written
    # only by the leader; the others read it by the id published below.
    secret = testing.Secret({'password': 'a-test-password'}, owner='app', label='admin-password')
    # What the previous leader wrote into the peer relation's application
    # databag: its name and address, and the id of the secret (never the password).
    # ops saves each field JSON-encoded (Relation.save).
    published = {
        'leader-unit': json.dumps(PREVIOUS_LEADER),
        'leader-address': json.dumps(PREVIOUS_LEADER_ADDRESS),
        'password-secret-id': json.dumps(secret.id),
        'password-revision': json.dumps(1),
    }
    peers = testing.PeerRelation(
        'valkey-peers', local_app_data=published, peers_data={1: {}, 2: {}}
    )
    # A new container: the charm writes the file and starts Valkey through Pebble.
    valkey = testing.Container(
        'valkey',
        can_connect=True,
        # Asked for on the first start: the version `juju status` shows.
        execs={testing.Exec(['valkey-server', '--version'], stdout='Valkey server v=8.1.1\n')},
    )
    state = testing.State(
        leader=leader,
        relations={peers},
        secrets={secret},
        containers={valkey},
        model=testing.Model(name='test-model'),
    )

    # leader-elected on the new leader; on the others, the event that tells them
    # a leader wrote the peer databag. The charm handles both with one reconcile.
    event = ctx.on.leader_elected() if leader else ctx.on.relation_changed(peers, remote_unit=1)
    out = ctx.run(event, state)

    # The rendered config file, as the charm pushed it into the container.
    config = (
        out.get_container('valkey').get_filesystem(ctx) / 'run/valkey/valkey.conf'
    ).read_text()
    # Every unit uses the same password, from the same secret.
    assert 'requirepass "a-test-password"' in config
    data = out.get_relation(peers.id).local_app_data
    if leader:
        assert out.unit_status == ops.ActiveStatus('primary')
        assert 'replicaof' not in config
        # The new leader tells the others, through the peer databag...
        assert json.loads(data['leader-unit']) == f'{APP}/0'
        # ... keeps the password it inherited (no new secret)...
        assert json.loads(data['password-secret-id']) == secret.id
        assert out.secrets == {secret}
        # ... and points the Service at its own pod.
        assert repointed == [f'{APP}/0']
    else:
        assert out.unit_status == ops.ActiveStatus(f'replica of {PREVIOUS_LEADER}')
        assert f'replicaof {PREVIOUS_LEADER_ADDRESS} 6379' in config
        # A follower writes nothing that belongs to the leader.
        assert data == published
        assert repointed == []
