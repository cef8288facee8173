# Copyright 2026 The valkey-leader-k8s authors
# See LICENSE file for licensing details.

"""The workload container: put the rendered file in place, and make Valkey run it.

The file is pushed only when it differs, the Pebble layer added only when it
changed. A running server gets the change live (:mod:`workload.live`: role,
password, options, users; no dropped connection, no reload of the data); it
restarts only when that is impossible, and the log says why. Knows ops'
``Container``, no Juju events.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Final

import ops
from ops import pebble

from workload.config import (
    CONFIG_PATH,
    PORT,
    TLS_DIR,
    TlsMaterial,
    ValkeySettings,
    render_config,
    requirepass_from_config,
    tls_ca_file_from_config,
)

if TYPE_CHECKING:
    from workload.client import Transport
    from workload.live import LiveResult

logger = logging.getLogger(__name__)

CONTAINER: Final = 'valkey'
SERVICE: Final = 'valkey'
CHECK: Final = 'valkey-ready'
CHECK_PERIOD: Final = '1s'
"""How often Pebble checks that Valkey listens: a crashed server is noticed within it."""


@dataclasses.dataclass(frozen=True)
class Applied:
    """What :func:`configure` did."""

    version: str | None
    """The Valkey version, read when the Pebble plan was new; otherwise ``None``."""
    waiting: str = ''
    """Why the running server does not have the file's role yet (``LiveResult.waiting``)."""
    started: bool = False
    """The server was not running, and this hook started it from the file."""


def configure(
    container: ops.Container,
    settings: ValkeySettings,
    templates_dir: Path,
    *,
    recheck: bool = False,
    may_promote: bool = False,
) -> Applied | ops.StatusBase:
    """Render the file; push it, and bring the server in line, if anything changed; or say why not.

    ``recheck``: compare the running server with the file even if the file is
    unchanged (another unit may have changed the server's role live).
    ``may_promote``: the leader chose this unit's server as the primary; without
    it a running replica is never promoted live.
    """
    if not container.can_connect():
        return ops.WaitingStatus('waiting for Pebble in the valkey container')
    config_text = render_config(settings, templates_dir)
    try:
        return _apply(container, config_text, settings, recheck=recheck, may_promote=may_promote)
    except pebble.Error as e:
        # Not re-raised: a traceback would only make Juju retry this one event;
        # every later event retries anyway, from the same inputs.
        logger.error('Pebble error while configuring Valkey: %s', type(e).__name__)
        return ops.WaitingStatus(f'Pebble error ({type(e).__name__}); retrying on the next event')


def _apply(
    container: ops.Container,
    config_text: str,
    settings: ValkeySettings,
    *,
    recheck: bool,
    may_promote: bool,
) -> Applied:
    """Bring the container, and the server running in it, in line with ``config_text``."""
    previous = _pull(container)
    pushed = previous != config_text
    if settings.tls is not None:
        _install_tls(container, settings.tls)  # before the file that names them
    if pushed:
        _push(container, config_text)
        role = f'replica of {settings.primary_address}' if settings.primary_address else 'primary'
        logger.info('Wrote the config file: %s', role)
    waiting = ''
    layer = pebble_layer()
    plan = container.get_plan()
    new_plan = (
        plan.services.get(SERVICE) != layer.services[SERVICE]
        or plan.checks.get(CHECK) != layer.checks[CHECK]
    )
    if new_plan:
        container.add_layer(CONTAINER, layer, combine=True)
        container.replan()  # stops the service if its definition changed; starts nothing
    started = not container.get_service(SERVICE).is_running()
    if started:
        # Only here, in a hook, after the leader chose the primary: see pebble_layer().
        container.start(SERVICE)  # it reads the file as it starts
    elif pushed or recheck:
        # The server runs an older file (or may have been changed live by a
        # previous leader): change it live; restart only if that fails.
        transports = _transports(container, settings.tls, previous)
        result = apply_to_running_server(
            settings, previous, config_text, transports, may_promote=may_promote
        )
        if result.restart_needed:
            logger.info('Restarting Valkey: %s', result.reason)
            container.restart(SERVICE)
        waiting = result.waiting
    if pushed:
        # The server runs the new file now: the certificates no file names go.
        _remove_tls_files(container, keep=settings.tls)
    # A new plan means a new container (a new image, so maybe a new Valkey)
    # or a new charm revision: the only times the version can change.
    version = _read_version(container) if new_plan else None
    return Applied(version=version, waiting=waiting, started=started)


