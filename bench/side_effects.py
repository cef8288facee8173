# Copyright 2026 The valkey-leader-k8s authors
# See LICENSE file for licensing details.

"""What the workload suffers: side effects per event over a scripted life of the app.

Twenty events on three units: deploy, a leadership change, rotate-password,
then repeated events that change nothing. Every event that changes nothing
must have no side effect at all; every change of a unit's rendered file must
restart that unit exactly once; a leadership change restarts each unit at
most once.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import TYPE_CHECKING, Final

from bench.deployment import (
    CharmType,
    Deployment,
    EventFactory,
    config_changed,
    counting_side_effects,
    leader_elected,
    pebble_ready,
    peers_changed_by,
    rotate_password,
    update_status,
)

if TYPE_CHECKING:
    from tests.fake_kubernetes import FakeKubernetes

# What the workload and the world see. Reported beside them: Pebble layers
# added (which must also be zero on an event that changes nothing), and
# commands run in the container, which change nothing a client notices:
# "chowns" of the data directory, which ops.testing makes the charm repeat on
# every event (its mounts are symlinks, whose owner a chown never changes; in a
# pod the first chown sticks), and other "execs" (valkey-server --version after
# a restart); and every call to Pebble's API ("pebble calls"), each a round
# trip on the Pebble socket in a pod, changes or not.
CATEGORIES: Final = (
    'pushes',
    'restarts',
    'secret revisions',
    'peer-data writes',
    'kubernetes calls',
)
REPORTED: Final = (*CATEGORIES, 'layers', 'chowns', 'execs', 'pebble calls')


@dataclasses.dataclass(frozen=True)
class Step:
    """One event of the script."""

    unit: int
    event: EventFactory
    label: str
    changes: bool
    """Whether something real changed for this unit (otherwise: no side effect allowed)."""
    leader: int
    """Which unit Juju has made the leader by the time of this event."""
    pebble_up: bool = True
    phase: str = ''


SCRIPT: Final = (
    Step(0, leader_elected, 'leader-elected (Pebble not up yet)', True, 0, False, 'deploy'),
    Step(0, pebble_ready, 'valkey-pebble-ready', True, 0, phase='deploy'),
    Step(1, pebble_ready, 'valkey-pebble-ready', True, 0, phase='deploy'),
    Step(2, pebble_ready, 'valkey-pebble-ready', True, 0, phase='deploy'),
    Step(1, peers_changed_by(0), 'valkey-peers-relation-changed', False, 0, phase='deploy'),
    Step(0, config_changed, 'config-changed', False, 0, phase='steady'),
    Step(0, update_status, 'update-status', False, 0, phase='steady'),
    Step(1, update_status, 'update-status', False, 0, phase='steady'),
    Step(2, config_changed, 'config-changed', False, 0, phase='steady'),
    Step(0, update_status, 'update-status (no longer leader)', False, 1, phase='leader change'),
    Step(1, leader_elected, 'leader-elected', True, 1, phase='leader change'),
    Step(0, peers_changed_by(1), 'valkey-peers-relation-changed', True, 1, phase='leader change'),
    Step(2, peers_changed_by(1), 'valkey-peers-relation-changed', True, 1, phase='leader change'),
    Step(1, rotate_password, 'rotate-password action', True, 1, phase='rotate'),
    Step(0, peers_changed_by(1), 'valkey-peers-relation-changed', True, 1, phase='rotate'),
    Step(2, peers_changed_by(1), 'valkey-peers-relation-changed', True, 1, phase='rotate'),
    Step(1, config_changed, 'config-changed', False, 1, phase='no-op'),
    Step(0, config_changed, 'config-changed', False, 1, phase='no-op'),
    Step(2, config_changed, 'config-changed', False, 1, phase='no-op'),
    Step(1, update_status, 'update-status', False, 1, phase='no-op'),
)


@dataclasses.dataclass(frozen=True)
class Row:
    """What one step did."""

    number: int
    step: Step
    counts: dict[str, int]

    @property
    def verdict(self) -> str:
        """``ok``, or which rule the step broke."""
        counts = self.counts
        if not self.step.changes and any(counts[c] for c in (*CATEGORIES, 'layers')):
            return 'BUG: side effect on an event that changes nothing'
        if counts['restarts'] != counts['pushes']:
            return 'BUG: restarts differ from file changes'
        return 'ok'

    def as_json(self) -> dict[str, object]:
        """The row, for comparing runs."""
        return {
            'number': self.number,
            'unit': self.step.unit,
            'leader': self.step.leader,
            'phase': self.step.phase,
            'event': self.step.label,
            'changes_something': self.step.changes,
            'counts': self.counts,
            'verdict': self.verdict,
        }


def run_script(deployment: Deployment, charm: CharmType, kubernetes: FakeKubernetes) -> list[Row]:
    """Play :data:`SCRIPT` on a fresh deployment and count what every step did."""
    rows: list[Row] = []
    for number, step in enumerate(SCRIPT, start=1):
        deployment.leader = step.leader
        ctx = deployment.context(charm, step.unit)
        state = deployment.state(step.unit, can_connect=step.pebble_up)
        calls_before = len(kubernetes.requests)
        with counting_side_effects() as effects:
            out = ctx.run(step.event(ctx, state), state)
        deployment.absorb(step.unit, out)
        counts: Counter[str] = effects.take()
        counts['kubernetes calls'] = len(kubernetes.requests) - calls_before
        rows.append(Row(number, step, {c: counts[c] for c in REPORTED}))
    return rows


def check_rules(rows: list[Row]) -> dict[str, bool]:
    """The side-effect targets, each as pass/fail over the whole script."""
    no_op_clean = all(
        not any(row.counts[c] for c in (*CATEGORIES, 'layers'))
        for row in rows
        if not row.step.changes
    )
    one_restart_per_change = all(row.counts['restarts'] == row.counts['pushes'] for row in rows)
    restarts_in_leader_change: Counter[int] = Counter()
    for row in rows:
        if row.step.phase == 'leader change':
            restarts_in_leader_change[row.step.unit] += row.counts['restarts']
    leader_change_at_most_once = all(n <= 1 for n in restarts_in_leader_change.values())
    return {
        'zero side effects on events that change nothing': no_op_clean,
        'exactly one restart per change of the rendered file': one_restart_per_change,
        'a leadership change restarts each unit at most once': leader_change_at_most_once,
    }
