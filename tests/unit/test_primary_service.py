# Copyright 2026 The valkey-leader-k8s authors
# See LICENSE file for licensing details.

"""The ``<app>-primary`` Service: only the leader manages it, and it selects the leader."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any, cast

import kubernetes_validate  # pyright: ignore[reportMissingTypeStubs]
import ops
import pytest
from ops import testing

import primary_service
from charm import ValkeyLeaderCharm

from ..fake_kubernetes import REAL_MAKE_CLIENT, STATEFULSET_UID, FakeKubernetes
from .conftest import (
    APP,
    Lease,
    UnitFilesystem,
    imported_after,
    leader_state,
    make_container,
    make_context,
    make_filesystem,
    peer_app_data,
    state_for_unit,
)

Ctx = testing.Context[ValkeyLeaderCharm]
KUBERNETES_VERSION = '1.32.0'


def test_the_leader_applies_a_service_selecting_its_own_pod(
    ctx: Ctx, fs: UnitFilesystem, kubernetes: FakeKubernetes
) -> None:
    out = ctx.run(ctx.on.leader_elected(), leader_state(fs))
    namespace = out.model.name

    get, patch = kubernetes.requests
    assert (get.method, get.path) == (
        'GET',
        f'/apis/apps/v1/namespaces/{namespace}/statefulsets/{APP}',
    )
    assert (patch.method, patch.path) == (
        'PATCH',
        f'/api/v1/namespaces/{namespace}/services/{APP}-primary',
    )
    # Server-side apply, owned by the app, forcing over other managers.
    assert patch.params == {'fieldManager': APP, 'force': 'true'}
    body = patch.body
    assert body is not None
    assert body['metadata']['name'] == f'{APP}-primary'
    assert body['metadata']['ownerReferences'] == [
        {'apiVersion': 'apps/v1', 'kind': 'StatefulSet', 'name': APP, 'uid': STATEFULSET_UID}
    ]
    assert body['spec']['selector'] == {
        'app.kubernetes.io/name': APP,
        'statefulset.kubernetes.io/pod-name': f'{APP}-0',
    }
    assert body['spec']['ports'] == [
        {'name': 'valkey', 'port': 6379, 'targetPort': 6379, 'protocol': 'TCP'}
    ]
    assert body['spec']['type'] == 'ClusterIP'
    assert out.unit_status == ops.ActiveStatus('primary')


def test_the_applied_body_is_a_valid_kubernetes_service(
    ctx: Ctx, fs: UnitFilesystem, kubernetes: FakeKubernetes
) -> None:
    ctx.run(ctx.on.leader_elected(), leader_state(fs))
    body = kubernetes.applies[0].body
    assert body is not None
    # The PATCH body is the whole object (server-side apply): validate it as a Service.
    kubernetes_validate.validate(body, KUBERNETES_VERSION, strict=True)


def test_the_schema_check_can_fail() -> None:
    """The validator really checks: a Service with a string port is refused."""
    built = primary_service.build_service(
        app_name=APP, namespace='m', leader_pod=f'{APP}-0', port=6379, statefulset_uid='u'
    )
    service = cast('dict[str, Any]', built.to_dict())  # pyright: ignore[reportUnknownMemberType]
    service['spec']['ports'][0]['port'] = 'six'
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(service, KUBERNETES_VERSION, strict=True)


def test_a_follower_never_calls_kubernetes(tmp_path: Path, kubernetes: FakeKubernetes) -> None:
    leader_ctx = make_context(tmp_path, 0)
    leader = leader_ctx.run(
        leader_ctx.on.leader_elected(), leader_state(make_filesystem(tmp_path))
    )
    kubernetes.requests.clear()
    ctx = make_context(tmp_path, 1)
    state = state_for_unit(
        leader, unit=1, leader=False, container=make_container(make_filesystem(tmp_path, 1))
    )

    for event in (ctx.on.config_changed(), ctx.on.upgrade_charm(), ctx.on.update_status()):
        state = ctx.run(event, state)

    assert kubernetes.requests == []


def test_a_follower_does_not_even_import_lightkube(tmp_path: Path) -> None:
    """Importing lightkube is the most expensive part of a hook: followers are spared it."""
    leader_ctx = make_context(tmp_path, 0)
    leader = leader_ctx.run(
        leader_ctx.on.leader_elected(), leader_state(make_filesystem(tmp_path))
    )
    peer = leader.get_relations('valkey-peers')[0]
    (secret,) = leader.secrets
    script = textwrap.dedent("""
        import json, sys
        from pathlib import Path
        from ops import testing
        from charm import ValkeyLeaderCharm
        app_data, secret_id, charm_root = json.loads(sys.argv[1])
        secret = testing.Secret(
            {'password': 'p' * 32}, id=secret_id, owner='app', label='admin-password'
        )
        state = testing.State(
            leader=False,
            relations={testing.PeerRelation('valkey-peers', local_app_data=app_data)},
            secrets={secret},
            containers={testing.Container('valkey', can_connect=False)},
        )
        ctx = testing.Context(ValkeyLeaderCharm, charm_root=Path(charm_root), unit_id=1)
        for event in (ctx.on.config_changed(), ctx.on.update_status()):
            ctx.run(event, state)
    """)
    arguments = [dict(peer.local_app_data), secret.id, str(tmp_path / 'root-0' / 'charm')]
    assert 'lightkube' not in imported_after(script, json.dumps(arguments))


def test_a_new_leader_repoints_the_service(tmp_path: Path, kubernetes: FakeKubernetes) -> None:
    first_ctx = make_context(tmp_path, 0)
    first = first_ctx.run(first_ctx.on.leader_elected(), leader_state(make_filesystem(tmp_path)))
    second_ctx = make_context(tmp_path, 1)
    second_in = state_for_unit(
        first, unit=1, leader=True, container=make_container(make_filesystem(tmp_path, 1))
    )

    second_ctx.run(second_ctx.on.leader_elected(), second_in)

    selectors = [r.body['spec']['selector'] for r in kubernetes.applies if r.body]
    assert [s['statefulset.kubernetes.io/pod-name'] for s in selectors] == [
        f'{APP}-0',
        f'{APP}-1',
    ]


def test_once_applied_other_events_make_no_kubernetes_call(
    ctx: Ctx, fs: UnitFilesystem, kubernetes: FakeKubernetes
) -> None:
    state = ctx.run(ctx.on.leader_elected(), leader_state(fs))
    kubernetes.requests.clear()

    for event in (ctx.on.config_changed(), ctx.on.update_status(), ctx.on.start()):
        state = ctx.run(event, state)

    assert kubernetes.requests == []


def test_every_leader_elected_reapplies_the_service_whatever_was_recorded(
    ctx: Ctx, fs: UnitFilesystem, kubernetes: FakeKubernetes
) -> None:
    """A predecessor may have re-pointed the Service and lost its lease before
    it could say so; neither the databag nor this unit's memory can be trusted then."""
    state = ctx.run(ctx.on.leader_elected(), leader_state(fs))
    kubernetes.requests.clear()

    ctx.run(ctx.on.leader_elected(), state)

    assert [r.method for r in kubernetes.requests] == ['GET', 'PATCH']
    (selector,) = [r.body['spec']['selector'] for r in kubernetes.applies if r.body]
    assert selector['statefulset.kubernetes.io/pod-name'] == f'{APP}-0'


