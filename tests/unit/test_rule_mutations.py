# Copyright 2026 The valkey-leader-k8s authors
# See LICENSE file for licensing details.

"""The rule-mutation check itself: it must fail loudly rather than test nothing.

``tox -e mutations`` runs the mutations; these fast checks catch an anchor
that the code no longer holds, and a README table that no longer says what
the mutations are, as soon as either changes.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ..rule_mutations import (
    MUTATIONS,
    README,
    REPO_ROOT,
    Edit,
    Mutation,
    MutationError,
    Result,
    readme_block,
    table,
)


@pytest.mark.parametrize('mutation', MUTATIONS, ids=[m.name for m in MUTATIONS])
def test_every_anchor_is_in_the_code_exactly_once(mutation: Mutation) -> None:
    for edit in mutation.edits:
        text = (REPO_ROOT / edit.path).read_text()
        assert text.count(edit.anchor) == 1, f'{edit.path}: {edit.anchor!r}'


def test_every_mutation_names_a_test_that_must_fail() -> None:
    names = [m.name for m in MUTATIONS]
    assert len(names) == len(set(names))
    for mutation in MUTATIONS:
        assert mutation.tests, mutation.name
        for test in mutation.tests:
            path, _, name = test.partition('::')
            assert f'def {name.split("[")[0]}(' in (REPO_ROOT / 'tests' / path).read_text()


def test_the_readme_table_says_what_the_mutations_are() -> None:
    """README's rules table is the one ``tox -e mutations -- --write`` would write."""
    results = [
        Result(m, '; '.join(dict.fromkeys(e.where(REPO_ROOT) for e in m.edits)), m.tests, None)
        for m in MUTATIONS
    ]
    assert readme_block(README.read_text()) == table(results)


def test_a_missing_anchor_is_an_error(tmp_path: Path) -> None:
    (tmp_path / 'charm.py').write_text('if self.unit.is_leader():\n    pass\n')
    with pytest.raises(MutationError, match='occurs 0 times'):
        Edit('charm.py', 'if self.unit.is_leader() and True:', 'if True:').apply(tmp_path)


def test_an_anchor_found_twice_is_an_error(tmp_path: Path) -> None:
    (tmp_path / 'charm.py').write_text('a = 1\na = 1\n')
    with pytest.raises(MutationError, match='occurs 2 times'):
        Edit('charm.py', 'a = 1', 'a = 2').apply(tmp_path)


def test_a_mutation_that_breaks_the_syntax_is_an_error(tmp_path: Path) -> None:
    (tmp_path / 'charm.py').write_text('if True:\n    pass\n')
    with pytest.raises(SyntaxError):
        Edit('charm.py', '    pass', 'pass').apply(tmp_path)
    assert (tmp_path / 'charm.py').read_text() == 'if True:\n    pass\n'


def test_an_edit_names_the_function_that_holds_it(tmp_path: Path) -> None:
    (tmp_path / 'charm.py').write_text('def _on_start(self):\n    self.check()\n')
    edit = Edit('charm.py', 'self.check()', 'pass')
    assert edit.where(tmp_path) == '`_on_start`, `charm.py`'
    edit.apply(tmp_path)
    assert (tmp_path / 'charm.py').read_text() == 'def _on_start(self):\n    pass\n'
