# Copyright 2026 The valkey-leader-k8s authors
# See LICENSE file for licensing details.

"""Who should be primary: the leader's choice over what the servers said, no Context needed."""

from __future__ import annotations

import dataclasses

from workload.election import (
    STALE_LINK_SECONDS,
    Decision,
    ServerState,
    at_least_as_far,
    choose,
    quorum,
    successor,
)

A, B, C = 'valkey-leader-k8s/0', 'valkey-leader-k8s/1', 'valkey-leader-k8s/2'
D, E = 'valkey-leader-k8s/3', 'valkey-leader-k8s/4'


def primary(unit: str, offset: int = 1000, history: str = 'h1') -> ServerState:
    return ServerState(unit=unit, answered=True, primary=True, history=history, offset=offset)


def replica(
    unit: str,
    of: str | None,
    offset: int = 1000,
    *,
    link_up: bool = True,
    last_heard: int = 1,
    syncing: bool = False,
    history: str = 'h1',
) -> ServerState:
    return ServerState(
        unit=unit,
        answered=True,
        follows=of,
        link_up=link_up,
        last_heard=last_heard,
        syncing=syncing,
        history=history,
        offset=offset,
    )


def silent(unit: str, why: str = 'no answer') -> ServerState:
    refused = why == 'refused the password'
    return ServerState(unit=unit, answered=False, why_not=why, refused_password=refused)


def world(*servers: ServerState) -> dict[str, ServerState]:
    return {s.unit: s for s in servers}


def test_the_leaders_primary_stays():
    servers = world(primary(A), replica(B, A), replica(C, A))
    assert choose(A, servers, A) == Decision('keep', A)


def test_a_new_leader_in_sync_asks_the_live_primary_to_hand_over():
    servers = world(primary(A), replica(B, A), replica(C, A))
    assert choose(B, servers, A) == Decision('hand-over', A)


def test_a_new_leader_still_in_its_first_sync_leaves_the_primary_in_charge():
    servers = world(
        primary(A), replica(B, A, 0, link_up=False, syncing=True, history='x'), replica(C, A)
    )
    decision = choose(B, servers, A)
    assert (decision.action, decision.primary) == ('keep', A)
    assert 'syncing' in decision.reason


def test_a_new_leader_whose_link_is_down_leaves_the_primary_in_charge():
    servers = world(primary(A), replica(B, A, 900, link_up=False), replica(C, A))
    assert choose(B, servers, A).action == 'keep'


def test_a_new_leader_replicating_someone_else_leaves_the_primary_in_charge():
    servers = world(primary(A), replica(B, None, link_up=False), replica(C, A))
    decision = choose(B, servers, A)
    assert (decision.action, decision.primary) == ('keep', A)
    assert 'not replicating' in decision.reason


def test_a_new_leader_whose_server_does_not_answer_leaves_the_primary_in_charge():
    servers = world(primary(A), silent(B, 'connection refused'), replica(C, A))
    decision = choose(B, servers, A)
    assert (decision.action, decision.primary) == ('keep', A)
    assert 'connection refused' in decision.reason


def test_a_primary_that_refuses_the_leader_but_streams_to_it_is_not_overruled():
    servers = world(silent(A, 'refused the password'), replica(B, A), replica(C, A))
    decision = choose(B, servers, A)
    assert (decision.action, decision.primary) == ('keep', A)
    assert 'refused the password' in decision.reason


def test_a_primary_out_of_reach_that_its_replicas_heard_lately_is_not_overruled():
    servers = world(silent(A), replica(B, A), replica(C, A, last_heard=STALE_LINK_SECONDS))
    assert choose(B, servers, A).primary == A


def test_a_primary_no_server_has_heard_for_long_is_replaced_whatever_the_links_say():
    # A partition: the links say "up" until repl-timeout, but nothing came through them.
    stale = STALE_LINK_SECONDS + 1
    servers = world(silent(A), replica(B, A, last_heard=stale), replica(C, A, last_heard=stale))
    assert choose(B, servers, A) == Decision('promote', B)


def test_a_primary_that_refuses_the_password_is_alive_however_long_ago_it_was_heard():
    stale = STALE_LINK_SECONDS + 1
    servers = world(silent(A, 'refused the password'), replica(B, A, last_heard=stale))
    assert choose(B, servers, A).primary == A


def test_the_leader_whose_own_primary_is_hidden_from_it_keeps_it():
    servers = world(silent(A), replica(B, A))
    assert choose(A, servers, A) == Decision('keep', A)


def test_without_a_primary_the_leader_is_promoted_when_it_has_every_write():
    servers = world(
        silent(A), replica(B, A, 1000, link_up=False), replica(C, A, 900, link_up=False)
    )
    assert choose(B, servers, A) == Decision('promote', B)


def test_without_a_primary_a_leader_behind_another_replica_is_not_promoted():
    servers = world(
        silent(A), replica(B, A, 900, link_up=False), replica(C, A, 1000, link_up=False)
    )
    decision = choose(B, servers, A)
    assert (decision.action, decision.primary) == ('promote', C)
    assert decision.reason == f"the leader's server is behind {C}"


def test_without_a_primary_an_empty_syncing_leader_is_not_promoted():
    servers = world(
        silent(A),
        replica(B, A, 0, link_up=False, syncing=True, history='fresh'),
        replica(C, A, 1000, link_up=False),
    )
    decision = choose(B, servers, A)
    assert (decision.action, decision.primary) == ('promote', C)
    assert 'syncing' in decision.reason


def test_without_a_primary_a_silent_leader_lets_the_best_replica_act():
    servers = world(
        silent(A),
        silent(B),
        replica(C, A, 1000, link_up=False),
        replica(D, A, 900, link_up=False),
        replica(E, A, 900, link_up=False),
    )
    decision = choose(B, servers, A)
    assert (decision.action, decision.primary) == ('promote', C)
    assert 'does not answer' in decision.reason


