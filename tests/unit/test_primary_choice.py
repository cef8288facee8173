# Copyright 2026 The valkey-leader-k8s authors
# See LICENSE file for licensing details.

"""The leader's choice carried out: every server read once, then a handover, promotion or demotion.

A fake client (tests/unit/test_live.py) stands in for valkey-py; the same paths
run against real servers in tests/simulation/test_one_primary.py.
"""

from __future__ import annotations

import pytest

from workload import client, handover, primary_choice, survey

from .test_live import OWN_NAME, PRIMARY_NAME, FakeServer, Servers, servers, settings

__all__ = ['servers']  # the fixture, imported to be used here

A, B, C = 'valkey-leader-k8s/0', 'valkey-leader-k8s/1', 'valkey-leader-k8s/2'
THIRD_NAME = 'valkey-leader-k8s-2.valkey-leader-k8s-endpoints.demo.svc.cluster.local'
UNITS = {A: PRIMARY_NAME, B: OWN_NAME, C: THIRD_NAME}


@pytest.fixture(autouse=True)
def live_server() -> None:
    """Overrides conftest's fake: these tests use the fake client instead."""


@pytest.fixture(autouse=True)
def choice() -> None:
    """Overrides conftest's fake: these tests exercise the real ``primary_choice.settle``."""


class Leadership:
    def __init__(self) -> None:
        self.checks = 0
        self.lost = False

    def before_change(self) -> None:
        self.checks += 1
        if self.lost:
            raise RuntimeError('no longer the leader')


def settle(
    leader: str = B,
    published: str | None = A,
    lease: Leadership | None = None,
    transports: list[client.Transport] | None = None,
):
    return primary_choice.settle(
        leader=leader,
        units=UNITS,
        published=published,
        passwords=['pw'],
        resolve=client.same_host,
        local=client.LOCAL,
        before_change=(lease or Leadership()).before_change,
        transports=transports or client.PLAINTEXT,
    )


def replica(of: str, offset: int, *, link: str = 'up') -> FakeServer:
    server = FakeServer(settings(primary=of))
    server.replication |= {
        'master_link_status': link,
        'master_repl_offset': offset,
        'slave_repl_offset': offset,
    }
    return server


def primary(offset: int = 100, history: str = 'history-1') -> FakeServer:
    server = FakeServer(settings(primary=None), role='master')
    server.replication |= {'master_repl_offset': offset, 'master_replid': history}
    return server


def world(servers: Servers, a: FakeServer | None, b: FakeServer | None, c: FakeServer | None):
    for address, server in (
        ((PRIMARY_NAME, 6379), a),
        (client.LOCAL, b),  # the leader's own server, on the pod's loopback
        ((THIRD_NAME, 6379), c),
    ):
        if server is not None:
            servers[address] = server


def test_the_survey_reads_every_server_once_in_one_round_trip(servers: Servers) -> None:
    world(servers, primary(), replica(PRIMARY_NAME, 100), None)
    refusing = servers[(THIRD_NAME, 6379)] = replica(PRIMARY_NAME, 100)
    refusing.password = 'another'
    found = survey.survey(
        UNITS, this_unit=B, passwords=['pw'], resolve=client.same_host, local=client.LOCAL
    )
    assert (found[A].primary, found[A].offset, found[A].history) == (True, 100, 'history-1')
    assert (found[B].follows, found[B].link_up, found[B].syncing) == (A, True, False)
    assert (found[C].answered, found[C].why_not) == (False, 'refused the password')
    sent = servers[(PRIMARY_NAME, 6379)].sent
    assert sent == [('INFO', 'replication'), ('INFO', 'persistence')]


def test_a_syncing_or_loading_server_is_read_as_such() -> None:
    replication = {
        'role': 'slave',
        'master_host': 'elsewhere',
        'master_port': '6379',
        'master_sync_in_progress': '1',
        'master_replid2': 'h0',
        'second_repl_offset': 'not a number',
    }
    state = survey.state_of(C, replication, {'loading': '0'}, {})
    assert (state.follows, state.syncing, state.previous_history, state.offset) == (
        None,
        True,
        'h0',
        0,
    )
    assert survey.state_of(C, {'role': 'master'}, {'loading': '1'}, {}).syncing


def test_a_leader_in_sync_takes_over_by_a_handover(servers: Servers) -> None:
    world(servers, primary(), replica(PRIMARY_NAME, 100), replica(PRIMARY_NAME, 100))
    lease = Leadership()
    chosen = settle(lease=lease)
    assert chosen == primary_choice.Chosen(B, '', (f'{A} handed over',))
    assert servers[client.LOCAL].replication['role'] == 'master'
    assert servers[(PRIMARY_NAME, 6379)].replication['master_host'] == OWN_NAME
    assert lease.checks == 1


