# Copyright 2026 The valkey-leader-k8s authors
# See LICENSE file for licensing details.

"""The modules without Juju in them: config validation, rendering, the leader record."""

from __future__ import annotations

import re
from pathlib import Path

import jinja2
import ops
import pytest
import yaml

import password_secret
from charm_config import CharmConfig
from leadership import LeaderRecord, most_severe, pod_name, unit_address
from workload import config as valkey_config
from workload import container as valkey_container
from workload.config import MAXMEMORY_LIMIT_BYTES, maxmemory_bytes

from .conftest import REPO_ROOT

TEMPLATES = REPO_ROOT / 'templates'


def settings(**overrides: object) -> valkey_config.ValkeySettings:
    values: dict[str, object] = {
        'password': 'p' * 48,
        'primary_address': None,
        'log_level': 'notice',
        'maxmemory': '',
        'maxmemory_policy': 'noeviction',
    }
    values.update(overrides)
    return valkey_config.ValkeySettings(**values)  # type: ignore[arg-type]


# ------------------------------------------------------------------ config


@pytest.mark.parametrize(
    ('value', 'expected'),
    [
        ('0', 0),
        ('1', 1),
        ('100', 100),
        ('1k', 1000),
        ('1kb', 1024),
        ('1KB', 1024),
        ('100mb', 100 * 1024**2),
        ('1m', 1000**2),
        ('2gb', 2 * 1024**3),
        ('3g', 3 * 1000**3),
        ('7b', 7),
    ],
)
def test_maxmemory_sizes_are_read_like_valkey_reads_them(value: str, expected: int) -> None:
    assert maxmemory_bytes(value) == expected


@pytest.mark.parametrize(
    'value', ['', ' 1mb', '1 mb', '1.5gb', '-1', '1tb', 'mb', '1mbb', '0x10', str(2**63)]
)
def test_maxmemory_refuses_what_valkey_would_refuse(value: str) -> None:
    with pytest.raises(ValueError, match=f'^{re.escape(value)}$'):
        maxmemory_bytes(value)


def test_maxmemory_limit_is_inclusive() -> None:
    assert maxmemory_bytes(str(MAXMEMORY_LIMIT_BYTES)) == MAXMEMORY_LIMIT_BYTES


def test_config_defaults_are_valid() -> None:
    config = CharmConfig()
    assert (config.log_level, config.maxmemory, config.maxmemory_policy) == (
        'notice',
        '',
        'noeviction',
    )
    assert config.admin_password is None


def test_config_names_the_option_and_the_allowed_values() -> None:
    with pytest.raises(ValueError, match=r"^maxmemory-policy='lru': use one of noeviction, "):
        CharmConfig(maxmemory_policy='lru')


class _UncheckedSecret(ops.Secret):
    """An ops.Secret with only an id, as ``load_config`` builds it (no backend call)."""

    def __init__(self, secret_id: str) -> None:
        self._id = secret_id


@pytest.mark.parametrize(
    'secret_id',
    [
        'secret:cr4k6ffmp25c77agdbe0',
        'secret://3f5c2a0e-1111-4222-8333-444455556666/cr4k6ffmp25c77agdbe0',
    ],
)
def test_admin_password_accepts_secret_uris(secret_id: str) -> None:
    secret = _UncheckedSecret(secret_id)
    config = CharmConfig(admin_password=secret)
    # Kept as given: the charm reads the password from exactly this secret.
    assert config.admin_password is secret


@pytest.mark.parametrize(
    'secret_id', ['hunter2', 'secret:', 'secret:short', 'secret:has space in it!!']
)
def test_admin_password_refuses_anything_else(secret_id: str) -> None:
    with pytest.raises(ValueError, match='admin-password is not a secret URI'):
        CharmConfig(admin_password=_UncheckedSecret(secret_id))


# --------------------------------------------------------------- rendering


def test_primary_has_no_replicaof() -> None:
    text = valkey_config.render_config(settings(), TEMPLATES)
    assert 'replicaof' not in text
    assert 'replica-read-only' not in text
    assert text.endswith('\n')


def test_replica_points_at_the_primary() -> None:
    text = valkey_config.render_config(
        settings(primary_address='db-0.db-endpoints.m.svc.cluster.local'), TEMPLATES
    )
    assert 'replicaof db-0.db-endpoints.m.svc.cluster.local 6379\n' in text
    assert 'replica-read-only yes\n' in text


def test_empty_maxmemory_is_written_as_no_limit() -> None:
    assert 'maxmemory 0\n' in valkey_config.render_config(settings(), TEMPLATES)


def test_rendering_is_deterministic() -> None:
    """Same inputs, same bytes: the charm restarts Valkey only when the bytes differ."""
    assert valkey_config.render_config(settings(), TEMPLATES) == valkey_config.render_config(
        settings(), TEMPLATES
    )


