# Copyright 2026 The valkey-leader-k8s authors
# See LICENSE file for licensing details.

"""The docs agree with the files they describe.

Each figure is stated once; where a doc must repeat something that lives
elsewhere (a coverage floor, a tox environment, a path, a test count), this
checks the copy against the original, so that the two cannot drift apart.
Pure file reading: no charm, no Juju.
"""

from __future__ import annotations

import ast
import configparser
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / 'README.md'
CONTRIBUTING = ROOT / 'CONTRIBUTING.md'
DOCS = sorted((ROOT / 'docs').glob('*.md'))
PROSE = [README, CONTRIBUTING, ROOT / 'SECURITY.md', *DOCS]

README_MAX_LINES = 250
# A reference to this project's issue tracker, by number: a reader cannot look
# it up, so say what the thing is instead.
ISSUE_NUMBER = re.compile(r'\bissues? #?[0-9]+\b', re.IGNORECASE)
TEXT_SUFFIXES = {'.py', '.md', '.j2', '.yaml', '.yml', '.txt', '.ini', '.toml', '.cfg'}
MARKDOWN_LINK = re.compile(r'\]\(([^)\s]+)\)')
RATIO = re.compile(r'(\d+(?:\.\d+)?)x\b')


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    text = heading.strip().lower()
    text = re.sub(r'[^\w\- ]', '', text)
    return text.replace(' ', '-')


def _anchors(markdown: Path) -> set[str]:
    headings = re.findall(r'(?m)^#{1,6} (.+)$', markdown.read_text())
    return {_github_anchor(h) for h in headings}


def test_the_coverage_floor_quoted_is_pyprojects_fail_under() -> None:
    pyproject = (ROOT / 'pyproject.toml').read_text()
    floor = re.search(r'(?m)^fail_under\s*=\s*(\d+)', pyproject)
    assert floor is not None, 'pyproject.toml sets no [tool.coverage.report] fail_under'
    for doc in (README, CONTRIBUTING):
        quoted = re.findall(r'(?:under|its) (\d+)%', doc.read_text())
        assert quoted, f'{_rel(doc)} no longer quotes the coverage floor'
        assert set(quoted) == {floor.group(1)}, f'{_rel(doc)} says {quoted}'


def test_the_dirs_pyright_checks_are_the_ones_the_docs_name() -> None:
    include = re.search(r'(?m)^include\s*=\s*\[([^]]*)\]', (ROOT / 'pyproject.toml').read_text())
    assert include is not None, 'pyproject.toml sets no [tool.pyright] include'
    checked = {f'{d}/' for d in re.findall(r"[\"']([\w/]+)[\"']", include.group(1))}
    for doc in (README, CONTRIBUTING):
        said = re.search(r'pyright \(strict\) on ([^|\n]*)', doc.read_text())
        assert said is not None, f'{_rel(doc)} no longer says what pyright checks'
        assert set(re.findall(r'`([\w/]+/)`', said.group(1))) == checked, _rel(doc)


def _integration_test_functions() -> list[str]:
    names: list[str] = []
    for module in sorted((ROOT / 'tests' / 'integration').glob('test_*.py')):
        tree = ast.parse(module.read_text())
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.name.startswith('test_'):
                decorators = ast.unparse(node).split('def ', 1)[0]
                assert 'parametrize' not in decorators, (
                    f'{module.name}::{node.name} is parametrised: count its cases here'
                )
                names.append(node.name)
    return names


def test_the_integration_skip_count_stated_is_the_number_of_integration_tests() -> None:
    text = (ROOT / 'docs' / 'integration-tests.md').read_text()
    stated = re.findall(r'skips all (\d+)', text)
    assert stated, 'docs/integration-tests.md no longer says how many tests skip'
    assert {int(n) for n in stated} == {len(_integration_test_functions())}


def _tox_ini() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(ROOT / 'tox.ini')
    return parser


