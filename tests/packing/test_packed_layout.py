# Copyright 2026 The valkey-leader-k8s authors
# See LICENSE file for licensing details.

"""The packed charm starts: what charmcraft would ship runs without anything else.

A unit test imports the charm with the test dependencies on the path and the
repository as the working directory; a packed charm has neither. These tests
run the charm the way Juju does, through ``dispatch``, with requirements.txt
only, against a fake unit agent (``fake_juju``), so that a runtime import of a
test-only package, a missing runtime dependency, a file the charm needs that
is not under the charm root, or metadata the code does not match fails here,
not on a cluster.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any, Final, cast

import pytest
import yaml

from .conftest import REPO_ROOT, PackedCharm
from .fake_juju import FakeJuju, new_state

APP: Final = 'valkey-leader-k8s'
LEADER: Final = f'{APP}/0'
FOLLOWER: Final = f'{APP}/1'
PEERS: Final = 'valkey-peers'
SECRET_LABEL: Final = 'admin-password'


def _yaml(name: str) -> dict[str, Any]:
    return cast('dict[str, Any]', yaml.safe_load((REPO_ROOT / name).read_text()))


def _normalize(name: str) -> str:
    """PEP 503: PyYAML, pyyaml and py_yaml are the same distribution."""
    return re.sub(r'[-_.]+', '-', name).lower()


def _default_config() -> dict[str, Any]:
    options: dict[str, Any] = _yaml('config.yaml')['options']
    return {name: option['default'] for name, option in options.items() if 'default' in option}


@pytest.fixture
def fake_juju(tmp_path: Path) -> FakeJuju:
    return FakeJuju(tmp_path / 'juju')


def _succeeded(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, f'dispatch exited {result.returncode}:\n{result.stderr}'
    assert 'Traceback' not in result.stderr, result.stderr


def _leader_elected(
    packed_charm: PackedCharm, fake_juju: FakeJuju
) -> tuple[dict[str, Any], subprocess.CompletedProcess[str]]:
    """A fresh leader's first hook; returns the state it leaves behind, and its output."""
    fake_juju.state = new_state(
        unit=LEADER,
        leader=True,
        config=_default_config(),
        endpoint=PEERS,
        peers=[LEADER, FOLLOWER, f'{APP}/2'],
    )
    result = fake_juju.dispatch(packed_charm.root, packed_charm.python_bin, 'leader-elected')
    _succeeded(result)
    return fake_juju.state, result


def _as_follower(leader_state: dict[str, Any]) -> dict[str, Any]:
    """What a follower sees after the leader's hook: the same app data and secrets."""
    follower: dict[str, Any] = dict(leader_state)
    follower.update(unit=FOLLOWER, leader=False, status={}, log=[])
    return follower


# ------------------------------------------------------------------ layout


def test_charm_entry_point_is_executable_python():
    """charmcraft refuses to pack an entry point it cannot execute; dispatch execs it."""
    entry_point = REPO_ROOT / 'src' / 'charm.py'
    assert os.access(entry_point, os.X_OK), 'src/charm.py must be executable (git mode 100755)'
    assert entry_point.read_text().startswith('#!/usr/bin/env python3\n')


def test_charmcraft_yaml_leaves_metadata_config_and_actions_to_their_files():
    """charmcraft refuses a key in both charmcraft.yaml and metadata/config/actions.yaml.

    Keeping name, summary and description out of charmcraft.yaml is also what
    makes ops.testing read metadata.yaml, config.yaml and actions.yaml.
    """
    charmcraft = _yaml('charmcraft.yaml')
    duplicated = {'name', 'summary', 'description', 'config', 'actions'} & charmcraft.keys()
    assert not duplicated
    assert not charmcraft.keys() & _yaml('metadata.yaml').keys()


def test_runtime_environment_holds_requirements_only(packed_charm: PackedCharm):
    installed = {
        _normalize(dist.metadata['Name'])
        for dist in importlib.metadata.distributions(path=[str(packed_charm.venv)])
    }
    assert {'ops', 'jinja2', 'lightkube'} <= installed
    assert not installed & {'ops-scenario', 'pytest', 'coverage', 'hypothesis'}
    # Nor anything else on the interpreter's own path.
    bare = packed_charm.run_python('import importlib.util as u; print(u.find_spec("yaml"))')
    assert bare.stdout.strip() != 'None', 'the runtime path misses venv/'
    probe = packed_charm.run_python(
        'import importlib.util as u; '
        'print([m for m in ("scenario", "pytest") if u.find_spec(m) is not None])'
    )
    assert probe.stdout.strip() == '[]', probe.stderr