def apply_to_running_server(
    settings: ValkeySettings,
    previous: str | None,
    config_text: str,
    transports: Sequence[Transport] = (None,),
    may_promote: bool = False,
) -> LiveResult:
    """Change the running server to ``settings`` live; the result says if it must restart."""
    # Imported here: only a hook that changes a running server pays for
    # importing the Valkey client (Juju starts a new process for every hook).
    from workload import client, live  # noqa: PLC0415

    # The server may still have the password of the file this hook replaced.
    old_password = requirepass_from_config(previous) if previous else None
    passwords = [settings.password, *([old_password] if old_password else [])]
    result = live.apply_live(
        settings,
        passwords=passwords,
        address=client.LOCAL,
        resolve=client.same_host,
        transports=transports,
        may_promote=may_promote,
    )
    if not result.restart_needed and _user_lines(previous) != _user_lines(config_text):
        # Valkey does not replicate users and reads `user` lines only at start.
        users = live.apply_users(
            settings.users, passwords=passwords, address=client.LOCAL, transports=transports
        )
        result = dataclasses.replace(users, waiting=result.waiting)
    if not result.restart_needed and result.changes:
        logger.info('Applied live, no restart: %s', ', '.join(result.changes))
    if result.waiting:
        logger.info('Role unchanged for now: %s', result.waiting)
    return result


def is_running(container: ops.Container) -> bool:
    """Whether Pebble runs Valkey now (``False`` too when Pebble does not answer)."""
    try:
        return container.can_connect() and container.get_service(SERVICE).is_running()
    except (pebble.Error, ops.ModelError):
        return False


def pebble_layer() -> pebble.Layer:
    """The Pebble layer that runs Valkey from the rendered file.

    The password is only in the 0600 file: never in the command line or the
    environment, which anyone who can read the Pebble plan or /proc could see.
    No user-id: Pebble itself runs as the workload user, and runs its services
    as itself (a non-root Pebble cannot switch users).

    Pebble never starts Valkey by itself; only the charm does, in a hook, once
    the leader chose the primary. A primary that Pebble restarted after a crash
    would reload its last RDB snapshot, and every replica would then resync
    from it and drop every write made since that snapshot
    (https://valkey.io/topics/replication/, "Safety of replication when master
    has persistence turned off"). So:

    * ``on-failure``/``on-success: ignore``: a server that exits stays down
      (Pebble's default, ``restart``, would start it again after half a second,
      https://documentation.ubuntu.com/pebble/reference/service-auto-restart/);
    * ``startup: disabled``: Pebble does not start it when its container
      restarts (``replan`` starts only enabled services); ``pebble-ready``
      runs the charm, which starts it;
    * the ``valkey-ready`` check runs every second and fails at once
      (``threshold: 1``; Pebble's defaults are 10 s and 3,
      https://documentation.ubuntu.com/pebble/reference/health-checks/): Juju
      then runs ``valkey-pebble-check-failed`` (Juju 3.6 and later), in which the
      charm brings the server back, as a replica unless the leader chose it.
    """
    layer: pebble.LayerDict = {
        'summary': 'Valkey',
        'description': 'Valkey, configured by the valkey-leader-k8s charm',
        'services': {
            SERVICE: {
                'override': 'replace',
                'summary': 'Valkey server',
                'command': f'valkey-server {CONFIG_PATH}',
                'startup': 'disabled',
                'on-failure': 'ignore',
                'on-success': 'ignore',
            }
        },
        'checks': {
            CHECK: {
                'override': 'replace',
                'level': 'ready',
                'period': CHECK_PERIOD,
                'timeout': '500ms',
                'threshold': 1,
                'tcp': {'port': PORT},
            }
        },
    }
    return pebble.Layer(layer)


_VERSION = re.compile(r'\bv=(?P<version>[0-9][0-9A-Za-z.+-]*)')


def parse_version(output: str) -> str | None:
    """Extract ``9.1.0`` from ``valkey-server --version`` output."""
    match = _VERSION.search(output)
    return match['version'] if match else None


def _read_version(container: ops.Container) -> str | None:
    try:
        stdout, _ = container.exec(['valkey-server', '--version']).wait_output()
    except pebble.Error as e:
        # Cosmetic: Valkey runs; `juju status` shows no version until the
        # next new plan (a new container or charm revision).
        logger.warning('Could not read the Valkey version: %s', type(e).__name__)
        return None
    return parse_version(stdout)


