# Copyright 2026 The valkey-leader-k8s authors
# See LICENSE file for licensing details.

"""Break each rule of the how-to on purpose, and prove that its test fails.

For every mutation below: copy the charm to a temporary directory, make the
one breaking change (a text replacement whose anchor must occur exactly once,
so that the check fails loudly instead of silently testing nothing once the
code moves), run the tests that guard the rule, and require them to FAIL.
Before any of that, the same tests must pass on the unchanged copy.

The results are README.md's rules table (between the ``rules:start`` and
``rules:end`` markers): ``--write`` regenerates it, and by default a table
that differs from the results is an error, so the README cannot drift.

Run it with ``tox -e mutations`` (``-- --only NAME`` for one mutation,
``-- --list`` to see them, ``-- --suite`` to run every unit test on each
mutation and list all that fail).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Final

REPO_ROOT: Final = Path(__file__).resolve().parents[1]
README: Final = REPO_ROOT / 'README.md'
START: Final = '<!-- rules:start -->'
END: Final = '<!-- rules:end -->'

# Left out of the copy: history, environments and build output.
_NOT_COPIED: Final = (
    '.git',
    '.tox',
    'build',
    '*.charm',
    '__pycache__',
    '*.pyc',
    '.pytest_cache',
    '.coverage*',
    'venv',
    '.venv',
)


class MutationError(Exception):
    """The check itself cannot run as written: an anchor moved, or a baseline test fails."""


@dataclasses.dataclass(frozen=True)
class Edit:
    """Replace ``anchor`` (which must occur exactly once in ``path``) with ``replacement``."""

    path: str
    anchor: str
    replacement: str

    def _find(self, text: str) -> int:
        count = text.count(self.anchor)
        if count != 1:
            raise MutationError(
                f'{self.path}: the anchor occurs {count} times, not once; '
                f'update the mutation to the code:\n{textwrap.indent(self.anchor, "    ")}'
            )
        return text.index(self.anchor)

    def where(self, root: Path) -> str:
        """The function that holds the anchor, and its file, for README's table."""
        text = (root / self.path).read_text()
        before = text[: self._find(text) + len(self.anchor)]  # the anchor may be a def line
        functions = re.findall(r'^\s*def (\w+)', before, re.MULTILINE)
        return f'`{functions[-1]}`, `{self.path}`' if functions else f'`{self.path}`'

    def apply(self, root: Path) -> None:
        file = root / self.path
        text = file.read_text()
        self._find(text)
        mutated = text.replace(self.anchor, self.replacement)
        compile(mutated, str(file), 'exec')  # a mutation must break a rule, not the syntax
        file.write_text(mutated)


@dataclasses.dataclass(frozen=True)
class Mutation:
    """One way to break one rule, and the tests that must catch it."""

    name: str
    rule: str
    """The how-to's rule, as README's table says it."""
    breaks: str
    """What the mutation does, in README's words (the table adds where: function and file)."""
    edits: tuple[Edit, ...]
    tests: tuple[str, ...]
    """pytest node ids (relative to ``tests/``) of which every one must fail."""


def _edit(path: str, anchor: str, replacement: str) -> Edit:
    return Edit(path, textwrap.dedent(anchor), textwrap.dedent(replacement))


# The rules, in the order of the how-to.
OBSERVE = 'Observe `leader-elected`, not the deprecated `leader-settings-changed`'
TELL = 'The leader tells the others in the peer relation app databag; they react to its change'
GUARD = 'Only the leader does leader-only work: guard it with `is_leader()`'
RECHECK = 'Check `is_leader()` again right before each leader-only write (30 s guarantee)'
NO_DEFER = 'Defer nothing: a deferred event re-runs when this unit may no longer lead'
SECRET = (
    'Non-leaders read the app secret by the published id, with `refresh=True`; never create it'
)
NO_LEAK = 'The password stays in the secret: never in relation data'
# This charm's own, beyond the how-to: leadership is not data (docs/one-primary.md).
NEVER_WORSE = (
    'The leader chooses the primary, never a worse server: a live primary hands over first; '
    'with none alive, only a server with every write is promoted; nobody follows a replica'
)
# And leadership is not liveness (docs/liveness.md).
LIVENESS = (
    'The leader hands the role over before its server goes; a crashed primary never comes back '
    "as primary on its own, only by the leader's choice"
)
TLS_EVERYWHERE = (
    'With TLS on, the leader reads and changes every server over TLS: in plaintext it reads none'
)

