# Copyright 2026 The valkey-leader-k8s authors
# See LICENSE file for licensing details.

"""The acting primary in the leader record: typed, validated, and read back as it was saved."""

from __future__ import annotations

import json

import ops
import pytest
from ops import testing

from leadership import LeaderRecord, Role

LEADER = 'valkey-leader-k8s/1'
ACTING = 'valkey-leader-k8s/0'
ACTING_AT = 'valkey-leader-k8s-0.valkey-leader-k8s-endpoints.demo.svc.cluster.local'
LEADER_AT = 'valkey-leader-k8s-1.valkey-leader-k8s-endpoints.demo.svc.cluster.local'


def record(**acting: object) -> LeaderRecord:
    fields: dict[str, object] = {
        'unit': LEADER,
        'address': LEADER_AT,
        'password_secret_id': 'secret:abc',
        **acting,
    }
    return LeaderRecord(**fields)  # type: ignore[arg-type]


def test_a_record_without_an_acting_primary_names_the_leader() -> None:
    plain = record()
    assert plain.primary == LEADER
    assert Role.in_record(plain, LEADER) == Role.PRIMARY
    assert str(Role.in_record(plain, 'valkey-leader-k8s/2')) == f'replica of {LEADER}'


def test_an_acting_primary_is_followed_by_everyone_the_leader_too() -> None:
    acting = record(primary_unit=ACTING, primary_address=ACTING_AT, primary_reason='syncing')
    assert acting.primary == ACTING
    assert Role.in_record(acting, ACTING) == Role.PRIMARY
    follower = Role.in_record(acting, 'valkey-leader-k8s/2')
    assert (str(follower), follower.replicaof, follower.acting_because) == (
        f'replica of {ACTING}',
        ACTING_AT,
        'syncing',
    )


@pytest.mark.parametrize(
    ('fields', 'problem'),
    [
        ({'primary_address': ACTING_AT}, 'need a primary-unit'),
        ({'primary_reason': 'why'}, 'need a primary-unit'),
        ({'primary_unit': 'not a unit', 'primary_address': ACTING_AT}, 'not a unit name'),
        ({'primary_unit': ACTING, 'primary_address': 'bad name!', 'primary_reason': 'x'}, 'DNS'),
        ({'primary_unit': ACTING, 'primary_address': ACTING_AT, 'primary_reason': ''}, 'one line'),
        ({'primary_unit': ACTING, 'primary_address': ACTING_AT, 'primary_reason': 'a\nb'}, 'line'),
        ({'primary_unit': ACTING, 'primary_address': ACTING_AT, 'primary_reason': 5}, 'line'),
    ],
)
def test_an_unusable_acting_primary_is_refused(fields: dict[str, object], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        record(**fields)


def test_the_acting_primary_round_trips_through_the_databag() -> None:
    acting = record(primary_unit=ACTING, primary_address=ACTING_AT, primary_reason='behind')
    saved = {
        'leader-unit': LEADER,
        'leader-address': LEADER_AT,
        'password-secret-id': 'secret:abc',
        'password-revision': 0,
        'primary-unit': ACTING,
        'primary-address': ACTING_AT,
        'primary-reason': 'behind',
    }
    relation = testing.PeerRelation(
        'valkey-peers', local_app_data={k: json.dumps(v) for k, v in saved.items()}
    )
    ctx = testing.Context(
        ops.CharmBase, meta={'name': 'x', 'peers': {'valkey-peers': {'interface': 'x'}}}
    )
    with ctx(ctx.on.update_status(), testing.State(relations={relation})) as manager:
        loaded = manager.charm.model.get_relation('valkey-peers')
        assert loaded is not None
        assert loaded.load(LeaderRecord, manager.charm.app) == acting
