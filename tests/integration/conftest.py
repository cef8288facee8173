# Copyright 2026 The valkey-leader-k8s authors
# See LICENSE file for licensing details.

"""Fixtures for the integration tests; the temporary model is pytest-jubilant's ``juju``.

Without a reachable Juju controller (or without kubectl) every test here is
skipped, with a reason that says what to install. Set
``INTEGRATION_REQUIRE_CONTROLLER=1`` (CI does) to fail instead: a CI job whose
integration tests all skipped would otherwise look green.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import cast

import jubilant
import pytest

from .helpers import REPO_ROOT, Kubectl, metadata

REQUIRE_CONTROLLER_ENV = 'INTEGRATION_REQUIRE_CONTROLLER'
SETUP_HINT = (
    'see docs/integration-tests.md: e.g. `sudo snap install --classic concierge && '
    'sudo concierge prepare -p k8s` installs juju, kubectl and charmcraft and bootstraps '
    'a controller on Canonical Kubernetes'
)


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def _kubectl_command() -> tuple[str, ...]:
    """kubectl, or what ``KUBECTL`` says to run instead (e.g. ``microk8s kubectl``)."""
    return tuple(shlex.split(os.environ.get('KUBECTL', 'kubectl')))


def _why_no_controller(controller: str | None) -> str | None:
    """Why these tests cannot run here, or ``None`` when they can."""
    if shutil.which('juju') is None:
        return f'the juju CLI is not installed; {SETUP_HINT}'
    if controller is None:
        listed = _run('juju', 'controllers', '--format', 'json')
        if listed.returncode != 0:
            return f'`juju controllers` failed ({listed.stderr.strip()}); {SETUP_HINT}'
        controller = json.loads(listed.stdout or '{}').get('current-controller')
        if not controller:
            return f'no Juju controller is bootstrapped (or none is current); {SETUP_HINT}'
    try:
        reached = _run('juju', 'models', '--controller', controller, '--format', 'json')
    except subprocess.TimeoutExpired:
        return f'the Juju controller {controller!r} did not answer in 60s'
    if reached.returncode != 0:
        return f'the Juju controller {controller!r} is not reachable: {reached.stderr.strip()}'
    kubectl = _kubectl_command()
    if not kubectl or shutil.which(kubectl[0]) is None:
        return (
            f'{" ".join(kubectl) or "kubectl"} is not installed: install kubectl with a '
            "kubeconfig for the controller's cluster, or set KUBECTL (e.g. 'microk8s kubectl')"
        )
    return None


@pytest.fixture(scope='session', autouse=True)
def _require_controller(request: pytest.FixtureRequest) -> None:  # pyright: ignore[reportUnusedFunction]
    """Skip (or, in CI, fail) every test here when no controller can be reached."""
    controller = cast('str | None', request.config.getoption('--juju-controller', default=None))
    reason = _why_no_controller(controller)
    if reason is None:
        return
    if os.environ.get(REQUIRE_CONTROLLER_ENV):
        pytest.fail(f'{REQUIRE_CONTROLLER_ENV} is set, but {reason}', pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope='session')
def charm_path() -> Path:
    """The packed charm: ``CHARM_PATH``, or the one ``*.charm`` in the repository root."""
    if env := os.environ.get('CHARM_PATH'):
        path = Path(env).resolve()
        if not path.is_file():
            pytest.fail(f'CHARM_PATH={env} is not a file', pytrace=False)
        return path
    charms = sorted(REPO_ROOT.glob('*.charm'))
    if len(charms) > 1:
        # charmcraft packs one file per platform; prefer this machine's.
        arch = {'x86_64': 'amd64', 'aarch64': 'arm64'}.get(platform.machine(), platform.machine())
        charms = [c for c in charms if c.name.endswith(f'_{arch}.charm')]
    if len(charms) != 1:
        pytest.fail(
            f'no single *.charm in {REPO_ROOT}: run `charmcraft pack` or set CHARM_PATH',
            pytrace=False,
        )
    return charms[0]


@pytest.fixture(scope='session')
def resources() -> dict[str, str]:
    """Every OCI image a local charm must be deployed with: each ``upstream-source``."""
    declared = cast('dict[str, dict[str, str]]', metadata()['resources'])
    return {name: resource['upstream-source'] for name, resource in declared.items()}


@pytest.fixture(scope='module')
def kubectl(juju: jubilant.Juju) -> Kubectl:
    """kubectl in the model's namespace (Juju names a Kubernetes model's namespace after it)."""
    return Kubectl(command=_kubectl_command(), namespace=juju.show_model().short_name)