def test_a_handover_that_times_out_leaves_the_old_primary_acting(
    servers: Servers, monkeypatch: pytest.MonkeyPatch
) -> None:
    world(servers, primary(), replica(PRIMARY_NAME, 100), replica(PRIMARY_NAME, 100))

    def too_slow(**_: object) -> handover.HandoverResult:
        return handover.HandoverResult('timed-out', 'this unit was 5 bytes behind after 4000 ms')

    monkeypatch.setattr(handover, 'hand_over', too_slow)
    chosen = settle()
    assert chosen.unit == A
    assert chosen.reason == (
        f'{A} did not hand over (timed-out: this unit was 5 bytes behind after 4000 ms)'
    )


def test_without_a_primary_the_furthest_replica_is_promoted_even_if_not_the_leader(
    servers: Servers,
) -> None:
    world(
        servers,
        None,
        replica(PRIMARY_NAME, 90, link='down'),
        replica(PRIMARY_NAME, 100, link='down'),
    )
    chosen = settle()
    assert chosen == primary_choice.Chosen(
        C, f"the leader's server is behind {C}", (f'promoted {C}',)
    )
    assert servers[(THIRD_NAME, 6379)].replication['role'] == 'master'
    assert servers[client.LOCAL].replication['role'] == 'slave'


def test_a_promotion_that_fails_keeps_what_was_published(servers: Servers) -> None:
    world(
        servers,
        None,
        replica(PRIMARY_NAME, 90, link='down'),
        replica(PRIMARY_NAME, 100, link='down'),
    )
    servers[(THIRD_NAME, 6379)].refuse['REPLICAOF'] = 'ERR no'
    chosen = settle()
    assert chosen.unit == A
    assert chosen.reason == f'could not promote {C}: REPLICAOF refused (ResponseError)'


def test_a_second_primary_is_made_a_replica_of_the_published_one(servers: Servers) -> None:
    world(servers, primary(), primary(50, history='history-2'), replica(PRIMARY_NAME, 100))
    chosen = settle()
    assert chosen.unit == A
    assert chosen.changed == (f'{B} made a replica of {A}',)
    assert servers[client.LOCAL].replication['master_host'] == PRIMARY_NAME
    servers[(THIRD_NAME, 6379)] = primary(10, history='history-3')
    servers[(THIRD_NAME, 6379)].refuse['REPLICAOF'] = 'ERR no'
    servers[client.LOCAL] = primary(50, history='history-2')
    refused = settle()
    assert f'{C} made a replica of {A}: REPLICAOF refused (ResponseError)' in refused.changed


def test_when_no_server_answers_the_published_primary_stays(servers: Servers) -> None:
    assert settle() == primary_choice.Chosen(A, 'no server answers')
    assert settle(published=None) == primary_choice.Chosen(B, 'no server answers')
    assert survey.set_role(('nowhere', 6379), ('NO', 'ONE'), passwords=['pw'], timeout=1) == (
        'no answer from nowhere:6379 (connection refused)'
    )


# Each kind of change the leader makes to another unit's server, from the world that needs it.
CHANGES = {
    'hand-over': lambda: (primary(), replica(PRIMARY_NAME, 100), replica(PRIMARY_NAME, 100)),
    'promote': lambda: (
        None,
        replica(PRIMARY_NAME, 90, link='down'),
        replica(PRIMARY_NAME, 100, link='down'),
    ),
    'demote': lambda: (primary(), replica(PRIMARY_NAME, 100), primary(10, history='history-3')),
}


@pytest.mark.parametrize('change', CHANGES)
def test_nothing_is_changed_once_leadership_is_lost(servers: Servers, change: str) -> None:
    world(servers, *CHANGES[change]())
    lease = Leadership()
    lease.lost = True
    with pytest.raises(RuntimeError):
        settle(lease=lease)
    for server in servers.values():
        assert [args for args in server.sent if args[0] != 'INFO'] == []


# With TLS on, every server's port speaks TLS only, checked against the unit's CA.
OVER_TLS: list[client.Transport] = [client.Tls('the CA')]


def serve_tls(servers: Servers) -> None:
    for server in servers.values():
        server.tls_ca = 'the CA'


def test_over_tls_the_survey_reads_every_server(servers: Servers) -> None:
    world(servers, primary(), replica(PRIMARY_NAME, 100), replica(PRIMARY_NAME, 100))
    serve_tls(servers)
    found = survey.survey(
        UNITS,
        this_unit=B,
        passwords=['pw'],
        resolve=client.same_host,
        local=client.LOCAL,
        transports=OVER_TLS,
    )
    assert {unit: (s.answered, s.primary, s.follows) for unit, s in found.items()} == {
        A: (True, True, None),
        B: (True, False, A),
        C: (True, False, A),
    }
    plaintext = survey.survey(
        UNITS, this_unit=B, passwords=['pw'], resolve=client.same_host, local=client.LOCAL
    )
    assert [s.answered for s in plaintext.values()] == [False, False, False]


