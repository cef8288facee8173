# Copyright 2026 The valkey-leader-k8s authors
# See LICENSE file for licensing details.

"""The how-to's two Harness examples, written against this charm.

``ops.testing.Harness`` is deprecated; this file exists because the how-to
"Manage leadership changes" still shows it, and readers migrating old tests
should see both side by side. The Scenario equivalents, which every other test
in this suite uses, are:

* ``test_new_leader``: ``tests/unit/test_howto_rules.py::test_a_new_leader_keeps_the_password``
  and ``::test_leader_elected_is_observed_and_leader_settings_changed_is_not``;
* ``test_leader_sets_secrets``:
  ``tests/unit/test_charm.py::test_user_admin_password_replaces_the_generated_one``.

Nothing else in this project uses Harness.
"""

from __future__ import annotations

from collections.abc import Iterator

import ops
import pytest
from ops import testing

from charm import ValkeyLeaderCharm

APP = 'valkey-leader-k8s'


@pytest.fixture
def harness() -> Iterator[testing.Harness[ValkeyLeaderCharm]]:
    # The deprecation is expected, and asserted: with warnings as errors, any
    # other warning still fails the test.
    with pytest.warns(PendingDeprecationWarning, match='Harness is deprecated'):
        harness = testing.Harness(ValkeyLeaderCharm)
    harness.set_model_name('demo')
    harness.add_relation('valkey-peers', APP)
    harness.set_can_connect('valkey', True)
    harness.handle_exec('valkey', ['valkey-server', '--version'], result='Valkey server v=9.1.0')
    yield harness
    harness.cleanup()


def rendered_config(harness: testing.Harness[ValkeyLeaderCharm]) -> str:
    with harness.charm.unit.get_container('valkey').pull('/run/valkey/valkey.conf') as file:
        return file.read()


def test_new_leader(harness: testing.Harness[ValkeyLeaderCharm]) -> None:
    # Before the test, the unit is not leader.
    harness.set_leader(False)
    harness.begin()
    # Simulate Juju electing the unit as leader.
    harness.set_leader(True)
    # Assert that it was handled correctly: the new leader announced itself to
    # its peers and became the primary.
    relation = harness.model.get_relation('valkey-peers')
    assert relation is not None
    assert relation.data[harness.charm.app]['leader-unit'] == f'"{APP}/0"'
    assert 'replicaof' not in rendered_config(harness)
    harness.evaluate_status()
    assert harness.model.unit.status == ops.ActiveStatus('primary')


def test_leader_sets_secrets(harness: testing.Harness[ValkeyLeaderCharm]) -> None:
    # The unit is the leader throughout the test, and no leader-elected event
    # is emitted.
    harness.set_leader(True)
    harness.begin()
    secret_id = harness.add_model_secret(APP, content={'password': 'sssh-its-a-secret'})
    harness.update_config({'admin-password': secret_id})
    # Assert that the config-changed handler used the user's secret.
    assert 'requirepass "sssh-its-a-secret"' in rendered_config(harness)
    assert 'masterauth "sssh-its-a-secret"' in rendered_config(harness)
