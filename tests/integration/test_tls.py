# Copyright 2026 The valkey-leader-k8s authors
# See LICENSE file for licensing details.

"""`juju integrate valkey-leader-k8s self-signed-certificates`: TLS on, a leadership change, off.

Like every module here, skipped without a reachable controller (see conftest).
The provider is Canonical's ``self-signed-certificates`` charm from Charmhub.
"""

from __future__ import annotations

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

PROVIDER = 'self-signed-certificates'
DEPLOY_TIMEOUT = 15 * 60
SETTLE_TIMEOUT = 5 * 60
LEADER_CHANGE_TIMEOUT = 5 * 60


def certificate_dirs(juju: jubilant.Juju, unit: str) -> list[str]:
    """The certificate directories in the unit's workload container (empty: TLS off)."""
    try:
        listed = juju.cli('ssh', '--container', 'valkey', unit, 'ls', '/run/valkey/tls')
    except jubilant.CLIError:
        return []
    return sorted(listed.split())


def ping(juju: jubilant.Juju, unit: str, *, tls: bool, host: str = '127.0.0.1') -> str:
    """PING the unit's server from its own container: over TLS (with its CA) or plaintext."""
    password = read_password(juju, unit)
    args = ['-h', host, '-p', '6379']
    if tls:
        (directory,) = certificate_dirs(juju, unit)
        args += ['--tls', '--cacert', f'/run/valkey/tls/{directory}/ca.pem']
    reply = valkey_cli(juju, unit, password, *args, 'PING')
    return reply.lines[-1] if reply.ok and reply.lines else f'failed: {reply.text}'


@pytest.mark.juju_setup
def test_integrate_a_certificates_provider(
    juju: jubilant.Juju, charm_path: Path, valkey_image: str
):
    juju.deploy(charm_path, APP, num_units=2, resources={'valkey-image': valkey_image}, trust=True)
    juju.deploy(PROVIDER, channel='1/stable')
    juju.integrate(APP, PROVIDER)
    juju.wait(lambda s: jubilant.all_active(s, APP, PROVIDER), timeout=DEPLOY_TIMEOUT)
    status = wait_for_roles(juju, units=2, timeout=SETTLE_TIMEOUT)
    for unit in status.apps[APP].units:
        wait_until(
            lambda unit=unit: certificate_dirs(juju, unit),
            lambda dirs: len(dirs) == 1,
            timeout=SETTLE_TIMEOUT,
            what=f'a certificate on {unit}',
        )


def test_tls_only_through_the_primary_service(juju: jubilant.Juju):
    status = wait_for_roles(juju, units=2, timeout=SETTLE_TIMEOUT)
    model = juju.show_model().short_name
    for unit in status.apps[APP].units:
        assert ping(juju, unit, tls=True) == 'PONG'
        assert ping(juju, unit, tls=False) != 'PONG', 'plaintext is refused'
        primary = f'{APP}-primary.{model}.svc.cluster.local'
        assert ping(juju, unit, tls=True, host=primary) == 'PONG'


def test_a_leadership_change_needs_no_new_certificate(juju: jubilant.Juju, kubectl: Kubectl):
    status = wait_for_roles(juju, units=2, timeout=SETTLE_TIMEOUT)
    old_leader = leader_of(status)
    (survivor,) = [u for u in status.apps[APP].units if u != old_leader]
    before = certificate_dirs(juju, survivor)
    new_leader = force_leader_change(juju, kubectl, old_leader, timeout=LEADER_CHANGE_TIMEOUT)
    wait_for_roles(juju, units=2, timeout=SETTLE_TIMEOUT)
    assert new_leader == survivor
    assert certificate_dirs(juju, new_leader) == before, 'the same certificate, no new request'
    model = juju.show_model().short_name
    primary = f'{APP}-primary.{model}.svc.cluster.local'
    assert ping(juju, new_leader, tls=True, host=primary) == 'PONG'


def test_removing_the_relation_turns_tls_off(juju: jubilant.Juju):
    juju.remove_relation(APP, PROVIDER)
    status = wait_for_roles(juju, units=2, timeout=SETTLE_TIMEOUT)
    for unit in status.apps[APP].units:
        wait_until(
            lambda unit=unit: certificate_dirs(juju, unit),
            lambda dirs: dirs == [],
            timeout=SETTLE_TIMEOUT,
            what=f'the certificate files to be gone from {unit}',
        )
        assert ping(juju, unit, tls=False) == 'PONG'
