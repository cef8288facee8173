# Copyright 2026 The valkey-leader-k8s authors
# See LICENSE file for licensing details.

"""What every hook pays before it does anything: the modules it imports.

Juju starts a new Python process for every event on every unit, so whatever
``import charm`` loads is paid thousands of times a day. ``tox -e bench``
measures the time; these tests count what is imported, in fresh processes,
and never time anything.
"""

from __future__ import annotations

import textwrap

import pytest

from .conftest import imported_after


def test_importing_the_charm_imports_none_of_the_heavy_modules() -> None:
    assert imported_after('import sys\nimport charm') == []


def test_a_hook_with_nothing_to_render_does_not_import_jinja2() -> None:
    """Events the charm does not observe, and units with nothing to render yet."""
    common = textwrap.dedent("""
        import sys
        from pathlib import Path
        from ops import testing
        from charm import ValkeyLeaderCharm
        ctx = testing.Context(ValkeyLeaderCharm, unit_id=1)
        follower = testing.State(
            leader=False,
            relations={testing.PeerRelation('valkey-peers')},
            containers={testing.Container('valkey', can_connect=True)},
        )
        # start is not observed: only collect-status runs. The follower has no
        # leader to follow yet, so config-changed has nothing to render.
        ctx.run(ctx.on.start(), follower)
        ctx.run(ctx.on.config_changed(), follower)
    """)
    assert imported_after(common) == []
    # And the probe sees jinja2 once something is rendered.
    renders = common + textwrap.dedent("""
        from workload import config
        config.render_config(
            config.ValkeySettings(
                password='p', primary_address=None, log_level='notice',
                maxmemory='', maxmemory_policy='noeviction',
            ),
            Path('templates'),
        )
    """)
    assert imported_after(renders) == ['jinja2']


NOTHING_TO_APPLY = textwrap.dedent("""
    import shutil, tempfile
    from ops import testing
    from charm import ValkeyLeaderCharm
    root = tempfile.mkdtemp()
    shutil.copytree('templates', root + '/templates')
    ctx = testing.Context(ValkeyLeaderCharm, unit_id=0, charm_root=root)
    # The config file's directory outlives the hook, as in a pod.
    run = testing.Mount(location='/run/valkey', source=tempfile.mkdtemp())
    leader = testing.State(
        leader=True,
        relations={testing.PeerRelation('valkey-peers', id=1)},
        containers={testing.Container('valkey', can_connect=True, mounts={'run': run})},
    )
    # The first hook writes the file and starts Valkey; the second finds both
    # in place (the Service was pointed in the first: the fake API is patched out).
    import primary_service
    primary_service.repoint = lambda *args, **kwargs: None
    leader = ctx.run(ctx.on.config_changed(), leader)
    assert leader.unit_status.name == 'active', leader.unit_status
    leader = ctx.run(ctx.on.update_status(), leader)
    assert leader.unit_status.name == 'active', leader.unit_status
""")


def test_a_hook_with_nothing_to_apply_imports_no_client_machinery() -> None:
    """The common hook: a running unit, nothing changed; no Valkey client, no client code."""
    imported = imported_after(NOTHING_TO_APPLY)
    assert not {'valkey', 'workload.live', 'workload.handover', 'clients', 'dpcharmlibs'} & set(
        imported
    ), imported


def test_the_probe_sees_an_import_when_there_is_one() -> None:
    """The leader's Kubernetes path does load lightkube: the probe can tell."""
    assert imported_after('import charm\nimport primary_service') == ['lightkube']


CLIENT_PROBE = textwrap.dedent("""
    import json
    from ops import testing
    from charm import ValkeyLeaderCharm
    ctx = testing.Context(ValkeyLeaderCharm, unit_id=0)
    clients = []
    if sys.argv[1] == 'with-client':
        request = {'resource': 'myapp:*', 'request-id': 'r1', 'salt': 's'}
        clients.append(testing.Relation(
            'valkey-client', id=7, remote_app_name='myapp',
            remote_app_data={'version': 'v1', 'requests': json.dumps([request])},
        ))
    leader = testing.State(
        leader=True,
        relations={testing.PeerRelation('valkey-peers', id=1), *clients},
        containers={testing.Container('valkey', can_connect=False)},
    )
    # Every event a leader without clients sees, and one with a client relation.
    for event in (ctx.on.update_status(), ctx.on.config_changed()):
        leader = ctx.run(event, leader)
""")