def test_upgrade_charm_reapplies_the_service(
    ctx: Ctx, fs: UnitFilesystem, kubernetes: FakeKubernetes
) -> None:
    state = ctx.run(ctx.on.leader_elected(), leader_state(fs))
    kubernetes.requests.clear()

    ctx.run(ctx.on.upgrade_charm(), state)

    assert len(kubernetes.applies) == 1


SERVICE = f'{APP}-primary'


@pytest.mark.parametrize(
    ('code', 'expected'),
    [
        (403, ops.BlockedStatus(
            f'not allowed to manage the {SERVICE} Service: '
            f'run `juju trust {APP} --scope=cluster`'
        )),
        (404, ops.WaitingStatus(
            f'StatefulSet {APP} or its namespace not found, '
            f'so {SERVICE} cannot be applied; retrying'
        )),
        (409, ops.WaitingStatus(f'conflict while applying the {SERVICE} Service; retrying')),
        (422, ops.BlockedStatus(
            f'Kubernetes rejected the {SERVICE} Service as invalid (422): please report a bug'
        )),
        (500, ops.WaitingStatus(
            f'Kubernetes API error 500 while applying the {SERVICE} Service; retrying'
        )),
    ],
)  # fmt: skip
@pytest.mark.parametrize('failing', ['GET', 'PATCH'])
def test_kubernetes_errors_become_statuses_and_are_retried(
    ctx: Ctx,
    fs: UnitFilesystem,
    kubernetes: FakeKubernetes,
    code: int,
    expected: ops.StatusBase,
    failing: str,
) -> None:
    # GET is the StatefulSet lookup, PATCH the apply itself.
    kubernetes.fail_with = code
    kubernetes.fail_method = failing

    out = ctx.run(ctx.on.leader_elected(), leader_state(fs))

    assert out.unit_status == expected
    assert out.app_status == expected
    # The rest of the leader duties still happened: peers can follow already.
    data = peer_app_data(out)
    assert data['leader-unit'] == f'"{APP}/0"'
    assert 'replicaof' not in fs.read_config()

    # The next event, even one that changes nothing else, retries; success clears it.
    kubernetes.fail_with = None
    kubernetes.requests.clear()
    recovered = ctx.run(ctx.on.update_status(), out)
    assert len(kubernetes.applies) == 1
    assert recovered.unit_status == ops.ActiveStatus('primary')
    assert recovered.app_status == ops.ActiveStatus(f'primary is {APP}/0')