def test_compiled_dependencies_are_charm_binary_python_packages(packed_charm: PackedCharm):
    """charmcraft builds charm-requirements from source on the build host, except these.

    Any runtime dependency that ships a compiled extension must be listed, or
    packing needs a compiler and the library's headers (and can fail); a
    listed one that is no dependency would be installed for nothing.
    """
    compiled = {
        _normalize(dist.metadata['Name'])
        for dist in importlib.metadata.distributions(path=[str(packed_charm.venv)])
        if any(Path(str(file)).suffix in {'.so', '.pyd'} for file in dist.files or ())
    }
    installed = {
        _normalize(dist.metadata['Name'])
        for dist in importlib.metadata.distributions(path=[str(packed_charm.venv)])
    }
    part = _yaml('charmcraft.yaml')['parts']['charm']
    binary = {_normalize(name) for name in part.get('charm-binary-python-packages', [])}
    assert compiled, 'no compiled dependency found: the check would prove nothing'
    assert compiled - binary == set(), 'add these to charm-binary-python-packages'
    assert binary - installed == set(), 'these are not runtime dependencies'


def test_every_source_module_imports_with_runtime_dependencies_only(packed_charm: PackedCharm):
    modules = sorted(path.stem for path in (packed_charm.root / 'src').glob('*.py'))
    result = packed_charm.run_python(
        f'import importlib\nfor name in {modules!r}:\n    importlib.import_module(name)\n'
    )
    assert result.returncode == 0, result.stderr