def test_without_a_primary_nobody_is_promoted_unless_most_servers_answer():
    # The silent ones may follow a primary the leader cannot see, or hold newer writes.
    servers = world(silent(A), replica(B, A, 1000, link_up=False), silent(C))
    decision = choose(B, servers, A)
    assert decision == Decision(
        'wait',
        None,
        'no primary answers, and only 1 of 3 servers do: the others may have newer writes',
    )
    assert choose(B, {**servers, C: replica(C, A, 900, link_up=False)}, A).action == 'promote'


def test_of_two_units_the_one_that_answers_may_be_promoted():
    # No majority exists without both: min-replicas-to-write bounds a cut-off primary instead.
    assert choose(B, world(silent(A), replica(B, A, link_up=False)), A) == Decision('promote', B)


def test_the_quorum_is_a_majority_from_three_units_on():
    assert [quorum(units) for units in range(1, 7)] == [1, 1, 2, 3, 3, 4]


def test_a_loop_of_replicas_is_broken_by_promoting_the_one_with_every_write():
    # A follows B and B follows A: nobody accepts writes, and no later hook of a follower helps.
    servers = world(replica(A, B, 500, link_up=True), replica(B, A, 500, link_up=True))
    assert choose(A, servers, A) == Decision('promote', A)


def test_a_loop_prefers_the_published_primary_over_an_equal_replica():
    servers = world(replica(A, B, 500), replica(B, A, 500), silent(C))
    assert choose(C, servers, B).primary == B


def test_among_equal_strangers_the_furthest_along_is_promoted():
    servers = world(
        silent(A), replica(B, A, 700, link_up=False), replica(C, A, 700, link_up=False)
    )
    assert choose(A, servers, A).primary == C


def test_nobody_is_promoted_when_nobody_answers():
    assert choose(A, world(silent(A), silent(B)), A) == Decision('wait', None, 'no server answers')


def test_nobody_is_promoted_when_histories_diverge():
    servers = world(
        replica(A, None, 500, link_up=False, history='h1'),
        replica(B, None, 600, link_up=False, history='h2'),
    )
    decision = choose(A, servers, A)
    assert (decision.action, decision.primary) == ('wait', None)


def test_two_primaries_keep_the_published_one():
    servers = world(primary(A, 900), primary(B, 1000, history='h2'), replica(C, A))
    decision = choose(B, servers, A)
    assert (decision.action, decision.primary, decision.demote) == ('keep', A, (B,))
    assert decision.reason


def test_two_primaries_keep_the_leaders_when_none_was_published():
    servers = world(primary(A), primary(B, history='h2'))
    assert choose(B, servers, None) == Decision('keep', B, '', demote=(A,))


def test_two_primaries_of_strangers_keep_the_furthest_along():
    servers = world(primary(A, 10), primary(B, 20, history='h2'), replica(C, A))
    assert choose(C, servers, None).primary == B


def test_a_promoted_server_holds_its_previous_history_up_to_the_switch():
    promoted = dataclasses.replace(
        primary(B, 50, history='h2'), previous_history='h1', previous_history_until=1001
    )
    assert at_least_as_far(promoted, replica(C, A, 1000))
    assert not at_least_as_far(promoted, replica(C, A, 1001))


def test_anything_is_as_far_along_as_an_empty_server():
    assert at_least_as_far(replica(A, None, 1, history='x'), replica(B, None, 0, history='y'))


def test_on_a_fresh_deployment_no_empty_replica_is_promoted_over_the_leader():
    # The replicas started before the leader's server: nothing is written anywhere yet.
    servers = world(silent(A), replica(B, A, 0, link_up=False), replica(C, A, 0, link_up=False))
    decision = choose(A, servers, A)
    assert (decision.action, decision.primary) == ('wait', None)
    empty_leader = world(replica(A, None, 0, link_up=False), replica(B, A, 0, link_up=False))
    assert choose(A, empty_leader, A) == Decision('promote', A)


def test_a_new_leader_behind_a_replica_of_the_primary_can_be_handed_over_to():
    # Its server follows unit 2's, which follows the primary: the same history, every link up.
    servers = world(primary(A), replica(B, C), replica(C, A))
    assert choose(B, servers, A) == Decision('hand-over', A)
    broken = world(primary(A), replica(B, C), replica(C, A, link_up=False))
    assert choose(B, broken, A).action == 'keep'
    looped = world(primary(A), replica(B, C), replica(C, B))
    assert choose(B, looped, A).action == 'keep'


# -- The leader's server about to go: to whom it hands the role.


def test_the_successor_is_the_furthest_replica_streaming_from_the_leader() -> None:
    servers = world(primary(B), replica(A, B, 900), replica(C, B, 1000))
    assert successor(B, servers) == C


def test_among_equals_the_lowest_numbered_unit_succeeds() -> None:
    # The last one a refresh restarts, and a scale-down removes.
    servers = world(replica(A, C), replica(B, C), primary(C))
    assert successor(C, servers) == A


def test_no_replica_in_sync_means_no_successor() -> None:
    servers = world(
        primary(B),
        replica(A, B, link_up=False),
        replica(C, B, syncing=True),
    )
    assert successor(B, servers) is None
    # A replica of another server, or one that does not answer, cannot take over either.
    assert successor(B, world(primary(B), replica(A, C), silent(C))) is None
    # A name without a number (never a unit's) still gets an order.
    odd = ServerState(unit='odd', answered=True, follows=B, link_up=True)
    assert successor(B, world(primary(B), odd)) == 'odd'
