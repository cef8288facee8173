# Copyright 2026 The valkey-leader-k8s authors
# See LICENSE file for licensing details.

"""Property: whatever the user types into the config, the charm renders or blocks."""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

import ops
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from charm_config import LOG_LEVELS, MAXMEMORY_POLICIES

from .conftest import leader_state, make_context, make_filesystem

sizes = st.builds(
    '{}{}'.format,
    st.integers(min_value=0, max_value=2**70),
    st.sampled_from(['', 'b', 'k', 'kb', 'm', 'mb', 'g', 'gb', 'K', 'GB', 'tb', ' ', 'x']),
)
config_values = st.fixed_dictionaries(
    {},
    optional={
        'log-level': st.sampled_from(LOG_LEVELS) | st.text(max_size=12),
        'maxmemory': st.just('') | sizes | st.text(max_size=12),
        'maxmemory-policy': st.sampled_from(MAXMEMORY_POLICIES) | st.text(max_size=16),
    },
)


# The oracle is written from config.yaml's descriptions and Valkey's manual,
# not from the charm's validator: a wrong rule in the charm (say, accepting
# "1tb") makes this test fail instead of agreeing with itself.
ORACLE_LOG_LEVELS = {'debug', 'verbose', 'notice', 'warning'}
ORACLE_POLICIES = {
    'noeviction',
    'allkeys-lru',
    'allkeys-lfu',
    'allkeys-random',
    'volatile-lru',
    'volatile-lfu',
    'volatile-random',
    'volatile-ttl',
}
ORACLE_UNITS = {
    '': 1,
    'b': 1,
    'k': 10**3,
    'kb': 2**10,
    'm': 10**6,
    'mb': 2**20,
    'g': 10**9,
    'gb': 2**30,
}


def oracle_accepts_size(value: str) -> bool:
    if value == '':
        return True
    digits = len(value) - len(value.lstrip('0123456789'))
    number, unit = value[:digits], value[digits:].lower()
    if not number or not number.isascii() or unit not in ORACLE_UNITS or len(number) > 20:
        return False
    return int(number) * ORACLE_UNITS[unit] < 2**63


def is_valid(config: dict[str, str]) -> bool:
    return (
        config.get('log-level', 'notice') in ORACLE_LOG_LEVELS
        and oracle_accepts_size(config.get('maxmemory', ''))
        and config.get('maxmemory-policy', 'noeviction') in ORACLE_POLICIES
    )


@settings(
    max_examples=75,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(config=config_values)
def test_any_config_renders_or_blocks_and_never_loses_the_last_good_file(
    config: dict[str, str],
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        ctx = make_context(tmp_path)
        fs = make_filesystem(tmp_path)
        deployed = ctx.run(ctx.on.leader_elected(), leader_state(fs))
        last_good = fs.read_config()

        out = ctx.run(ctx.on.config_changed(), dataclasses.replace(deployed, config=config))

        text = fs.read_config()
        if is_valid(config):
            assert out.unit_status == ops.ActiveStatus('primary')
            assert f'loglevel {config.get("log-level", "notice")}\n' in text
            assert f'maxmemory {config.get("maxmemory") or "0"}\n' in text
            assert f'maxmemory-policy {config.get("maxmemory-policy", "noeviction")}\n' in text
        else:
            assert isinstance(out.unit_status, ops.BlockedStatus)
            assert out.unit_status.message.startswith('invalid config: ')
            assert text == last_good
