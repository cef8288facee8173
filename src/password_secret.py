# Copyright 2026 The valkey-leader-k8s authors
# See LICENSE file for licensing details.

"""The life of the Valkey password: one application secret, owned by the leader.

* The leader finds the secret by its label (the application's own name for it),
  or by the id its predecessor published in the peer databag; it creates one
  only when the application has none. A leadership change never changes the
  password.
* Only the leader writes it (create, repair, rotate). Each write is preceded by
  ``before_write``, the charm's "am I still the leader?" check.
* Every other unit reads it by the id the leader published, never by creating
  one, with ``refresh=True`` so that a rotation reaches it.
* The user may replace it with a secret of their own (the ``admin-password``
  option); that one is read, never written.

This module knows ops' secrets but no Juju events.
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
import string
from collections.abc import Callable
from typing import Final

import ops

from leadership import LeaderRecord

logger = logging.getLogger(__name__)

LABEL: Final = 'admin-password'
KEY: Final = 'password'
LENGTH: Final = 48
_ALPHABET: Final = string.ascii_letters + string.digits


@dataclasses.dataclass(frozen=True)
class AppPassword:
    """The application's password, as the leader found or wrote it."""

    secret_id: str
    password: str = dataclasses.field(repr=False)
    revision: int
    """The number the leader publishes as ``password-revision``.

    It moves with every new revision of the secret, and that change is what
    tells the other units to read the secret again."""


def generate() -> str:
    """A new random password: letters and digits only, so it is easy to pass around."""
    return ''.join(secrets.choice(_ALPHABET) for _ in range(LENGTH))


def ensure(
    model: ops.Model, published: LeaderRecord | None, *, before_write: Callable[[], None]
) -> AppPassword:
    """Find the application's password secret (leader only); create or repair it if needed."""
    published_revision = published.password_revision if published else 0
    secret = _find(model, published.password_secret_id if published else None)
    if secret is None:
        password = generate()
        before_write()
        secret = model.app.add_secret(
            {KEY: password},
            label=LABEL,
            description='Valkey password (requirepass and masterauth) of every unit',
        )
        logger.info('Created the %s secret', LABEL)
        assert secret.id is not None  # noqa: S101 - Juju gives an owned secret an id at once
        return AppPassword(secret.id, password, revision=1)
    password = secret.get_content(refresh=True).get(KEY, '')
    if password:
        return _current(secret, password, published_revision, wrote=False)
    # Our own secret lost its key (edited by hand?): repair it.
    logger.warning('The %s secret had no password; writing a new one', LABEL)
    return _write(secret, generate(), published_revision, before_write)


def rotate(
    model: ops.Model, published: LeaderRecord | None, *, before_write: Callable[[], None]
) -> AppPassword:
    """Write a new random password as a new revision of the secret (leader only)."""
    current = ensure(model, published, before_write=before_write)
    secret = model.get_secret(id=current.secret_id)
    rotated = _write(secret, generate(), current.revision, before_write)
    logger.info('Rotated the password: new revision of the %s secret', LABEL)
    return rotated


def read_published(model: ops.Model, secret_id: str) -> str | ops.StatusBase:
    """A non-leader reads the leader's secret by the id it published; it never creates one."""
    try:
        # refresh=True: read (and track) the newest revision. Whether Juju hands
        # a peer of the owner the newest revision without it differs between
        # Juju versions, so do not depend on it.
        content = model.get_secret(id=secret_id).get_content(refresh=True)
    except ops.ModelError as e:
        logger.warning('Cannot read the password secret yet: %s', type(e).__name__)
        return ops.WaitingStatus('waiting for access to the password secret')
    return content.get(KEY) or ops.WaitingStatus(
        'waiting for the leader to repair the password secret'
    )


def read_user_secret(secret: ops.Secret, app_name: str) -> str | ops.StatusBase:
    """Read the user's ``admin-password`` secret, or say which command fixes it."""
    try:
        content = secret.get_content(refresh=True)
    except ops.SecretNotFoundError:
        return ops.BlockedStatus(
            'admin-password secret not found: check the id with `juju secrets`'
        )
    except ops.ModelError:
        return ops.BlockedStatus(
            f'admin-password secret not granted: run `juju grant-secret <secret> {app_name}`'
        )
    return content.get(KEY) or ops.BlockedStatus(
        f"admin-password secret has no '{KEY}' key: run `juju update-secret <secret> {KEY}=...`"
    )


def _find(model: ops.Model, published_id: str | None) -> ops.Secret | None:
    """By label first: it is the application's own name for the secret, valid on any unit.

    The id the previous leader published is the fallback (a secret created
    without the label); finding it by id *and* label adopts the label.
    """
    try:
        return model.get_secret(label=LABEL)
    except ops.SecretNotFoundError:
        pass
    if published_id is None:
        return None
    try:
        return model.get_secret(id=published_id, label=LABEL)
    except ops.SecretNotFoundError:
        logger.warning('The published password secret no longer exists')
        return None


def _write(
    secret: ops.Secret, password: str, published_revision: int, before_write: Callable[[], None]
) -> AppPassword:
    before_write()
    secret.set_content({KEY: password})
    return _current(secret, password, published_revision, wrote=True)


def _current(
    secret: ops.Secret, password: str, published_revision: int, *, wrote: bool
) -> AppPassword:
    info = secret.get_info()
    assert info.id is not None  # noqa: S101 - an owned secret always has an id
    # Juju numbers revisions upwards, but within the hook that wrote one,
    # secret-info may still report the previous revision: a write must move the
    # published number on by itself. Taking the secret's own revision when it
    # is higher means a rotation whose announcement failed in an earlier hook
    # is announced by the next one.
    revision = max(info.revision, published_revision + 1 if wrote else published_revision)
    return AppPassword(info.id, password, revision)
