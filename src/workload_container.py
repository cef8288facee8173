# Copyright 2026 The valkey-leader-k8s authors
# See LICENSE file for licensing details.

"""The workload container, through Pebble: put the rendered file in place, run Valkey.

Push the file only when it differs, restart only when it was pushed, and add
the Pebble layer only when it changed. Raises ``ops.pebble.Error`` for the
charm to turn into a status. Knows ops' ``Container``, no Juju events.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import ops

import workload

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Applied:
    """What :func:`apply` did."""

    pushed: bool
    """The file changed, so Valkey was restarted with it."""
    version: str | None
    """The Valkey version, read when the Pebble plan was new; otherwise ``None``."""


def configure(
    container: ops.Container, settings: workload.ValkeySettings, templates_dir: Path
) -> Applied | ops.StatusBase:
    """Render the file; push it, and (re)start Valkey, if anything changed; or say why not."""
    if not container.can_connect():
        return ops.WaitingStatus('waiting for Pebble in the valkey container')
    config_text = workload.render_config(settings, templates_dir)
    try:
        return apply(container, config_text)
    except ops.pebble.Error as e:
        # Not re-raised: a traceback would only make Juju retry this one event;
        # every later event retries anyway, from the same inputs.
        logger.error('Pebble error while configuring Valkey: %s', type(e).__name__)
        return ops.WaitingStatus(f'Pebble error ({type(e).__name__}); retrying on the next event')


def apply(container: ops.Container, config_text: str) -> Applied:
    """Bring the container in line with ``config_text``."""
    pushed = _push_if_changed(container, config_text)
    new_plan = _ensure_service(container, restart=pushed)
    # A new plan means a new container (a new image, so maybe a new Valkey)
    # or a new charm revision: the only times the version can change.
    return Applied(pushed=pushed, version=_read_version(container) if new_plan else None)


def _push_if_changed(container: ops.Container, desired: str) -> bool:
    try:
        with container.pull(workload.CONFIG_PATH) as file:
            current = file.read()
    except ops.pebble.PathError as e:
        if e.kind != 'not-found':
            raise
        current = None
    if current == desired:
        return False
    # Pebble writes to a temporary file and renames it: the file is never
    # half-written, and a failed push leaves the last good file in place.
    container.push(
        workload.CONFIG_PATH,
        desired,
        make_dirs=True,
        # Created by Pebble, which runs as the workload user: owned by it.
        permissions=0o600,
    )
    return True


def _ensure_service(container: ops.Container, *, restart: bool) -> bool:
    """Start or restart Valkey as needed; return whether the Pebble plan was new."""
    layer = workload.pebble_layer()
    planned = container.get_plan().services.get(workload.SERVICE)
    new_plan = planned != layer.services[workload.SERVICE]
    if new_plan:
        container.add_layer(workload.CONTAINER, layer, combine=True)
    elif not restart and container.get_service(workload.SERVICE).is_running():
        return False
    if new_plan:
        # replan starts the service, or restarts it if its definition changed.
        container.replan()
    elif restart:
        container.restart(workload.SERVICE)
    else:
        container.start(workload.SERVICE)
    return new_plan


def _read_version(container: ops.Container) -> str | None:
    try:
        stdout, _ = container.exec(['valkey-server', '--version']).wait_output()
    except ops.pebble.Error as e:
        # Cosmetic: Valkey runs; `juju status` shows no version until the
        # next new plan (a new container or charm revision).
        logger.warning('Could not read the Valkey version: %s', type(e).__name__)
        return None
    return workload.parse_version(stdout)
