# Copyright 2026 The valkey-leader-k8s authors
# See LICENSE file for licensing details.

"""The ``redis-exporter`` sidecar: Valkey's metrics for Prometheus, read as a least-privilege user.

Each pod runs ``redis_exporter`` (oliver006/redis_exporter, its own OCI
resource) in a second container, as its image's non-root user. It reads the
pod's Valkey over the loopback address (a pod's containers share one network
namespace) as the ACL user :data:`USER`, which may run only what the exporter
needs to read: ``INFO``, ``PING``, ``CLIENT SETNAME``/``SETINFO``, ``SLOWLOG
LEN`` and ``LATENCY LATEST``/``HISTOGRAM``; no key, no channel, not ``CONFIG
GET``, which would show it ``requirepass`` (the exporter reads ``maxmemory``
from ``INFO`` instead, and shrugs off the refusal), and not ``SLOWLOG GET``,
which would show it clients' commands with their arguments.

The user's password is derived from the admin password (HMAC-SHA256), so every
unit computes the same one from what it already reads, the leader writes no
second secret, and a rotation of the admin password rotates it too. The
password reaches the exporter in a 0600 file (``-redis.password-file``, a JSON
object mapping the Valkey URL to the password), never in its arguments or
environment. Valkey does not replicate ACL users, so every unit writes this
one into its own config file, beside the client relations' users.

Knows ops' ``Container``, no Juju events.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from typing import Final

import ops
from ops import pebble

from workload.config import MetricsUser

logger = logging.getLogger(__name__)

CONTAINER: Final = 'redis-exporter'
SERVICE: Final = 'redis-exporter'
PORT: Final = 9121
USER: Final = 'charm-metrics'
"""The exporter's Valkey user."""
VALKEY_URL: Final = 'redis://localhost:6379'
# The image runs as uid 59000 (oliver006/redis_exporter's Dockerfile: USER
# 59000:59000), which can write nowhere but /tmp (the alpine image's, 1777).
PASSWORD_FILE: Final = '/tmp/redis-exporter/password.json'  # noqa: S105, S108 - a path
COMMANDS: Final = (
    '-@all +info +ping +client|setname +client|setinfo +slowlog|len '
    '+latency|latest +latency|histogram'
)
"""What the exporter may run: reads of server state only (ACL rules, left to right)."""
_DERIVATION: Final = b'valkey-leader-k8s redis_exporter'


def password(admin_password: str) -> str:
    """The exporter user's password: an HMAC of the admin password, which it does not reveal."""
    return hmac.new(admin_password.encode(), _DERIVATION, hashlib.sha256).hexdigest()


def acl_rules(admin_password: str) -> str:
    """The rules of the exporter's ``user`` line: on, its password's SHA-256, its commands."""
    digest = hashlib.sha256(password(admin_password).encode()).hexdigest()
    return f'on #{digest} resetkeys resetchannels {COMMANDS}'


def user(admin_password: str) -> MetricsUser:
    """The exporter's user, as every unit writes it into its config file."""
    return MetricsUser(name=USER, acl_rules=acl_rules(admin_password))


def password_file(admin_password: str) -> str:
    """The file ``-redis.password-file`` reads: the Valkey URL, mapped to the password."""
    return json.dumps({VALKEY_URL: password(admin_password)})


def pebble_layer() -> pebble.Layer:
    """The exporter's service: its password only in the file, never on the command line."""
    command = ' '.join(
        [
            '/redis_exporter',
            f'-redis.addr={VALKEY_URL}',
            f'-redis.user={USER}',
            f'-redis.password-file={PASSWORD_FILE}',
            f'-web.listen-address=:{PORT}',
        ]
    )
    layer: pebble.LayerDict = {
        'summary': 'redis_exporter',
        'description': "Valkey's metrics for Prometheus, run by the valkey-leader-k8s charm",
        'services': {
            SERVICE: {
                'override': 'replace',
                'summary': 'redis_exporter',
                'command': command,
                'startup': 'enabled',
            }
        },
    }
    return pebble.Layer(layer)


def configure(container: ops.Container, admin_password: str) -> ops.StatusBase | None:
    """Put the password file in place and run the exporter; restart it if the file changed.

    The exporter reads the file when it starts (a new password needs a
    restart: that is the exporter's, not Valkey's). Returns a status when
    Pebble cannot be reached or refuses; the next event retries.
    """
    if not container.can_connect():
        return ops.WaitingStatus(f'waiting for Pebble in the {CONTAINER} container')
    try:
        changed = _push_if_changed(container, password_file(admin_password))
        layer = pebble_layer()
        if container.get_plan().services.get(SERVICE) != layer.services[SERVICE]:
            container.add_layer(CONTAINER, layer, combine=True)
            container.replan()
        elif changed or not container.get_service(SERVICE).is_running():
            container.restart(SERVICE)
    except ops.pebble.Error as e:
        logger.error('Pebble error while configuring the exporter: %s', type(e).__name__)
        return ops.WaitingStatus(
            f'Pebble error in {CONTAINER} ({type(e).__name__}); retrying on the next event'
        )
    return None


def _push_if_changed(container: ops.Container, text: str) -> bool:
    try:
        with container.pull(PASSWORD_FILE) as file:
            if file.read() == text:
                return False
    except ops.pebble.PathError as e:
        if e.kind != 'not-found':
            raise
    directory = PASSWORD_FILE.rsplit('/', 1)[0]
    if not container.exists(directory):
        container.make_dir(directory, make_parents=True, permissions=0o700)
    container.push(PASSWORD_FILE, text, permissions=0o600)
    logger.info('Wrote the exporter password file')
    return True
