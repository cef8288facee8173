# Copyright 2026 The valkey-leader-k8s authors
# See LICENSE file for licensing details.

"""The charm's configuration options as one typed, validated value.

Loaded with ``CharmBase.load_config(CharmConfig)``: Juju option names have their
dashes turned into underscores, and a ``ValueError`` raised here means "the
user must change the config", which the charm reports as Blocked.

Nothing here knows about Juju events; it can be tested without a charm.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Final, Protocol, TypeVar

import ops

from workload.config import TlsMaterial, User, ValkeySettings, maxmemory_bytes

_T = TypeVar('_T')


class LoadConfig(Protocol):
    """``CharmBase.load_config``: the charm's config, as an instance of ``cls``."""

    def __call__(self, cls: type[_T], /) -> _T: ...  # noqa: D102


LOG_LEVELS: Final = ('debug', 'verbose', 'notice', 'warning')
MAXMEMORY_POLICIES: Final = (
    'noeviction',
    'allkeys-lru',
    'allkeys-lfu',
    'allkeys-random',
    'volatile-lru',
    'volatile-lfu',
    'volatile-random',
    'volatile-ttl',
)

# A Juju secret URI: "secret:<id>" or "secret://<model-uuid>/<id>", where Juju's
# ids are 20 base32 characters (test harnesses use longer ones, such as UUIDs).
_SECRET_URI = re.compile(r'secret:(//[0-9a-f-]{36}/)?[0-9a-z][0-9a-z-]{19,35}')


@dataclasses.dataclass(frozen=True, kw_only=True)
class PasswordConfig:
    """Where the password comes from: the ``admin-password`` option alone.

    Separate from the other options so that the charm can still tell which
    password to use while another option is invalid.
    """

    admin_password: ops.Secret | None = None
    """The user's secret holding key ``password``; ``None`` means "generate one"."""

    def __post_init__(self) -> None:
        """Refuse anything that is not a secret URI."""
        if self.admin_password is not None and not _SECRET_URI.fullmatch(
            self.admin_password.id or ''
        ):
            raise ValueError(
                'admin-password is not a secret URI: run `juju add-secret`, '
                '`juju grant-secret`, then set admin-password to the secret:... URI it printed'
            )


@dataclasses.dataclass(frozen=True, kw_only=True)
class CharmConfig(PasswordConfig):
    """The options in config.yaml, validated."""

    log_level: str = 'notice'
    maxmemory: str = ''
    maxmemory_policy: str = 'noeviction'

    def __post_init__(self) -> None:
        """Refuse values Valkey would refuse, naming the option and what to use."""
        if self.log_level not in LOG_LEVELS:
            raise ValueError(f'log-level={self.log_level!r}: use one of {", ".join(LOG_LEVELS)}')
        if self.maxmemory:
            try:
                maxmemory_bytes(self.maxmemory)
            except ValueError:
                raise ValueError(
                    f'maxmemory={self.maxmemory!r}: use empty for no limit, '
                    'or a size such as 100mb or 1gb'
                ) from None
        if self.maxmemory_policy not in MAXMEMORY_POLICIES:
            raise ValueError(
                f'maxmemory-policy={self.maxmemory_policy!r}: '
                f'use one of {", ".join(MAXMEMORY_POLICIES)}'
            )
        super().__post_init__()

    def valkey_settings(
        self,
        *,
        password: str,
        primary_address: str | None,
        users: tuple[User, ...] = (),
        announce_host: str | None = None,
        tls: TlsMaterial | None = None,
        min_replicas_to_write: int = 0,
    ) -> ValkeySettings:
        """Everything one unit's file depends on: these options, its role, password and users."""
        return ValkeySettings(
            password=password,
            primary_address=primary_address,
            users=users,
            announce_host=announce_host,
            tls=tls,
            min_replicas_to_write=min_replicas_to_write,
            log_level=self.log_level,
            maxmemory=self.maxmemory,
            maxmemory_policy=self.maxmemory_policy,
        )

    @property
    def workload_options(self) -> dict[str, str]:
        """The options that only shape the config file (not the password)."""
        return {
            'log_level': self.log_level,
            'maxmemory': self.maxmemory,
            'maxmemory_policy': self.maxmemory_policy,
        }


def applicable(
    load_config: LoadConfig, last_good_options: Mapping[str, str]
) -> tuple[CharmConfig | None, ops.BlockedStatus | None]:
    """The config to apply (``load_config`` is the charm's), and why it is not the user's.

    While the user's config is invalid the unit is Blocked, but the last options
    that were valid still apply with the current password source: a leadership
    change must still rewrite the file, whatever typo is in the config. If the
    password source itself is invalid, or nothing usable was kept (never valid,
    or kept by an older charm revision with other options), there is nothing to
    apply: a password is never guessed.
    """
    try:
        return load_config(CharmConfig), None
    except ValueError as e:
        problem = ops.BlockedStatus(f'invalid config: {e}')
    if not last_good_options:
        return None, problem
    try:
        password = load_config(PasswordConfig)
        return CharmConfig(**last_good_options, admin_password=password.admin_password), problem
    except (TypeError, ValueError):
        return None, problem