SUITE: Final = ('unit', 'howto')
SELF_TESTS: Final = 'unit/test_rule_mutations.py'
HOWTO_TESTS: Final = 'unit/test_howto_rules.py'
COPYABLE: Final = 'howto/test_leadership.py'
CHARM_TESTS: Final = 'unit/test_charm.py'
CLIENT_TESTS: Final = 'unit/test_clients.py'
CHOICE_TESTS: Final = 'unit/test_primary_choice.py'
ELECTION_TESTS: Final = 'unit/test_election.py'
LIVE_TESTS: Final = 'unit/test_live.py'
LIVENESS_TESTS: Final = 'unit/test_liveness.py'

MUTATIONS: Final[tuple[Mutation, ...]] = (
    Mutation(
        'no-leader-elected',
        OBSERVE,
        '`leader-elected` not observed',
        (
            _edit(
                'src/charm.py',
                'framework.observe(self.on.leader_elected, self._on_leader_elected)',
                'pass',
            ),
        ),
        (f'{HOWTO_TESTS}::test_leader_elected_is_observed_and_leader_settings_changed_is_not',),
    ),
    Mutation(
        'leader-settings-changed',
        OBSERVE,
        '`leader-settings-changed` observed',
        (
            _edit(
                'src/charm.py',
                'framework.observe(self.on.leader_elected, self._on_leader_elected)',
                'framework.observe(self.on.leader_elected, self._on_leader_elected)\n'
                '        framework.observe(\n'
                '            self.on.leader_settings_changed, self._on_input_changed\n'
                '        )',
            ),
        ),
        (f'{HOWTO_TESTS}::test_leader_elected_is_observed_and_leader_settings_changed_is_not',),
    ),
    Mutation(
        'no-publish',
        TELL,
        'the leader record not saved',
        (_edit('src/charm.py', 'peers.save(record, self.app)', 'pass'),),
        (f'{HOWTO_TESTS}::test_the_leader_tells_peers_through_the_peer_app_databag',),
    ),
    Mutation(
        'no-peers-changed',
        TELL,
        '`valkey-peers-relation-changed` not observed',
        (
            _edit(
                'src/charm.py',
                'framework.observe(self.on[PEER_ENDPOINT].relation_changed, '
                'self._on_peers_changed)',
                'pass',
            ),
        ),
        (f'{HOWTO_TESTS}::test_peers_react_to_relation_changed_by_following_the_leader',),
    ),
    Mutation(
        'no-peers-departed',
        TELL,
        '`valkey-peers-relation-departed` not observed',
        (
            _edit(
                'src/charm.py',
                'framework.observe(self.on[PEER_ENDPOINT].relation_departed, '
                'self._on_peer_departed)',
                '',
            ),
        ),
        (f'{HOWTO_TESTS}::test_a_new_leader_acts_on_relation_departed_before_leader_elected',),
    ),
    Mutation(
        'no-guard-reconcile',
        GUARD,
        "every unit does the leader's duties",
        (
            _edit(
                'src/charm.py',
                """\
                if self.unit.is_leader():
                            try:
                                return self._perform_leader_duties(""",
                """\
                if True:
                            try:
                                return self._perform_leader_duties(""",
            ),
        ),
        (
            f'{HOWTO_TESTS}::test_status_leader[False]',
            f'{COPYABLE}::test_leader_is_primary_and_the_others_replicate_from_it[False]',
        ),
    ),
    Mutation(
        'no-guard-secret-remove',
        GUARD,
        'any unit removes old secret revisions',
        (
            _edit(
                'src/charm.py',
                'if not self.unit.is_leader():\n            return',
                'if False:\n            return',
            ),
        ),
        (f'{CHARM_TESTS}::test_a_follower_never_removes_secret_revisions',),
    ),
    Mutation(
        'no-guard-rotate',
        GUARD,
        'any unit rotates the password',
        (
            _edit(
                'src/charm.py',
                'self._ensure_still_leader()\n'
                '            rotated = password_secret.rotate(\n'
                '                self.model, self._published_record(), '
                'before_write=self._ensure_still_leader\n'
                '            )',
                """\
                rotated = password_secret.rotate(
                                self.model, self._published_record(), before_write=lambda: None
                            )""",
            ),
        ),
        (f'{CHARM_TESTS}::test_rotate_password_on_a_follower_fails_naming_the_leader',),
    ),
    *(
        Mutation(
            f'defer-{event}',
            NO_DEFER,
            f'`{event}` deferred on the leader',
            (
                _edit(
                    'src/charm.py',
                    f'def {handler}(self, {arg}: {kind}) -> None:\n',
                    f'def {handler}(self, {arg}: {kind}) -> None:\n'
                    f'        if self.unit.is_leader():\n'
                    f'            {arg}.defer()\n',
                ),
            ),
            (f'{HOWTO_TESTS}::test_nothing_is_deferred',),
        )
        for event, handler, arg, kind in (
            ('leader-elected', '_on_leader_elected', '_', 'ops.LeaderElectedEvent'),
            (
                'valkey-peers-relation-changed',
                '_on_peers_changed',
                '_',
                'ops.RelationChangedEvent',
            ),
            ('upgrade-charm', '_on_upgrade_charm', '_', 'ops.UpgradeCharmEvent'),
            ('config-changed', '_on_config_changed', '_', 'ops.ConfigChangedEvent'),
            ('valkey-pebble-ready', '_on_input_changed', '_', 'ops.EventBase'),
            ('secret-remove', '_on_secret_remove', 'event', 'ops.SecretRemoveEvent'),
        )
    ),
    Mutation(
        'no-recheck-secret-create',
        RECHECK,
        'no check before creating the secret',
        (
            _edit(
                'src/password_secret.py',
                """\
                before_write()
                        secret = model.app.add_secret(""",
                'secret = model.app.add_secret(',
            ),
        ),
        (f'{HOWTO_TESTS}::test_a_lease_that_runs_out_after_the_first_check_stops_every_write',),
    ),
    Mutation(
        'no-recheck-secret-write',
        RECHECK,
        'no check before a new secret revision',
        (
            _edit(
                'src/password_secret.py',
                """\
                before_write()
                    secret.set_content(""",
                'secret.set_content(',
            ),
        ),
        (f'{CHARM_TESTS}::test_rotate_password_fails_if_leadership_is_lost_before_the_write',),
    ),
    Mutation(
        'no-recheck-primary-role',
        RECHECK,
        'no check before choosing the primary',
        (
            _edit(
                'src/charm.py',
                """\
                self._ensure_still_leader()
                        role, roles_changed = self._choose_primary(""",
                'role, roles_changed = self._choose_primary(',
            ),
        ),
        (f'{HOWTO_TESTS}::test_leadership_is_checked_again_right_before_each_write',),
    ),
    Mutation(
        'no-recheck-demote',
        RECHECK,
        'no check before demoting a second primary',
        (
            _edit(
                'src/workload/primary_choice.py',
                """\
                for other in decision.demote:
                        before_change()""",
                'for other in decision.demote:',
            ),
        ),
        (f'{CHOICE_TESTS}::test_nothing_is_changed_once_leadership_is_lost[demote]',),
    ),
    Mutation(
        'no-recheck-hand-over',
        RECHECK,
        'no check before asking the primary to hand over',
        (
            _edit(
                'src/workload/primary_choice.py',
                """\
                if decision.action == 'hand-over':
                        before_change()""",
                "if decision.action == 'hand-over':",
            ),
        ),
        (f'{CHOICE_TESTS}::test_nothing_is_changed_once_leadership_is_lost[hand-over]',),
    ),
    Mutation(
        'no-recheck-promote',
        RECHECK,
        "no check before promoting another unit's server",
        (
            _edit(
                'src/workload/primary_choice.py',
                """\
                if decision.action == 'promote' and primary != leader:
                        before_change()""",
                "if decision.action == 'promote' and primary != leader:",
            ),
        ),
        (f'{CHOICE_TESTS}::test_nothing_is_changed_once_leadership_is_lost[promote]',),
    ),
    Mutation(
        'no-recheck-service',
        RECHECK,
        'no check before applying the Service',
        (
            _edit(
                'src/primary_service.py',
                """\
                before_write()
                        client.apply(""",
                'client.apply(',
            ),
        ),
        (f'{HOWTO_TESTS}::test_leadership_is_checked_again_right_before_each_write',),
    ),
    Mutation(
        'no-recheck-save',
        RECHECK,
        'no check before saving the leader record',
        (
            _edit(
                'src/charm.py',
                """\
                self._ensure_still_leader()
                            peers.save(record, self.app)""",
                'peers.save(record, self.app)',
            ),
        ),
        (f'{HOWTO_TESTS}::test_leadership_is_checked_again_right_before_each_write',),
    ),
    Mutation(
        'no-recheck-client-answer',
        RECHECK,
        'no check before answering a client',
        (
            _edit(
                'src/clients.py',
                """\
                before_write()
                        provider.set_responses(""",
                'provider.set_responses(',
            ),
        ),
        (f'{CLIENT_TESTS}::test_every_client_write_comes_right_after_a_leadership_check',),
    ),
    Mutation(
        'no-recheck-client-request-copy',
        RECHECK,
        "no check before storing a client's request",
        (
            _edit(
                'src/clients.py',
                """\
                before_write()
                            provider.compute_diff(""",
                'provider.compute_diff(',
            ),
        ),
        (f'{CLIENT_TESTS}::test_every_client_write_comes_right_after_a_leadership_check',),
    ),
    Mutation(
        'no-recheck-client-refusal',
        RECHECK,
        'no check before telling a client what is refused',
        (
            _edit(
                'src/clients.py',
                """\
                before_write()
                    provider.clear_statuses(""",
                'provider.clear_statuses(',
            ),
        ),
        (f'{CLIENT_TESTS}::test_every_client_write_comes_right_after_a_leadership_check',),
    ),
    Mutation(
        'no-recheck-client-secret-removal',
        RECHECK,
        "no check before removing a gone client's secret",
        (
            _edit(
                'src/clients.py',
                """\
                before_write()
                        with contextlib.suppress(ops.SecretNotFoundError):""",
                'with contextlib.suppress(ops.SecretNotFoundError):',
            ),
        ),
        (f'{CLIENT_TESTS}::test_every_client_write_comes_right_after_a_leadership_check',),
    ),
    Mutation(
        'no-recheck-client-users',
        RECHECK,
        "no check before publishing the clients' users",
        (
            _edit(
                'src/clients.py',
                """\
                before_write()
                    peer.data[app][PEER_KEY] = encoded""",
                'peer.data[app][PEER_KEY] = encoded',
            ),
        ),
        (f'{CLIENT_TESTS}::test_every_client_write_comes_right_after_a_leadership_check',),
    ),
    Mutation(
        'follower-creates-secret',
        SECRET,
        'a non-leader finds or creates the secret like the leader',
        (
            _edit(
                'src/charm.py',
                'password = password_secret.read_published(self.model, leader.password_secret_id)',
                'password = password_secret.ensure(\n'
                '            self.model, leader, before_write=lambda: None\n'
                '        ).password',
            ),
        ),
        (f'{HOWTO_TESTS}::test_non_leaders_read_the_secret_by_the_published_id',),
    ),
    Mutation(
        'follower-no-refresh',
        SECRET,
        'a non-leader reads without `refresh=True`',
        (
            _edit(
                'src/password_secret.py',
                'content = model.get_secret(id=secret_id).get_content(refresh=True)',
                'content = model.get_secret(id=secret_id).get_content()',
            ),
        ),
        (f'{CHARM_TESTS}::test_rotate_password_on_the_leader_and_the_followers_follow',),
    ),
    Mutation(
        'password-in-relation-data',
        NO_LEAK,
        'the leader publishes the password',
        (
            _edit(
                'src/charm.py',
                'peers.save(record, self.app)',
                'peers.save(record, self.app)\n'
                "            peers.data[self.app]['password'] = app_password.password",
            ),
        ),
        ('unit/test_secrecy.py::test_the_password_appears_only_in_the_config_file',),
    ),
    Mutation(
        'leader-promoted-over-a-live-primary',
        NEVER_WORSE,
        "the leader's server is promoted whatever it holds",
        (
            _edit(
                'src/workload/election.py',
                'return _from_live_primary(leader, primaries[0], servers)',
                "return Decision('promote', leader)",
            ),
        ),
        (
            f'{ELECTION_TESTS}::test_a_new_leader_still_in_its_first_sync_leaves_the_primary_in_charge',
            f'{ELECTION_TESTS}::test_a_new_leader_in_sync_asks_the_live_primary_to_hand_over',
        ),
    ),
    Mutation(
        'behind-server-promoted',
        NEVER_WORSE,
        'with no primary alive, any ready server may be promoted',
        (
            _edit(
                'src/workload/election.py',
                'best = [s for s in ready if all(at_least_as_far(s, other) '
                'for other in answered)]',
                'best = ready',
            ),
        ),
        (
            f'{ELECTION_TESTS}::test_without_a_primary_a_leader_behind_another_replica_is_not_promoted',
        ),
    ),
    Mutation(
        'minority-promotes',
        NEVER_WORSE,
        'with no primary alive, a server is promoted though most servers did not answer',
        (_edit('src/workload/election.py', 'if len(answered) < quorum(units):', 'if False:'),),
        (
            f'{ELECTION_TESTS}::test_without_a_primary_nobody_is_promoted_unless_most_servers_answer',
        ),
    ),
    Mutation(
        'refusing-primary-overruled',
        NEVER_WORSE,
        'a primary that refuses the leader but streams to a replica is overruled',
        (_edit('src/workload/election.py', 'if hidden:', 'if False:'),),
        (
            f'{ELECTION_TESTS}::test_a_primary_that_refuses_the_leader_but_streams_to_it_is_not_overruled',
        ),
    ),
    Mutation(
        'pebble-restarts-a-crash',
        LIVENESS,
        'Pebble restarts a crashed server from its file and last snapshot',
        (
            _edit(
                'src/workload/container.py', "'on-failure': 'ignore',", "'on-failure': 'restart',"
            ),
        ),
        (f'{CHARM_TESTS}::test_pebble_runs_valkey_from_the_file_only',),
    ),
    Mutation(
        'pebble-starts-the-server',
        LIVENESS,
        'Pebble starts the server when its container restarts, before any hook',
        (_edit('src/workload/container.py', "'startup': 'disabled',", "'startup': 'enabled',"),),
        (f'{CHARM_TESTS}::test_pebble_runs_valkey_from_the_file_only',),
    ),
    Mutation(
        'acting-primary-restarts-as-primary',
        LIVENESS,
        'a crashed acting primary comes back as the primary its record names',
        (
            _edit(
                'src/charm.py',
                'if role == Role.PRIMARY and not self._server_running():',
                'if False:',
            ),
        ),
        (
            f'{LIVENESS_TESTS}::test_a_crashed_acting_primary_comes_back_as_a_replica_of_the_leader',
        ),
    ),
    Mutation(
        'stop-hands-nothing-over',
        LIVENESS,
        "the leader's `stop` hands nothing over",
        (_edit('src/charm.py', "self._step_down('pod is stopping')", 'pass'),),
        (f'{LIVENESS_TESTS}::test_the_leaders_stop_hands_the_role_over_and_publishes_it',),
    ),
    Mutation(
        'leaving-leader-takes-the-role-again',
        LIVENESS,
        'a leader leaving by scale-down takes the role back on its next hook',
        (
            _edit(
                'src/charm.py',
                """\
                if self._stored.leaving:
                            return None""",
                """\
                if False:
                            return None""",
            ),
        ),
        (
            f'{LIVENESS_TESTS}::'
            'test_a_leader_leaving_by_scale_down_hands_over_and_never_takes_the_role_again',
        ),
    ),
    Mutation(
        'role-not-taken-back',
        LIVENESS,
        'the leader does not take the role back once its restarted server caught up',
        (
            _edit(
                'src/charm.py',
                'if role != Role.PRIMARY and self._caught_up(password, tls_material):',
                'if False:',
            ),
        ),
        (
            f'{LIVENESS_TESTS}::'
            'test_the_leader_takes_the_role_back_once_its_restarted_server_caught_up',
        ),
    ),
    Mutation(
        'step-down-on-any-unit',
        GUARD,
        "any unit hands its server's role over in `stop`",
        (
            _edit(
                'src/charm.py',
                'if not self.unit.is_leader() or previous is None',
                'if previous is None',
            ),
        ),
        (f'{LIVENESS_TESTS}::test_an_acting_primarys_stop_hands_nothing_over',),
    ),
    Mutation(
        'no-check-before-step-down-record',
        RECHECK,
        'no check before publishing the server that took over in `stop`',
        (
            _edit(
                'src/charm.py',
                'self._ensure_still_leader()  # the handover and the Kubernetes call took time',
                'pass',
            ),
        ),
        (
            f'{LIVENESS_TESTS}::test_a_lease_that_runs_out_during_the_service_call_publishes_nothing',
        ),
    ),
    Mutation(
        'replica-followed',
        NEVER_WORSE,
        'a server follows whatever the record names',
        (
            _edit(
                'src/workload/live.py',
                """\
                if role != 'master':
                        return f'{host} is not a primary ({role})'""",
                """\
                if False:
                        return ''""",
            ),
        ),
        (f'{LIVE_TESTS}::test_a_server_follows_only_a_server_that_says_it_is_a_primary',),
    ),
    Mutation(
        'plaintext-survey',
        TLS_EVERYWHERE,
        'the survey connects in plaintext',
        (
            _edit(
                'src/workload/survey.py',
                """\
                with client.authenticated(address, passwords, timeout, transports) as connected:
                            if isinstance(connected, client.NoConnection):
                                auth""",
                """\
                with client.authenticated(address, passwords, timeout) as connected:
                            if isinstance(connected, client.NoConnection):
                                auth""",
            ),
        ),
        (f'{CHOICE_TESTS}::test_over_tls_the_survey_reads_every_server',),
    ),
)