def _default_env_list() -> list[str]:
    return [e.strip() for e in _tox_ini().get('tox', 'env_list').split(',') if e.strip()]


def _tox_envs() -> set[str]:
    sections = _tox_ini().sections()
    envs = {s.removeprefix('testenv:') for s in sections if s.startswith('testenv:')}
    return envs | set(_default_env_list())


@pytest.mark.parametrize('doc', PROSE, ids=_rel)
def test_every_tox_env_the_docs_name_exists(doc: Path) -> None:
    named = {
        env
        for group in re.findall(r'tox -e ([\w,-]+)', doc.read_text())
        for env in group.split(',')
        if env
    }
    assert named - _tox_envs() == set()


def test_the_envs_the_docs_say_tox_runs_are_its_env_list() -> None:
    """README's "in `tox`" column and CONTRIBUTING's list say what plain `tox` runs."""
    default = set(_default_env_list())
    in_tox = {
        env
        for envs, runs in re.findall(
            r'(?m)^\| ((?:`[\w-]+`(?:, )?)+) \| (yes|no) \|', README.read_text()
        )
        if runs == 'yes'
        for env in re.findall(r'`([\w-]+)`', envs)
    }
    assert in_tox == default, 'README: the "in `tox`" column of the tox env table'
    listed = re.search(r'default environments \(([^)]*)\)', CONTRIBUTING.read_text())
    assert listed is not None, 'CONTRIBUTING.md no longer lists the default environments'
    assert set(re.findall(r'`([\w-]+)`', listed.group(1))) == default


@pytest.mark.parametrize('doc', PROSE, ids=_rel)
def test_every_local_link_leads_somewhere(doc: Path) -> None:
    broken: list[str] = []
    for target in MARKDOWN_LINK.findall(doc.read_text()):
        if re.match(r'[a-z]+:', target):  # https:, mailto:
            continue
        path, _, anchor = target.partition('#')
        linked = (doc.parent / path).resolve() if path else doc
        if not linked.exists():
            broken.append(target)
            continue
        if anchor and linked.suffix == '.md' and anchor not in _anchors(linked):
            broken.append(target)
    assert broken == []


@pytest.mark.parametrize('doc', PROSE, ids=_rel)
def test_every_src_path_the_docs_name_exists(doc: Path) -> None:
    """A module that moved moves in the docs too; a line that tells of a rename is history."""
    missing = [
        path
        for line in doc.read_text().splitlines()
        if 'renamed' not in line
        for path in re.findall(r'\bsrc/[\w/]*\w(?:\.py)?', line)
        # Bytecode directories exist only once Python ran: not a path a reader follows.
        if not (ROOT / path).exists() and not path.endswith('__pycache__')
    ]
    assert missing == []


def test_the_readme_maps_every_module_in_src() -> None:
    readme = README.read_text()
    named = set(re.findall(r'\bsrc/[\w/]+\.py\b', readme))
    modules = {_rel(p) for p in (ROOT / 'src').rglob('*.py') if p.name != '__init__.py'}
    assert sorted(modules - named) == [], 'modules missing from the README code map'
    assert sorted(named - modules) == [], 'the README names modules that do not exist'


def test_the_readme_keeps_the_rules_markers_in_order() -> None:
    readme = README.read_text()
    assert readme.count('<!-- rules:start -->') == 1
    assert readme.count('<!-- rules:end -->') == 1
    assert readme.index('<!-- rules:start -->') < readme.index('<!-- rules:end -->')


def test_the_readme_is_at_most_250_lines() -> None:
    assert len(README.read_text().splitlines()) <= README_MAX_LINES


def _project_text_files() -> list[Path]:
    files = [README, CONTRIBUTING]
    for top in ('src', 'tests', 'bench', 'docs', 'templates'):
        files += [
            p
            for p in (ROOT / top).rglob('*')
            if p.is_file() and p.suffix in TEXT_SUFFIXES and '__pycache__' not in p.parts
        ]
    return files


