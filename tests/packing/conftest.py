# Copyright 2026 The valkey-leader-k8s authors
# See LICENSE file for licensing details.

"""The charm laid out as charmcraft packs it, built once per test session.

charmcraft cannot run on every development host, so this rebuilds the parts
of a packed charm that decide whether it can start at all:

* ``venv/``: requirements.txt and nothing else, installed flat (``pip install
  --target``), as charmcraft's charm plugin installs it;
* ``dispatch``: charmcraft's own script (``PYTHONPATH=lib:venv exec
  ./src/charm.py``; Python puts ``src/`` on the path as the script's directory);
* the charm's own files, copied from the repository: ``src/``, ``templates/``,
  ``lib/`` if any, and the YAML files;
* an interpreter with nothing but the standard library, standing in for the
  base image's ``python3`` that the ``#!/usr/bin/env python3`` line finds.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import shutil
import subprocess
import sys
import venv
from pathlib import Path
from typing import Final

import pytest
import yaml

REPO_ROOT: Final = Path(__file__).resolve().parents[2]
# What the charm needs at run time besides its dependencies. (charmcraft also
# copies most other files of the project; the charm must not *need* them.)
CHARM_FILES: Final = ('src', 'templates', 'metadata.yaml', 'config.yaml', 'actions.yaml')
OPTIONAL_CHARM_FILES: Final = ('lib',)
# charmcraft's DISPATCH_CONTENT (charmcraft/const.py), for src/charm.py.
DISPATCH: Final = """#!/bin/sh

JUJU_DISPATCH_PATH="${JUJU_DISPATCH_PATH:-$0}" PYTHONPATH=lib:venv \\
  exec ./src/charm.py
"""


@dataclasses.dataclass(frozen=True)
class PackedCharm:
    """An unpacked .charm and the bare interpreter that runs it."""

    root: Path
    python_bin: Path

    @property
    def venv(self) -> Path:
        return self.root / 'venv'

    def run_python(self, code: str) -> subprocess.CompletedProcess[str]:
        """Run ``code`` with the packed charm's import path, from the charm directory."""
        return subprocess.run(
            [str(self.python_bin / 'python3'), '-c', code],
            cwd=self.root,
            env={'PATH': f'{self.python_bin}:/usr/bin:/bin', 'PYTHONPATH': 'lib:venv:src'},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )


def charm_binary_python_packages() -> list[str]:
    """The packages charmcraft.yaml allows the charm plugin to install as wheels."""
    charmcraft = yaml.safe_load((REPO_ROOT / 'charmcraft.yaml').read_text())
    return list(charmcraft['parts']['charm'].get('charm-binary-python-packages', []))


def _pip() -> list[str]:
    """pip for this interpreter, or uv's (tox-uv environments have no pip)."""
    if importlib.util.find_spec('pip') is not None:
        return [sys.executable, '-m', 'pip']
    uv = shutil.which('uv')
    if uv is None:
        pytest.fail('neither pip nor uv is available to install requirements.txt')
    return [uv, 'pip']


def _copy_charm_files(root: Path) -> None:
    ignore = shutil.ignore_patterns('__pycache__', '*.pyc')
    for name in CHARM_FILES + OPTIONAL_CHARM_FILES:
        source = REPO_ROOT / name
        if source.is_dir():
            shutil.copytree(source, root / name, ignore=ignore)
        elif source.exists():
            shutil.copy2(source, root / name)  # copy2 keeps the executable bit
        elif name in CHARM_FILES:
            pytest.fail(f'{name} is missing from the repository')


@pytest.fixture(scope='session')
def packed_charm(tmp_path_factory: pytest.TempPathFactory) -> PackedCharm:
    base = tmp_path_factory.mktemp('packed')
    root = base / 'charm'
    root.mkdir()
    _copy_charm_files(root)
    dispatch = root / 'dispatch'
    dispatch.write_text(DISPATCH)
    dispatch.chmod(0o755)
    # Like charmcraft's charm plugin, but stricter: every package is built from
    # source (--no-binary=:all:, which also applies to build dependencies;
    # charmcraft names the direct requirements only) except those listed in
    # charm-binary-python-packages. A requirement whose source build needs a
    # toolchain the build host lacks (lightkube's, Rust) fails here as there.
    binary = ','.join(charm_binary_python_packages())
    install = subprocess.run(
        [
            *_pip(),
            'install',
            '--quiet',
            '--disable-pip-version-check',
            '--no-binary=:all:',
            f'--only-binary={binary}',
            '--target',
            str(root / 'venv'),
            '--requirement',
            str(REPO_ROOT / 'requirements.txt'),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if install.returncode != 0:
        pytest.fail(f'installing requirements.txt failed:\n{install.stderr}')
    runtime = base / 'runtime'
    venv.create(runtime, with_pip=False, symlinks=True, clear=True)
    return PackedCharm(root=root, python_bin=runtime / 'bin')