# -- Running the tests on a copy.


@dataclasses.dataclass(frozen=True)
class Outcome:
    failed: tuple[str, ...]
    """Node ids (relative to ``tests/``) that failed."""
    errors: tuple[str, ...]
    output: str


def copy_charm(into: Path) -> None:
    """The repository as a fresh clone has it: tests read the docs and tox.ini too."""
    shutil.copytree(REPO_ROOT, into, ignore=shutil.ignore_patterns(*_NOT_COPIED))


def run_tests(root: Path, tests: Iterable[str], ignore: str | None = None) -> Outcome:
    env = {
        **os.environ,
        'PYTHONPATH': str(root / 'src'),
        'PYTHONDONTWRITEBYTECODE': '1',  # a mutated module must never meet a stale .pyc
    }
    result = subprocess.run(
        [
            sys.executable,
            '-m',
            'pytest',
            '-q',
            '-p',
            'no:cacheprovider',
            '--tb=no',
            '-rfE',
            '--no-header',
            *([f'--ignore=tests/{ignore}'] if ignore else []),
            *(f'tests/{test}' for test in tests),
        ],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    output = result.stdout + result.stderr
    # `FAILED tests/unit/test_x.py::test_y[a param] - message`; an ERROR with a
    # test id is that test's fixture failing, any other ERROR a module that
    # could not even be collected.
    summary = re.findall(r'^(FAILED|ERROR) tests/(.+?)(?: - .*)?$', output, re.MULTILINE)
    failed = [test for kind, test in summary if kind == 'FAILED' or '::' in test]
    errors = [test for kind, test in summary if kind == 'ERROR' and '::' not in test]
    if result.returncode not in (0, 1) and not errors:
        errors = [f'pytest exited with {result.returncode}']
    return Outcome(tuple(failed), tuple(errors), output)


@dataclasses.dataclass(frozen=True)
class Result:
    mutation: Mutation
    where: str
    caught_by: tuple[str, ...]
    problem: str | None


def check(mutation: Mutation, workdir: Path, *, suite: bool = False) -> Result:
    root = workdir / mutation.name
    copy_charm(root)
    where = '; '.join(dict.fromkeys(edit.where(root) for edit in mutation.edits))
    for edit in mutation.edits:
        edit.apply(root)
    # The checks of this script's anchors fail on any mutated copy, by design.
    outcome = run_tests(root, SUITE if suite else mutation.tests, ignore=SELF_TESTS)
    if outcome.errors:
        return Result(
            mutation, where, (), f'the tests could not run: {outcome.errors}\n{outcome.output}'
        )
    missed = [test for test in mutation.tests if not _failed(test, outcome.failed)]
    if missed:
        return Result(mutation, where, outcome.failed, f'still passes: {", ".join(missed)}')
    return Result(mutation, where, outcome.failed, None)


def _failed(test: str, failed: Iterable[str]) -> bool:
    """Whether ``test`` failed: itself, or (a test without parameters named) any of its cases."""
    return any(f == test or ('[' not in test and f.startswith(f'{test}[')) for f in failed)


def baseline(mutations: Sequence[Mutation], workdir: Path) -> None:
    """The tests must pass on the unchanged charm, or their failing proves nothing."""
    root = workdir / 'unchanged'
    copy_charm(root)
    tests = sorted({test for mutation in mutations for test in mutation.tests})
    outcome = run_tests(root, tests)
    if outcome.failed or outcome.errors:
        raise MutationError(f'on the unchanged charm:\n{outcome.output}')


# -- README's table.


def table(results: Sequence[Result]) -> str:
    lines = [
        START,
        '<!-- Generated by `tox -e mutations -- --write`: edit tests/rule_mutations.py. -->',
        '| rule | broken on purpose (where in the code) | the test that then fails |',
        '|---|---|---|',
    ]
    previous_rule = None
    for result in results:
        mutation = result.mutation
        rule = '' if mutation.rule == previous_rule else mutation.rule
        previous_rule = mutation.rule
        tests = ', '.join(f'`tests/{test}`' for test in mutation.tests)
        lines.append(f'| {rule} | {mutation.breaks} ({result.where}) | {tests} |')
    lines.append(END)
    return '\n'.join(lines)


def readme_block(text: str) -> str | None:
    match = re.search(re.escape(START) + r'.*?' + re.escape(END), text, re.DOTALL)
    return match.group(0) if match else None


def write_readme(block: str) -> None:
    text = README.read_text()
    current = readme_block(text)
    if current is None:
        text = text.rstrip('\n') + '\n\n' + block + '\n'
    else:
        text = text.replace(current, block)
    README.write_text(text)


# -- Command line.


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description='Break each how-to rule; its test must fail.')
    parser.add_argument('--write', action='store_true', help="regenerate README.md's table")
    parser.add_argument('--only', action='append', metavar='NAME', help='run these mutations')
    parser.add_argument('--list', action='store_true', help='list the mutations and exit')
    parser.add_argument(
        '--suite',
        action='store_true',
        help='run the whole unit suite on each mutation, to list every test that fails (slow)',
    )
    args = parser.parse_args(argv)
    mutations = [m for m in MUTATIONS if not args.only or m.name in args.only]
    if args.list or not mutations:
        for mutation in MUTATIONS:
            print(f'{mutation.name}: {mutation.breaks}')
        return 0 if args.list else 2
    with tempfile.TemporaryDirectory(prefix='rule-mutations-') as tmp:
        workdir = Path(tmp)
        try:
            baseline(mutations, workdir)
            results: list[Result] = []
            for mutation in mutations:
                result = check(mutation, workdir, suite=args.suite)
                results.append(result)
                verdict = 'caught' if result.problem is None else 'NOT CAUGHT'
                print(f'{verdict}: {mutation.name} -> {", ".join(result.caught_by) or "-"}')
                if result.problem:
                    print(textwrap.indent(result.problem, '    '))
        except MutationError as e:
            print(f'error: {e}', file=sys.stderr)
            return 2
    failures = [r for r in results if r.problem is not None]
    if failures:
        print(f'{len(failures)} of {len(results)} mutations were not caught', file=sys.stderr)
        return 1
    if args.only:
        return 0  # the table is about every rule
    block = table(results)
    if args.write:
        write_readme(block)
        print(f'wrote the rules table in {README.name}')
    elif readme_block(README.read_text()) != block:
        print(
            f"{README.name}'s rules table differs from these results: "
            'run `tox -e mutations -- --write`',
            file=sys.stderr,
        )
        return 1
    print(f'all {len(results)} mutations caught')
    return 0


if __name__ == '__main__':
    sys.exit(main())