def _user_lines(config_text: str | None) -> list[str]:
    return [line for line in (config_text or '').splitlines() if line.startswith('user ')]


def _pull(container: ops.Container) -> str | None:
    try:
        with container.pull(CONFIG_PATH) as file:
            return file.read()
    except pebble.PathError as e:
        if e.kind != 'not-found':
            raise
        return None


def _push(container: ops.Container, desired: str) -> None:
    # Pebble writes to a temporary file and renames it: the file is never
    # half-written, and a failed push leaves the last good file in place.
    container.push(
        CONFIG_PATH,
        desired,
        make_dirs=True,
        # Created by Pebble, which runs as the workload user: owned by it.
        permissions=0o600,
    )


# -- TLS files: each certificate in a directory of its own, named after it.


def _install_tls(container: ops.Container, tls: TlsMaterial) -> None:
    """Write the certificate, CA and key where the file will name them (once)."""
    if container.exists(tls.key_file):
        return  # written last: the directory is complete
    # Public: the certificate and the CA. Pushed before the key, each atomically.
    container.push(tls.cert_file, tls.certificate_chain, make_dirs=True, permissions=0o644)
    container.push(tls.ca_file, tls.ca, make_dirs=True, permissions=0o644)
    # Private: only the workload user (Pebble's own user, so the file's owner) reads it.
    container.push(tls.key_file, tls.private_key, make_dirs=True, permissions=0o600)
    logger.info('Wrote a new certificate to %s', tls.directory)


def _remove_tls_files(container: ops.Container, *, keep: TlsMaterial | None) -> None:
    """Remove every certificate directory but ``keep``'s (all of them when TLS is off)."""
    try:
        entries = container.list_files(TLS_DIR)
    except pebble.APIError as e:
        if e.code == 404:
            return  # never had TLS
        raise
    for entry in entries:
        if keep is None or entry.path != keep.directory:
            container.remove_path(entry.path, recursive=True)
            logger.info('Removed the certificate in %s: the file no longer names it', entry.path)


def installed_tls(container: ops.Container) -> TlsMaterial | None:
    """What the file in the container serves over TLS now, or ``None``: plaintext or no file.

    When a new certificate cannot be used, the unit keeps serving this one.
    """
    config_text = _pull(container)
    ca_file = tls_ca_file_from_config(config_text) if config_text else None
    if ca_file is None or not ca_file.startswith(f'{TLS_DIR}/'):
        return None
    directory = ca_file.rsplit('/', 1)[0]
    try:
        material = TlsMaterial(
            certificate_chain=_read(container, f'{directory}/cert.pem'),
            ca=_read(container, f'{directory}/ca.pem'),
            private_key=_read(container, f'{directory}/key.pem'),
        )
    except pebble.PathError:
        return None
    # Only the same files name the same directory: anything else is not ours to keep.
    return material if material.directory == directory else None


def transports(container: ops.Container, tls: TlsMaterial | None) -> list[Transport]:
    """How to reach this unit's server, and the others': as its file says, then as ``tls`` says.

    The leader reads and changes the other units' servers with these too: with
    TLS on, their port speaks TLS only, and every unit's certificate comes from
    the same provider, so this unit's CA checks theirs. While this unit's own
    server turns TLS on or off, both are tried. Never plaintext after a failed
    TLS attempt otherwise: that would send the password unencrypted.
    """
    from workload import client  # noqa: PLC0415

    desired = client.Tls(tls.ca) if tls is not None else None
    try:
        previous = _pull(container) if container.can_connect() else None
        return _transports(container, tls, previous)
    except pebble.Error:
        return [desired]  # the file is not known: what this hook serves is the best guess


def _transports(
    container: ops.Container, tls: TlsMaterial | None, previous: str | None
) -> list[Transport]:
    """How to reach the running server: as its file said (first), then as the new one says."""
    from workload import client  # noqa: PLC0415

    desired = client.Tls(tls.ca) if tls is not None else None
    running: Transport = None
    if ca_file := tls_ca_file_from_config(previous) if previous else None:
        try:
            running = client.Tls(_read(container, ca_file))
        except pebble.PathError:
            running = desired  # gone: the new CA is the best guess
    return [running, desired]


def _read(container: ops.Container, path: str) -> str:
    with container.pull(path) as file:
        return file.read()