def test_no_issue_numbers_in_code_tests_or_docs() -> None:
    found = [
        f'{_rel(path)}:{number}: {match.group(0)}'
        for path in _project_text_files()
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        for match in ISSUE_NUMBER.finditer(line)
    ]
    assert found == []


def test_benchmark_figures_are_stated_in_the_benchmark_doc_only() -> None:
    """A ratio such as 1.11x belongs to a run: it lives in docs/benchmark.md."""
    elsewhere = [
        f'{_rel(doc)}: {ratio}x'
        for doc in PROSE
        if doc.name != 'benchmark.md'
        for ratio in RATIO.findall(doc.read_text())
        if '.' in ratio
    ]
    assert elsewhere == []


def _targets_rows() -> list[list[str]]:
    text = (ROOT / 'docs' / 'benchmark.md').read_text()
    block = re.search(r'<!-- targets:start -->\n(.*?)<!-- targets:end -->', text, re.DOTALL)
    assert block is not None, 'docs/benchmark.md lost its targets table markers'
    rows = [line.strip('|').split('|') for line in block.group(1).splitlines()]
    return [[cell.strip() for cell in row] for row in rows[2:]]  # below header and rule


def test_each_benchmark_target_is_met_exactly_when_its_figure_is_within_its_limit() -> None:
    rows = _targets_rows()
    checked = 0
    for target, limit_cell, figure_cell, met_cell in rows:
        limit = RATIO.fullmatch(limit_cell)
        if limit is None:  # a count, such as "0" or "restarts = pushes"
            continue
        figures = RATIO.findall(re.sub(r'\([^)]*\)', '', figure_cell))
        assert figures, f'no ratio in the figure of {target!r}'
        worst, bound = max(float(f) for f in figures), float(limit.group(1))
        met = met_cell.replace('*', '').startswith('yes')
        assert met == (worst <= bound), f'{target!r}: {figure_cell} against {limit_cell}'
        missed_by = re.search(r'by (\d+(?:\.\d+)?)%', met_cell)
        if not met:
            assert missed_by is not None, f'{target!r}: say by how much it was missed'
            assert float(missed_by.group(1)) == round((worst / bound - 1) * 100, 1)
        checked += 1
    assert checked >= 2, 'the targets table lost its ratio rows'


def _named_tests(markdown: str) -> list[tuple[str, str]]:
    """``(file, test)`` for every ``file.py::test`` and following ``::test`` in backticks."""
    named: list[tuple[str, str]] = []
    for line in markdown.splitlines():
        current = ''
        for file, test in re.findall(
            r'`((?:[\w/]+/)?test_\w+\.py)?::(test_\w+)(?:\[[^]`]*\])?`', line
        ):
            current = file or current
            named.append((current, test))
    return named


def _defines(name: str, test: str) -> bool:
    """Whether the test file has that test.

    A bare file name means the unit test of that name, else any file of that name under tests/.
    """
    unit = ROOT / 'tests' / 'unit' / name
    if '/' in name:
        files = [ROOT / name]
    elif unit.exists():
        files = [unit]
    else:
        files = list((ROOT / 'tests').rglob(name))
    return any(f.exists() and re.search(rf'(?m)^def {test}\(', f.read_text()) for f in files)


@pytest.mark.parametrize('doc', PROSE, ids=_rel)
def test_every_test_the_docs_name_exists(doc: Path) -> None:
    missing = [
        f'{file}::{test}'
        for file, test in _named_tests(doc.read_text())
        if not file or not _defines(file, test)
    ]
    assert missing == []


@pytest.mark.parametrize('doc', PROSE, ids=_rel)
def test_every_test_function_the_docs_name_by_itself_exists(doc: Path) -> None:
    defined = {
        name
        for path in (ROOT / 'tests').rglob('test_*.py')
        for name in re.findall(r'(?m)^def (test_\w+)\(', path.read_text())
    }
    named = set(re.findall(r'`(test_\w+)`', doc.read_text()))
    assert sorted(named - defined) == []
