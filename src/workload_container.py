# Copyright 2026 The valkey-leader-k8s authors
# See LICENSE file for licensing details.

"""The workload container: put the rendered file in place, and make Valkey run it.

Push the file only when it differs, and add the Pebble layer only when it
changed. A changed file (on ``leader-elected`` and ``upgrade-charm``, the file
even if unchanged) is applied to the running server live
(:mod:`live`: role, password, options; no dropped connection, no reload of the
data); Valkey restarts only when that is impossible (not running yet, a new
Pebble plan, a live apply that failed), and the log says why. Raises
``ops.pebble.Error`` for the charm to turn into a status. Knows ops'
``Container``, no Juju events.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import ops

import live
import workload

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Applied:
    """What :func:`apply` did."""

    version: str | None
    """The Valkey version, read when the Pebble plan was new; otherwise ``None``."""


def configure(
    container: ops.Container,
    settings: workload.ValkeySettings,
    templates_dir: Path,
    *,
    recheck: bool = False,
) -> Applied | ops.StatusBase:
    """Render the file; push it, and (re)start Valkey, if anything changed; or say why not.

    ``recheck``: compare the running server with the file even if the file is
    unchanged (a previous leader may have changed the server's role live).
    A promotion starts with a handover from the old primary if it still answers
    (``live.apply_live``).
    """
    if not container.can_connect():
        return ops.WaitingStatus('waiting for Pebble in the valkey container')
    config_text = workload.render_config(settings, templates_dir)
    try:
        return apply(container, config_text, settings, recheck=recheck)
    except ops.pebble.Error as e:
        # Not re-raised: a traceback would only make Juju retry this one event;
        # every later event retries anyway, from the same inputs.
        logger.error('Pebble error while configuring Valkey: %s', type(e).__name__)
        return ops.WaitingStatus(f'Pebble error ({type(e).__name__}); retrying on the next event')


def apply(
    container: ops.Container,
    config_text: str,
    settings: workload.ValkeySettings,
    *,
    recheck: bool = False,
) -> Applied:
    """Bring the container, and the server running in it, in line with ``config_text``."""
    previous = _pull(container)
    pushed = previous != config_text
    if pushed:
        _push(container, config_text)
        role = f'replica of {settings.primary_address}' if settings.primary_address else 'primary'
        logger.info('Wrote the config file: %s', role)
    layer = workload.pebble_layer()
    planned = container.get_plan().services.get(workload.SERVICE)
    new_plan = planned != layer.services[workload.SERVICE]
    if new_plan:
        container.add_layer(workload.CONTAINER, layer, combine=True)
        container.replan()  # starts the service, or restarts it if its definition changed
    elif not container.get_service(workload.SERVICE).is_running():
        container.start(workload.SERVICE)  # it reads the file as it starts
    elif (pushed or recheck) and _restart_needed(settings, previous, config_text):
        container.restart(workload.SERVICE)
    # A new plan means a new container (a new image, so maybe a new Valkey)
    # or a new charm revision: the only times the version can change.
    return Applied(version=_read_version(container) if new_plan else None)


def _restart_needed(
    settings: workload.ValkeySettings, previous: str | None, config_text: str
) -> bool:
    """Apply ``settings`` to the running server live; say whether it must restart instead."""
    # The pod's containers share one network namespace: the server is on this
    # container's loopback (live.LOCAL). The password travels in AUTH only.
    old_password = workload.requirepass_from_config(previous) if previous else None
    passwords = [settings.password, *([old_password] if old_password else [])]
    result = live.apply_live(
        settings, passwords=passwords, address=live.LOCAL, resolve=live.same_host
    )
    if result.handover is not None:
        _log_handover(result.handover)
    if not result.restart_needed and _user_lines(previous) != _user_lines(config_text):
        # Valkey does not replicate users and reads `user` lines only at start.
        result = live.apply_users(settings.users, passwords=passwords, address=live.LOCAL)
    if result.restart_needed:
        logger.info('Restarting Valkey: %s', result.reason)
    elif result.changes:
        logger.info('Applied live, no restart: %s', ', '.join(result.changes))
    return result.restart_needed


def _log_handover(handover: live.HandoverResult) -> None:
    if handover.status == 'switched':
        logger.info('The old primary handed over in %.0f ms', handover.seconds * 1000)
    elif handover.status == 'forced':
        logger.warning('Demoted the old primary before catching up: %s', handover.reason)
    else:
        reason = f'{handover.status}: {handover.reason}'
        logger.warning('No handover (%s); promoting directly', reason)


def _user_lines(config_text: str | None) -> list[str]:
    return [line for line in (config_text or '').splitlines() if line.startswith('user ')]


def _pull(container: ops.Container) -> str | None:
    try:
        with container.pull(workload.CONFIG_PATH) as file:
            return file.read()
    except ops.pebble.PathError as e:
        if e.kind != 'not-found':
            raise
        return None


def _push(container: ops.Container, desired: str) -> None:
    # Pebble writes to a temporary file and renames it: the file is never
    # half-written, and a failed push leaves the last good file in place.
    container.push(
        workload.CONFIG_PATH,
        desired,
        make_dirs=True,
        # Created by Pebble, which runs as the workload user: owned by it.
        permissions=0o600,
    )


def _read_version(container: ops.Container) -> str | None:
    try:
        stdout, _ = container.exec(['valkey-server', '--version']).wait_output()
    except ops.pebble.Error as e:
        # Cosmetic: Valkey runs; `juju status` shows no version until the
        # next new plan (a new container or charm revision).
        logger.warning('Could not read the Valkey version: %s', type(e).__name__)
        return None
    return workload.parse_version(stdout)