@pytest.mark.parametrize(
    'failure',
    [
        primary_service.ConfigError('no kubeconfig'),
        primary_service.httpx2.ConnectError('connection refused'),
        ValueError('undecodable answer'),
    ],
    ids=['no-credentials', 'unreachable', 'bad-answer'],
)
def test_client_side_failures_become_a_waiting_status(
    ctx: Ctx, fs: UnitFilesystem, monkeypatch: pytest.MonkeyPatch, failure: Exception
) -> None:
    def broken_client(namespace: str, field_manager: str) -> Any:
        raise failure

    monkeypatch.setattr(primary_service, 'make_client', broken_client)
    out = ctx.run(ctx.on.leader_elected(), leader_state(fs))
    assert isinstance(out.unit_status, ops.WaitingStatus)
    assert out.unit_status.message.endswith('; retrying')


def test_leadership_is_rechecked_after_the_kubernetes_call(
    ctx: Ctx, fs: UnitFilesystem, kubernetes: FakeKubernetes, lease: Lease
) -> None:
    """The API call may take seconds: after it, a unit that no longer leads writes nothing."""
    original = kubernetes.handle

    def slow_apply(request: Any) -> Any:
        response = original(request)
        if request.method == 'PATCH':
            lease.run_out()  # Juju moved leadership while we were waiting
        return response

    kubernetes.handle = slow_apply  # type: ignore[method-assign]
    out = ctx.run(ctx.on.leader_elected(), leader_state(fs))

    assert len(kubernetes.applies) == 1
    assert peer_app_data(out) == {}
    assert out.unit_status == ops.WaitingStatus('waiting for the leader to publish its address')


def test_service_name_and_object_are_pure() -> None:
    service = primary_service.build_service(
        app_name='db', namespace='prod', leader_pod='db-2', port=6379, statefulset_uid='abc'
    )
    assert primary_service.service_name('db') == 'db-primary'
    assert service.metadata is not None
    assert service.metadata.namespace == 'prod'
    assert service.spec is not None
    selector = cast('dict[str, str]', service.spec.selector)  # pyright: ignore[reportUnknownMemberType]
    assert selector == {
        'app.kubernetes.io/name': 'db',
        'statefulset.kubernetes.io/pod-name': 'db-2',
    }


def test_no_apply_once_leadership_is_lost_after_the_lookup(
    ctx: Ctx, fs: UnitFilesystem, kubernetes: FakeKubernetes, lease: Lease
) -> None:
    """The StatefulSet lookup may be slow: the apply only happens if this unit still leads."""
    # The lookup (GET) is answered; the lease runs out meanwhile.
    kubernetes.on_request = lambda request: lease.run_out() if request.method == 'GET' else None
    out = ctx.run(ctx.on.leader_elected(), leader_state(fs))

    assert [r.method for r in kubernetes.requests] == ['GET']
    assert peer_app_data(out) == {}
    assert out.unit_status == ops.WaitingStatus('waiting for the leader to publish its address')


def test_the_real_client_uses_the_namespace_and_a_bounded_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hook must not hang on an unreachable API server: every request has a timeout."""
    kubeconfig = tmp_path / 'kubeconfig'
    kubeconfig.write_text(
        'apiVersion: v1\nkind: Config\ncurrent-context: c\n'
        'clusters: [{name: k, cluster: {server: "https://kubernetes.invalid"}}]\n'
        'contexts: [{name: c, context: {cluster: k, user: u, namespace: default}}]\n'
        'users: [{name: u, user: {token: t}}]\n'
    )
    monkeypatch.setenv('KUBECONFIG', str(kubeconfig))
    seen: dict[str, Any] = {}
    real_client = primary_service.Client

    def recording_client(**kwargs: Any) -> Any:
        seen.update(kwargs)
        return real_client(**kwargs)

    monkeypatch.setattr(primary_service, 'Client', recording_client)

    client = REAL_MAKE_CLIENT('my-model', field_manager=APP)

    assert client.namespace == 'my-model'
    assert seen['field_manager'] == APP
    timeout = seen['timeout']
    assert isinstance(timeout, primary_service.httpx2.Timeout)
    assert timeout.connect == timeout.read == 20.0
