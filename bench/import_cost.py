# Copyright 2026 The valkey-leader-k8s authors
# See LICENSE file for licensing details.

"""What every hook pays before the charm runs: a fresh Python process importing the charm.

Juju runs ``dispatch`` for every event on every unit. The packed charm's
dispatch (charmcraft's ``charm`` plugin) runs ``src/charm.py`` with
``PYTHONPATH=lib:venv:src``, where ``venv/`` holds the dependencies. Each
charm gets that layout here, its ``venv/`` a link to this environment's
site-packages, and is imported by repeated fresh processes, the two charms in
alternation so that both see the same machine load.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path
from typing import Final

from bench.stats import Summary

_IMPORTTIME_LINE: Final = re.compile(r'import time:\s+(\d+)\s+\|\s+(\d+)\s+\|\s*(\S+)$')
RENDER_ONCE: Final = (
    'import charm, pathlib; from workload import config; '
    'config.render_config(config.ValkeySettings(password="p", primary_address=None, '
    'log_level="notice", maxmemory="", maxmemory_policy="noeviction"), '
    'pathlib.Path("templates"))'
)
LEADER_K8S_PATH: Final = 'import charm, primary_service'
# dispatch runs src/charm.py as a script, and Python never caches a script's
# bytecode: it compiles charm.py on every hook. run_path does the same, without
# running the ``if __name__ == '__main__'`` block (ops.main needs Juju).
AS_DISPATCH: Final = "import runpy; runpy.run_path('src/charm.py')"


@dataclasses.dataclass(frozen=True)
class PackedCharm:
    """A charm directory laid out as ``charmcraft pack`` lays it out."""

    name: str
    root: Path

    @classmethod
    def build(cls, name: str, source: Path, into: Path, *, templates: Path | None) -> PackedCharm:
        """Copy ``source``'s modules (no bytecode) into ``into``, beside lib/ and venv/."""
        root = into / name
        if root.exists():
            shutil.rmtree(root)
        # Modules and packages, as the charm plugin ships src/ (no bytecode).
        shutil.copytree(source, root / 'src', ignore=shutil.ignore_patterns('__pycache__'))
        (root / 'lib').mkdir()
        (root / 'venv').symlink_to(sysconfig.get_paths()['purelib'], target_is_directory=True)
        if templates is not None:
            shutil.copytree(templates, root / 'templates')
        return cls(name, root)

    def environment(self, *, write_bytecode: bool = True) -> dict[str, str]:
        """What dispatch gives the charm process, and nothing from this shell."""
        env = {'PATH': os.environ.get('PATH', '/usr/bin:/bin'), 'PYTHONPATH': 'lib:venv:src'}
        if not write_bytecode:
            env['PYTHONDONTWRITEBYTECODE'] = '1'
        return env

    def drop_bytecode(self) -> None:
        """Forget the compiled src/ modules, as if src/ were read-only."""
        shutil.rmtree(self.root / 'src' / '__pycache__', ignore_errors=True)

    def wall_time(self, code: str, *, write_bytecode: bool = True) -> float:
        """Milliseconds for a fresh ``python -c code`` in the charm directory."""
        started = time.perf_counter()
        subprocess.run(  # noqa: S603 - our own interpreter, fixed arguments
            [sys.executable, '-c', code],
            cwd=self.root,
            env=self.environment(write_bytecode=write_bytecode),
            check=True,
        )
        return (time.perf_counter() - started) * 1000

    def importtime(self, module: str = 'charm') -> float:
        """Milliseconds ``python -X importtime`` says importing ``module`` took, all included."""
        result = subprocess.run(  # noqa: S603 - our own interpreter, fixed arguments
            [sys.executable, '-X', 'importtime', '-c', f'import {module}'],
            cwd=self.root,
            env=self.environment(),
            check=True,
            capture_output=True,
            text=True,
        )
        for line in result.stderr.splitlines():
            match = _IMPORTTIME_LINE.match(line)
            if match and match[3] == module:
                return int(match[2]) / 1000
        raise RuntimeError(f'no importtime line for {module}')

    def modules_imported(self, code: str) -> set[str]:
        """The top-level packages ``code`` imports, beyond what Python starts with."""
        probe = f'import sys; before = set(sys.modules); {code}; print(*set(sys.modules) - before)'
        result = subprocess.run(  # noqa: S603 - our own interpreter, fixed arguments
            [sys.executable, '-c', probe],
            cwd=self.root,
            env=self.environment(),
            check=True,
            capture_output=True,
            text=True,
        )
        return {name.split('.')[0] for name in result.stdout.split()}


def measure_pair(
    charm: PackedCharm, baseline: PackedCharm, code: str, baseline_code: str, runs: int
) -> tuple[Summary, Summary]:
    """Fresh-process wall time of ``code`` for the charm and ``baseline_code`` for the baseline."""
    # One untimed run each: writes src/__pycache__, as the first hook would.
    charm.wall_time(code)
    baseline.wall_time(baseline_code)
    ours: list[float] = []
    theirs: list[float] = []
    for run in range(runs):
        # Swap who goes first every run: neither is always the one after a pause.
        if run % 2:
            theirs.append(baseline.wall_time(baseline_code))
            ours.append(charm.wall_time(code))
        else:
            ours.append(charm.wall_time(code))
            theirs.append(baseline.wall_time(baseline_code))
    return Summary(tuple(ours)), Summary(tuple(theirs))


def measure_cold_bytecode(
    charm: PackedCharm, baseline: PackedCharm, runs: int
) -> tuple[Summary, Summary]:
    """``import charm`` when src/ cannot keep its bytecode: Python compiles it every hook."""
    ours: list[float] = []
    theirs: list[float] = []
    for _ in range(runs):
        charm.drop_bytecode()
        baseline.drop_bytecode()
        ours.append(charm.wall_time('import charm', write_bytecode=False))
        theirs.append(baseline.wall_time('import charm', write_bytecode=False))
    return Summary(tuple(ours)), Summary(tuple(theirs))


def measure_importtime(
    charm: PackedCharm, baseline: PackedCharm, runs: int
) -> tuple[Summary, Summary]:
    """``-X importtime``'s own figure for ``charm``: interpreter start-up excluded."""
    ours: list[float] = []
    theirs: list[float] = []
    for _ in range(runs):
        ours.append(charm.importtime())
        theirs.append(baseline.importtime())
    return Summary(tuple(ours)), Summary(tuple(theirs))
