# Copyright 2026 The valkey-leader-k8s authors
# See LICENSE file for licensing details.

"""`juju integrate <client> valkey-leader-k8s`: the client gets a user that works.

The client is ``valkey-test-client`` (``tests/integration/client_charm/``), a
minimal requirer of ``valkey_client`` written with the same interface library
as Canonical's Valkey clients; the test packs it (``CLIENT_CHARM_PATH`` names
a packed one instead). Its ``check`` action connects with the credentials it
received and reports Valkey's replies, never the password.

Like every module here, skipped without a reachable controller (see conftest).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import jubilant
import pytest

from .helpers import (
    APP,
    Kubectl,
    force_leader_change,
    leader_of,
    read_password,
    valkey_cli,
    wait_for_roles,
    wait_until,
)

CLIENT_APP = 'valkey-test-client'
CLIENT_CHARM_DIR = Path(__file__).parent / 'client_charm'
DEPLOY_TIMEOUT = 15 * 60
SETTLE_TIMEOUT = 5 * 60
LEADER_CHANGE_TIMEOUT = 5 * 60


@pytest.fixture(scope='module')
def client_charm_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``CLIENT_CHARM_PATH``, or the client charm packed here with charmcraft."""
    if env := os.environ.get('CLIENT_CHARM_PATH'):
        return Path(env).resolve()
    if shutil.which('charmcraft') is None:
        pytest.skip('charmcraft is not installed: set CLIENT_CHARM_PATH to a packed client')
    out = tmp_path_factory.mktemp('client-charm')
    subprocess.run(
        ['charmcraft', 'pack', '--project-dir', str(CLIENT_CHARM_DIR)],
        cwd=out,
        check=True,
        timeout=30 * 60,
    )
    # Depending on its version, charmcraft writes the file where it runs or
    # into the project directory.
    packed = sorted(out.glob('*.charm')) or sorted(CLIENT_CHARM_DIR.glob('*.charm'))
    if not packed:
        pytest.fail(f'charmcraft pack wrote no *.charm for {CLIENT_CHARM_DIR}', pytrace=False)
    return packed[0]


def check(juju: jubilant.Juju) -> dict[str, str]:
    task = juju.run(f'{CLIENT_APP}/0', 'check')
    return {str(k): str(v) for k, v in task.results.items()}


@pytest.mark.juju_setup
def test_integrate_a_client(
    juju: jubilant.Juju, charm_path: Path, resources: dict[str, str], client_charm_path: Path
):
    juju.deploy(charm_path, APP, num_units=2, resources=resources, trust=True)
    juju.deploy(client_charm_path, CLIENT_APP)
    juju.integrate(CLIENT_APP, APP)
    status = juju.wait(lambda s: jubilant.all_active(s, APP, CLIENT_APP), timeout=DEPLOY_TIMEOUT)
    assert status.apps[CLIENT_APP].units[f'{CLIENT_APP}/0'].workload_status.message == (
        'credentials received'
    )


def test_the_client_may_use_its_prefix_and_nothing_else(juju: jubilant.Juju):
    replies = check(juju)
    model = juju.show_model().short_name
    assert replies['endpoints'] == f'{APP}-primary.{model}.svc.cluster.local:6379'
    assert replies['resource'] == 'it-client:*'
    assert replies['tls'] == 'None'  # TLS fields empty until TLS exists
    assert replies['auth'] == '+OK'
    assert replies['own-prefix-write'] == '+OK'
    assert replies['own-prefix-read'] == 'ok'
    assert replies['other-prefix-write'].startswith('-NOPERM')
    assert replies['flushall'].startswith('-NOPERM')


def test_a_leadership_change_keeps_the_clients_credentials_working(
    juju: jubilant.Juju, kubectl: Kubectl
):
    before = check(juju)
    old_leader = leader_of(wait_for_roles(juju, units=2, timeout=SETTLE_TIMEOUT))
    new_leader = force_leader_change(juju, kubectl, old_leader, timeout=LEADER_CHANGE_TIMEOUT)
    wait_for_roles(juju, units=2, timeout=SETTLE_TIMEOUT)
    assert new_leader != old_leader
    after = check(juju)
    # Same user, same address (the <app>-primary Service follows the leader).
    assert (after['username'], after['endpoints']) == (before['username'], before['endpoints'])
    assert after['own-prefix-write'] == '+OK'


def test_removing_the_relation_removes_the_user(juju: jubilant.Juju):
    username = check(juju)['username']
    juju.remove_relation(CLIENT_APP, APP)
    status = wait_for_roles(juju, units=2, timeout=SETTLE_TIMEOUT)
    for unit in sorted(status.apps[APP].units):
        password = read_password(juju, unit)
        wait_until(
            lambda unit=unit, password=password: valkey_cli(juju, unit, password, 'ACL', 'USERS'),
            lambda users: users.ok and username not in users.lines,
            timeout=SETTLE_TIMEOUT,
            what=f'{username} to be gone from {unit}',
        )