def test_a_deployment_without_clients_never_imports_the_interface_library() -> None:
    """The import-cost target (1.15x a minimal charm) holds for a deployment without clients."""
    imported = imported_after('import sys\n' + CLIENT_PROBE, 'no-client')
    assert 'dpcharmlibs' not in imported
    assert 'pydantic' not in imported
    assert 'cryptography' not in imported


def test_the_probe_sees_the_interface_library_once_a_client_is_related() -> None:
    imported = imported_after('import sys\n' + CLIENT_PROBE, 'with-client')
    assert {'dpcharmlibs', 'pydantic', 'cryptography'} <= set(imported)


TLS_PROBE = textwrap.dedent("""
    from ops import testing
    from charm import ValkeyLeaderCharm
    ctx = testing.Context(ValkeyLeaderCharm, unit_id=0)
    relations = {testing.PeerRelation('valkey-peers', id=1)}
    if sys.argv[1] == 'with-certificates':
        relations.add(testing.Relation('certificates', id=9, remote_app_name='ca'))
    leader = testing.State(
        leader=True,
        relations=relations,
        containers={testing.Container('valkey', can_connect=False)},
    )
    for event in (ctx.on.update_status(), ctx.on.config_changed(), ctx.on.leader_elected()):
        leader = ctx.run(event, leader)
""")


def test_a_deployment_without_tls_never_imports_the_certificates_library() -> None:
    """Every unit reconciles its certificate on every event: without the relation, for free."""
    imported = imported_after('import sys\n' + TLS_PROBE, 'without-certificates')
    assert {'charmlibs', 'pydantic', 'cryptography'}.isdisjoint(imported)


def test_the_probe_sees_the_certificates_library_once_the_relation_exists() -> None:
    imported = imported_after('import sys\n' + TLS_PROBE, 'with-certificates')
    assert {'charmlibs', 'pydantic', 'cryptography'} <= set(imported)


COS_PROBE = textwrap.dedent("""
    import json
    from ops import testing
    from charm import ValkeyLeaderCharm
    ctx = testing.Context(ValkeyLeaderCharm, unit_id=0)
    endpoint = sys.argv[1]
    cos = []
    if endpoint:
        remote = {0: {'endpoint': json.dumps({'url': 'http://loki:3100/loki/api/v1/push'})}}
        cos.append(testing.Relation(endpoint, id=9, remote_units_data=remote))
    leader = testing.State(
        leader=True,
        relations={testing.PeerRelation('valkey-peers', id=1), *cos},
        containers={testing.Container('valkey', can_connect=False)},
    )
    for event in (ctx.on.leader_elected(), ctx.on.upgrade_charm(), ctx.on.update_status()):
        leader = ctx.run(event, leader)
    if cos:  # the relation's own event
        relation = leader.get_relation(9)
        joined = ctx.on.relation_changed if endpoint == 'logging' else ctx.on.relation_joined
        leader = ctx.run(joined(relation, remote_unit=0), leader)
""")
COS_MODULES = {'observability.scrape', 'observability.dashboard', 'observability.logs'}


def test_a_deployment_without_cos_never_imports_the_cos_modules() -> None:
    """Leader elected, refreshed, updated: none of the COS modules without a relation."""
    assert COS_MODULES.isdisjoint(imported_after('import sys\n' + COS_PROBE, ''))


@pytest.mark.parametrize(
    ('endpoint', 'module'),
    [
        ('metrics-endpoint', 'observability.scrape'),
        ('grafana-dashboard', 'observability.dashboard'),
        ('logging', 'observability.logs'),
    ],
)
def test_each_cos_relation_imports_its_own_module_only(endpoint: str, module: str) -> None:
    imported = set(imported_after('import sys\n' + COS_PROBE, endpoint))
    assert imported & COS_MODULES == {module}