def test_a_template_variable_without_a_value_is_an_error(tmp_path: Path) -> None:
    """StrictUndefined: a typo in the template fails loudly instead of writing an empty value."""
    (tmp_path / valkey_config.TEMPLATE_NAME).write_text('port {{ prot }}\n')
    with pytest.raises(jinja2.UndefinedError, match='prot'):
        valkey_config.render_config(settings(), tmp_path)


@pytest.mark.parametrize(
    ('raw', 'quoted'),
    [
        ('simple', '"simple"'),
        ('with space', '"with space"'),
        ('quote"d', '"quote\\"d"'),
        ('back\\slash', '"back\\\\slash"'),
        ('new\nline', '"new\\x0aline"'),
        ('tab\t#hash', '"tab\\x09#hash"'),
        ('na\u00efve', '"na\\xc3\\xafve"'),
    ],
)
def test_valkey_quote(raw: str, quoted: str) -> None:
    assert valkey_config.valkey_quote(raw) == quoted


def test_generated_passwords_are_long_random_and_plain() -> None:
    passwords = {password_secret.generate() for _ in range(50)}
    assert len(passwords) == 50
    assert all(re.fullmatch(r'[A-Za-z0-9]{48}', p) for p in passwords)


def test_pebble_layer_has_no_password_and_no_user_switch() -> None:
    # Pebble runs as the workload user (metadata.yaml uid/gid); a non-root
    # Pebble cannot run a service as another user, so the layer names none.
    service = valkey_container.pebble_layer().services['valkey']
    assert service.command == 'valkey-server /run/valkey/valkey.conf'
    assert service.environment == {}
    assert [service.user, service.user_id, service.group, service.group_id] == ['', None, '', None]


def test_the_workload_container_runs_as_the_images_valkey_user() -> None:
    """uid/gid 999: the "valkey" user and group of the official image's Dockerfile."""
    metadata = yaml.safe_load((REPO_ROOT / 'metadata.yaml').read_text())
    container = metadata['containers']['valkey']
    assert (container['uid'], container['gid']) == (999, 999)
    assert valkey_config.CONFIG_PATH.startswith('/run/valkey/')


@pytest.mark.parametrize(
    ('output', 'version'),
    [
        ('Valkey server v=9.1.0 sha=00000000:0 malloc=jemalloc-5.3.0 bits=64 build=abc', '9.1.0'),
        ('Redis server v=7.0.15 sha=00000000:0 malloc=jemalloc-5.3.0 bits=64 build=abc', '7.0.15'),
        ('Valkey server v=9.1.0-rc1 sha=0', '9.1.0-rc1'),
        ('garbage', None),
    ],
)
def test_parse_version(output: str, version: str | None) -> None:
    assert valkey_container.parse_version(output) == version


# ----------------------------------------------------------- leader record


def test_addresses_follow_kubernetes_naming() -> None:
    assert pod_name('valkey-leader-k8s/12') == 'valkey-leader-k8s-12'
    assert unit_address('db/0', 'db', 'prod') == 'db-0.db-endpoints.prod.svc.cluster.local'


def record(**overrides: object) -> LeaderRecord:
    values: dict[str, object] = {
        'unit': 'db/0',
        'address': 'db-0.db-endpoints.prod.svc.cluster.local',
        'password_secret_id': 'secret:cr4k6ffmp25c77agdbe0',
    }
    values.update(overrides)
    return LeaderRecord(**values)  # type: ignore[arg-type]


def test_a_valid_record() -> None:
    assert record().password_revision == 0


@pytest.mark.parametrize(
    'overrides',
    [
        {'unit': 'db'},
        {'unit': 7},
        {'address': 'db-0\nreplicaof evil 1'},
        {'address': 'has space'},
        {'address': ''},
        {'password_secret_id': 'not-a-secret'},
        {'password_revision': -1},
        {'password_revision': '1'},
        {'password_revision': True},
    ],
)
def test_records_that_could_harm_a_replica_are_refused(overrides: dict[str, object]) -> None:
    with pytest.raises(ValueError, match='is not'):
        record(**overrides)


def test_the_most_severe_problem_wins_and_the_first_among_equals() -> None:
    blocked = ops.BlockedStatus('run juju trust')
    waiting_k8s, waiting_pebble = ops.WaitingStatus('k8s'), ops.WaitingStatus('pebble')
    assert most_severe(waiting_pebble, blocked) == blocked
    assert most_severe(waiting_k8s, waiting_pebble) == waiting_k8s
    assert most_severe(ops.MaintenanceStatus('m'), waiting_k8s) == ops.MaintenanceStatus('m')
    assert most_severe(None, None) is None