# What each change leaves on the server it changed, once done.
DONE = {
    'hand-over': ((PRIMARY_NAME, 6379), 'master_host', OWN_NAME),
    'promote': ((THIRD_NAME, 6379), 'role', 'master'),
    'demote': ((THIRD_NAME, 6379), 'master_host', PRIMARY_NAME),
}


@pytest.mark.parametrize('change', CHANGES)
def test_over_tls_the_leader_changes_the_other_units_servers(
    servers: Servers, change: str
) -> None:
    world(servers, *CHANGES[change]())
    serve_tls(servers)
    assert settle(transports=OVER_TLS).changed != ()
    address, field, value = DONE[change]
    assert servers[address].replication[field] == value


def test_over_tls_a_plaintext_leader_would_read_nobody_and_change_nothing(
    servers: Servers,
) -> None:
    world(servers, *CHANGES['hand-over']())
    serve_tls(servers)
    assert settle() == primary_choice.Chosen(A, 'no server answers')
    for server in servers.values():
        assert server.sent == []


# -- The leader's server about to go away: ``step_down``; and its return: ``wait_for_sync``.


def step_down(
    lease: Leadership | None = None, transports: list[client.Transport] | None = None
) -> primary_choice.Chosen:
    return primary_choice.step_down(
        leader=B,
        units=UNITS,
        passwords=['pw'],
        resolve=client.same_host,
        local=client.LOCAL,
        before_change=(lease or Leadership()).before_change,
        transports=transports or client.PLAINTEXT,
    )


def announcing(server: FakeServer, name: str) -> FakeServer:
    server.config['replica-announce-ip'] = name
    return server


def test_a_leader_about_to_go_hands_the_role_to_the_replica_in_sync(servers: Servers) -> None:
    world(
        servers,
        announcing(replica(OWN_NAME, 100), PRIMARY_NAME),
        primary(100),
        replica(OWN_NAME, 90),
    )
    lease = Leadership()
    assert step_down(lease) == primary_choice.Chosen(A, '', (f'handed over to {A}',))
    assert servers[(PRIMARY_NAME, 6379)].replication['role'] == 'master'
    assert servers[client.LOCAL].replication['master_host'] == PRIMARY_NAME
    assert lease.checks == 1


def test_a_leader_with_no_replica_in_sync_keeps_the_role(servers: Servers) -> None:
    world(servers, replica(OWN_NAME, 100, link='down'), primary(100), None)
    lease = Leadership()
    assert step_down(lease) == primary_choice.Chosen(B, 'no replica is in sync to take over')
    assert servers[client.LOCAL].replication['role'] == 'master'
    assert lease.checks == 0


def test_a_handover_the_replica_refuses_keeps_the_role(servers: Servers) -> None:
    # The replica announces another name: it is not the server the leader reached.
    world(servers, replica(OWN_NAME, 100), primary(100), None)
    chosen = step_down()
    assert chosen.unit == B
    assert chosen.reason.startswith(f'{A} did not take over (refused: ')
    assert servers[client.LOCAL].replication['role'] == 'master'


def test_waiting_for_sync_answers_at_once_for_a_primary_or_no_server(servers: Servers) -> None:
    assert not primary_choice.wait_for_sync(client.LOCAL, ['pw'])
    servers[client.LOCAL] = primary(100)
    assert not primary_choice.wait_for_sync(client.LOCAL, ['pw'])


def test_waiting_for_sync_ends_once_the_link_is_up_or_time_is_out(servers: Servers) -> None:
    servers[client.LOCAL] = replica(PRIMARY_NAME, 100)
    assert primary_choice.wait_for_sync(client.LOCAL, ['pw'])
    servers[client.LOCAL] = replica(PRIMARY_NAME, 100, link='down')
    assert not primary_choice.wait_for_sync(client.LOCAL, ['pw'], seconds=0.05)


def test_over_tls_a_leader_about_to_go_hands_over_and_waits_for_its_return(
    servers: Servers,
) -> None:
    world(
        servers,
        announcing(replica(OWN_NAME, 100), PRIMARY_NAME),
        primary(100),
        replica(OWN_NAME, 90),
    )
    serve_tls(servers)
    assert step_down().unit == B, 'in plaintext it reads nobody'
    assert step_down(transports=OVER_TLS).unit == A
    servers[client.LOCAL] = replica(PRIMARY_NAME, 100)
    serve_tls(servers)
    assert primary_choice.wait_for_sync(client.LOCAL, ['pw'], transports=OVER_TLS)