def test_the_client_interface_library_works_in_the_packed_charm(packed_charm: PackedCharm):
    """dpcharmlibs-interfaces, with its compiled pydantic-core and cryptography wheels.

    Only a leader with client relations imports it, through ``clients``, which
    filters the one warning it raises at import: here every other warning is
    an error, as in the test suites.
    """
    result = packed_charm.run_python(
        'import warnings\n'
        'warnings.simplefilter("error")\n'
        'import clients\n'
        'clients.import_library()\n'
        'from dpcharmlibs.interfaces import ValkeyResponseModel\n'
        'print(ValkeyResponseModel(username="u", endpoints="e").endpoints)\n'
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == 'e'


def test_the_certificates_library_works_in_the_packed_charm(packed_charm: PackedCharm):
    """charmlibs-interfaces-tls-certificates: makes a key and a CSR with the packed wheels.

    Imported only in hooks where the certificates relation exists (``tls``);
    warnings are errors here, as in the test suites.
    """
    result = packed_charm.run_python(
        'import warnings\n'
        'warnings.simplefilter("error")\n'
        'import tls\n'
        'from charmlibs.interfaces.tls_certificates import PrivateKey\n'
        'key = PrivateKey.generate()\n'
        'request = tls._request("valkey/0", ("valkey-primary",)).generate_csr(key)\n'
        'print(sorted(request.sans_dns))\n'
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['valkey-primary']"


def test_templates_render_from_the_charm_root(packed_charm: PackedCharm):
    """The config template is found under the charm directory, as the charm looks it up.

    Through dispatch the charm renders only once Pebble answers, which needs a
    cluster; this renders with the charm's own workload module and the same
    path, ``<charm dir>/templates``, for a primary and for a replica.
    """
    result = packed_charm.run_python(
        'import pathlib\nfrom workload import config as workload\n'
        'for primary in (None, "valkey-leader-k8s-0.valkey-leader-k8s-endpoints.m.svc"):\n'
        '    settings = workload.ValkeySettings(password="p" * 48, primary_address=primary,\n'
        '        log_level="notice", maxmemory="", maxmemory_policy="noeviction")\n'
        '    print(workload.render_config(settings, pathlib.Path.cwd() / "templates"))\n'
    )
    assert result.returncode == 0, result.stderr
    assert 'requirepass' in result.stdout
    assert 'replicaof valkey-leader-k8s-0' in result.stdout


# ------------------------------------------------------------- hooks


def test_leader_elected_runs_in_the_packed_charm(packed_charm: PackedCharm, fake_juju: FakeJuju):
    """The leader's first hook, start to finish: secret, peer data, status."""
    state, result = _leader_elected(packed_charm, fake_juju)

    (secret_id, secret), *others = state['secrets'].items()
    assert not others
    assert secret['label'] == SECRET_LABEL
    password = secret['content']['password']
    assert len(password) >= 32
    published = state['peers']['app_data']
    assert json.loads(published['leader-unit']) == LEADER
    assert json.loads(published['password-secret-id']).endswith(secret_id)
    # No Kubernetes API here: the leader's lightkube path really ran in the
    # packed venv (imported, configured from the environment), found no
    # credentials, and said so in a status instead of a traceback (there is no
    # Pebble either: of two waits, the leader duties' problem is shown first).
    no_credentials = 'no Kubernetes credentials in the charm container; retrying'
    assert any(no_credentials in line['message'] for line in state['log']), state['log']
    expected = {'status': 'waiting', 'message': no_credentials}
    assert state['status']['unit'] == expected
    assert state['status']['app'] == expected
    # The password only ever travelled inside the secret-add content file.
    trail = json.dumps([fake_juju.calls(), state['log'], state['status'], published])
    trail += result.stdout + result.stderr
    leaked = password in trail
    assert not leaked, 'the password appears in a hook tool argument, log or status'


def test_follower_reads_the_published_secret(packed_charm: PackedCharm, fake_juju: FakeJuju):
    """The leader's output is the follower's input: same peer data, same secrets."""
    leader_state, _ = _leader_elected(packed_charm, fake_juju)
    fake_juju.state = _as_follower(leader_state)

    result = fake_juju.dispatch(
        packed_charm.root,
        packed_charm.python_bin,
        f'{PEERS}-relation-changed',
        JUJU_RELATION=PEERS,
        JUJU_RELATION_ID=f'{PEERS}:7',
        JUJU_REMOTE_APP=APP,
    )

    _succeeded(result)
    published_id = json.loads(leader_state['peers']['app_data']['password-secret-id'])
    reads = [call['args'] for call in fake_juju.calls('secret-get')]
    assert any(published_id in args and '--refresh' in args for args in reads), reads
    assert not fake_juju.calls('secret-add')
    assert fake_juju.state['status']['unit']['status'] == 'waiting'


def test_rotate_password_on_a_follower_names_the_leader(
    packed_charm: PackedCharm, fake_juju: FakeJuju
):
    leader_state, _ = _leader_elected(packed_charm, fake_juju)
    fake_juju.state = _as_follower(leader_state)

    result = fake_juju.dispatch(
        packed_charm.root,
        packed_charm.python_bin,
        'actions/rotate-password',
        JUJU_ACTION_NAME='rotate-password',
        JUJU_ACTION_UUID='1',
    )

    _succeeded(result)
    failed = fake_juju.state['action']['failed']
    assert failed is not None
    assert LEADER in failed
    assert not fake_juju.calls('secret-set')


def test_a_test_only_import_fails_here(
    packed_charm: PackedCharm, fake_juju: FakeJuju, tmp_path: Path
):
    """The check can fail: the same hook, with ``import pytest`` added to the charm."""
    broken = tmp_path / 'broken'
    shutil.copytree(packed_charm.root, broken, symlinks=True)
    charm_py = broken / 'src' / 'charm.py'
    source = charm_py.read_text()
    charm_py.write_text(source.replace('\nimport ops\n', '\nimport ops\nimport pytest\n', 1))
    fake_juju.state = new_state(
        unit=LEADER, leader=True, config=_default_config(), endpoint=PEERS, peers=[LEADER]
    )

    result = fake_juju.dispatch(broken, packed_charm.python_bin, 'leader-elected')

    assert result.returncode != 0
    assert "No module named 'pytest'" in result.stderr


def test_the_cos_rules_and_dashboard_ship_and_load_in_the_packed_charm(
    packed_charm: PackedCharm,
):
    """The alert rules and the dashboard are data files under src/: packed, and read there."""
    result = packed_charm.run_python(
        'import json\n'
        'from observability import Topology, dashboard, logs, scrape\n'
        'from workload import exporter\n'
        "t = Topology(model='m', model_uuid='u', application='a', charm_name='c', unit='a/0')\n"
        "rules = json.loads(scrape.app_data(t)['alert_rules'])\n"
        "print(sum(len(g['rules']) for g in rules['groups']))\n"
        "print(len(json.loads(dashboard.app_data('c')['dashboards'])['templates']))\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ['11', '1']
