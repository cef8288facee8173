#!/usr/bin/env python3
# Copyright 2026 The valkey-leader-k8s authors
# See LICENSE file for licensing details.

"""Valkey on Kubernetes, where the Juju leader is the primary.

A reference for handling leadership in a charm; it follows the ops how-to
"Manage leadership changes" (https://documentation.ubuntu.com/ops/latest/howto/manage-leadership-changes/):

* ``leader-elected`` is observed; the deprecated ``leader-settings-changed`` is not.
* The leader tells the other units who leads by writing the peer relation's
  application databag; they react to ``valkey-peers-relation-changed``.
* Only the leader writes the application secret and the peer databag, and it
  checks ``is_leader()`` again right before each write: Juju guarantees
  leadership for only 30 seconds after it was last confirmed.
* Nothing leader-only is deferred: a deferred event re-runs later, when this
  unit may no longer lead. Every event instead runs one idempotent reconcile,
  and the next event retries whatever could not be done.
"""

from __future__ import annotations

import functools
import logging
from typing import Final

import ops

import workload
from charm_config import CharmConfig, PasswordConfig
from leadership import PEER_ENDPOINT, LeaderRecord, pod_name, unit_address

logger = logging.getLogger(__name__)

PASSWORD_SECRET_LABEL: Final = 'admin-password'  # noqa: S105 - a label, not a password
PASSWORD_KEY: Final = 'password'  # noqa: S105 - a key name, not a password


class LeadershipLostError(Exception):
    """This unit stopped being the leader in the middle of the hook."""


class ValkeyLeaderCharm(ops.CharmBase):
    """Run Valkey with the Juju leader as primary and every other unit as its replica."""

    # This unit's memory across hooks: the last options that were valid, so
    # that a role change (a new leader) still reaches the config file while
    # the user's current config is invalid. Never holds a password.
    _stored = ops.StoredState()

    def __init__(self, framework: ops.Framework) -> None:
        super().__init__(framework)
        self._stored.set_default(last_good_options={})
        self.container = self.unit.get_container(workload.CONTAINER)
        # Faults met while acting in this hook (Pebble errors, lost leadership).
        # Juju starts a fresh process for every hook, so these never outlive the
        # hook; the next event retries and, if all goes well, reports nothing.
        self._faults: list[ops.StatusBase] = []
        # The settings this hook's reconcile rendered, or why it could not.
        self._assessment: workload.ValkeySettings | ops.StatusBase | None = None
        # Whether this hook added a revision to the password secret (rotate-password,
        # or a repair): the action reports it even if telling the peers failed.
        self._password_written = False

        # A new leader takes over the leader duties and announces itself.
        framework.observe(self.on.leader_elected, self._on_change)
        # leader-settings-changed is deliberately not observed (it is deprecated):
        # the other units learn about a new leader, and about a new password,
        # from the leader's writes to the peer application databag.
        framework.observe(self.on[PEER_ENDPOINT].relation_changed, self._on_change)
        # The leader can publish as soon as the peer relation exists.
        framework.observe(self.on[PEER_ENDPOINT].relation_created, self._on_change)
        # When the leader's unit goes away, Juju may run relation-departed on
        # the new leader before leader-elected: it already leads, so reconcile.
        framework.observe(self.on[PEER_ENDPOINT].relation_departed, self._on_change)
        framework.observe(self.on.config_changed, self._on_change)
        framework.observe(self.on.valkey_pebble_ready, self._on_change)
        framework.observe(self.on.upgrade_charm, self._on_upgrade_charm)
        # A secret we read got a new revision: the user's admin-password (and,
        # on some Juju versions, the app's own password secret on non-leaders).
        framework.observe(self.on.secret_changed, self._on_change)
        # Retry whatever the last event could not finish (Pebble down, ...).
        framework.observe(self.on.update_status, self._on_change)
        framework.observe(self.on.secret_remove, self._on_secret_remove)
        framework.observe(self.on.rotate_password_action, self._on_rotate_password)
        # Status is only ever set here, from the same inputs the reconcile used.
        framework.observe(self.on.collect_unit_status, self._on_collect_unit_status)
        framework.observe(self.on.collect_app_status, self._on_collect_app_status)

    # ------------------------------------------------------------------ events

    def _on_change(self, _: ops.EventBase) -> None:
        self._reconcile()

    def _on_upgrade_charm(self, _: ops.UpgradeCharmEvent) -> None:
        # New charm code may define the primary Service differently, and an
        # upgrade is the operator's way to repair it: apply it even if the
        # peer databag says it already selects this leader.
        self._reconcile(reapply_primary_service=True)

    def _on_rotate_password(self, event: ops.ActionEvent) -> None:
        if not self.unit.is_leader():
            record = self._published_record()
            leader = record.unit if isinstance(record, LeaderRecord) else 'the leader unit'
            event.fail(
                f'Only the leader can rotate the password. Run: juju run {leader} rotate-password'
            )
            return
        try:
            users_password = self.load_config(PasswordConfig).admin_password
        except ValueError as e:
            event.fail(f'Fix the config first: {e}')
            return
        if users_password is not None:
            event.fail(
                'admin-password is set, so the password is yours: rotate it with '
                '`juju update-secret <your secret> password=...`, or unset admin-password first'
            )
            return
        secret_id = self._reconcile(rotate_password=True)
        if secret_id is None:
            reason = self._faults[-1].message if self._faults else 'see `juju debug-log`'
            if self._password_written:
                event.fail(
                    f'The password was rotated, but the other units were not told yet ({reason});'
                    ' the next event on the leader tells them'
                )
            else:
                event.fail(f'The password was not rotated: {reason}')
            return
        # Never the password itself: action results are stored and shown by Juju.
        event.set_results(
            {
                'result': 'password rotated; every unit restarts with it',
                'secret-id': secret_id,
            }
        )

    def _on_secret_remove(self, event: ops.SecretRemoveEvent) -> None:
        # Juju tells the owner (the leader, for an app secret) once no unit
        # tracks an old revision any more; the owner must remove it.
        if event.secret.label != PASSWORD_SECRET_LABEL or not self.unit.is_leader():
            return
        try:
            event.remove_revision()
        except ops.ModelError as e:
            # Juju sends secret-remove again until the revision is gone.
            logger.warning('Could not remove revision %s: %s', event.revision, type(e).__name__)

    # --------------------------------------------------------------- reconcile

    def _reconcile(
        self, *, rotate_password: bool = False, reapply_primary_service: bool = False
    ) -> str | None:
        """Bring this unit, and if it leads the application, in line with the inputs.

        Returns the password secret's id if this unit performed the leader duties.
        """
        secret_id: str | None = None
        leader_password: str | None = None
        if self.unit.is_leader():
            try:
                secret_id, leader_password = self._perform_leader_duties(
                    rotate_password=rotate_password,
                    reapply_primary_service=reapply_primary_service,
                )
            except LeadershipLostError:
                logger.warning('Lost leadership during the hook; the new leader takes over')
                self._faults.append(
                    ops.WaitingStatus('lost leadership; waiting for the new leader')
                )
                return None
            except ops.ModelError as e:
                # A hook tool refused (secret or relation data): say so, retry later.
                logger.error('Leader duties failed: %s', type(e).__name__)
                self._faults.append(
                    ops.WaitingStatus(f'leader duties failed ({type(e).__name__}); retrying')
                )
                return None
        config, config_problem = self._applicable_config()
        if config is None:
            return secret_id
        if config_problem is None and config.workload_options != self._stored.last_good_options:
            self._stored.last_good_options = config.workload_options
        self._assessment = self._workload_settings(config, leader_password)
        if isinstance(self._assessment, workload.ValkeySettings):
            self._configure_workload(self._assessment)
        return secret_id

    def _applicable_config(self) -> tuple[CharmConfig | None, ops.BlockedStatus | None]:
        """The config to apply, and why it is not the user's current one (if it is not).

        While the current config is invalid the unit stays Blocked, but keeps
        the last good options and the current password source: a leadership
        change must still make a new primary, whatever typo is in the config.
        """
        try:
            return self.load_config(CharmConfig), None
        except ValueError as e:
            problem = ops.BlockedStatus(f'invalid config: {e}')
        last_good = dict(self._stored.last_good_options)
        if not last_good:
            return None, problem
        try:
            password_config = self.load_config(PasswordConfig)
        except ValueError:
            # The password source itself is invalid: guessing one would change
            # the password. Keep the file as it is.
            return None, problem
        try:
            config = CharmConfig(**last_good, admin_password=password_config.admin_password)
        except (TypeError, ValueError):
            # Stored by an older charm revision with other options or rules.
            return None, problem
        return config, problem

    # ----------------------------------------------------------- leader duties

    def _perform_leader_duties(
        self, *, rotate_password: bool, reapply_primary_service: bool
    ) -> tuple[str, str]:
        """Everything only the leader does, in one place.

        1. Make sure the app secret with the password exists (a new leader
           reuses its predecessor's: a leadership change never changes it).
        2. Point the ``<app>-primary`` Kubernetes Service at this unit's pod.
        3. Publish who leads, where to reach it and the secret id in the peer
           application databag.

        Returns the secret id and the password in it.
        """
        published = self._published_record()
        previous = published if isinstance(published, LeaderRecord) else None
        secret, password, created = self._ensure_password_secret(previous)
        if rotate_password:
            password = workload.generate_password()
            self._write_password(secret, password)
            logger.info('Rotated the password: new revision of the %s secret', secret.label)
        if created:
            secret_id, revision = secret.id, 1
        else:
            info = secret.get_info()
            secret_id, revision = info.id, info.revision
        assert secret_id is not None  # noqa: S101 - Juju always gives an owned secret an id
        # Replicas re-read the password when this number changes, so it must
        # move with every new revision, also one whose announcement failed in
        # an earlier hook. Juju numbers revisions upwards; within the hook that
        # wrote one, secret-info may still report the previous one.
        known = previous.password_revision if previous else 0
        revision = max(revision, known + 1 if self._password_written else known)

        my_pod = pod_name(self.unit.name)
        service_selects = previous.primary_service_selects if previous else ''
        if (reapply_primary_service or service_selects != my_pod) and (
            self._point_primary_service_at(my_pod)
        ):
            service_selects = my_pod

        record = LeaderRecord(
            unit=self.unit.name,
            address=unit_address(self.unit.name, self.app.name, self.model.name),
            password_secret_id=secret_id,
            password_revision=revision,
            primary_service_selects=service_selects,
        )
        # The Kubernetes call above may have been slow: _publish checks
        # leadership again before it writes.
        self._publish(record, previous)
        return secret_id, password

    def _point_primary_service_at(self, pod: str) -> bool:
        """Make ``<app>-primary`` select ``pod``; report whether it now does."""
        # Imported here, not at the top of the file: only the leader talks to
        # Kubernetes, and only when the Service does not already select it.
        # Every other hook is spared the cost of importing lightkube.
        import primary_service  # noqa: PLC0415

        try:
            primary_service.point_at(
                app_name=self.app.name,
                namespace=self.model.name,
                leader_pod=pod,
                port=workload.PORT,
                # The StatefulSet lookup may take seconds: an old leader must
                # not overwrite what its successor just applied.
                before_write=self._ensure_still_leader,
            )
        except primary_service.PrimaryServiceError as e:
            logger.warning('Could not point the primary Service at %s: %s', pod, e.message)
            status = ops.BlockedStatus if e.needs_user else ops.WaitingStatus
            self._faults.append(status(e.message))
            return False
        service = primary_service.service_name(self.app.name)
        logger.info('Pointed the %s Service at %s', service, pod)
        return True

    def _ensure_password_secret(
        self, published: LeaderRecord | None
    ) -> tuple[ops.Secret, str, bool]:
        """Find the app's password secret, or create it if this app has none yet.

        A new leader must reuse its predecessor's secret: a leadership change
        never changes the password. The label, set when the secret was created,
        is the app's own name for it and finds it from any unit of the app. The
        id the previous leader published is the fallback (a secret created
        without the label); finding it by id *and* label adopts the label.

        Returns the secret, the password in it, and whether it was just created.
        """
        try:
            secret = self.model.get_secret(label=PASSWORD_SECRET_LABEL)
        except ops.SecretNotFoundError:
            secret = None
        if secret is None and published is not None:
            try:
                secret = self.model.get_secret(
                    id=published.password_secret_id, label=PASSWORD_SECRET_LABEL
                )
            except ops.SecretNotFoundError:
                logger.warning('The published password secret no longer exists')
        if secret is None:
            password = workload.generate_password()
            self._ensure_still_leader()
            secret = self.app.add_secret(
                {PASSWORD_KEY: password},
                label=PASSWORD_SECRET_LABEL,
                description='Valkey password (requirepass and masterauth) of every unit',
            )
            logger.info('Created the %s secret', PASSWORD_SECRET_LABEL)
            return secret, password, True
        content = secret.get_content(refresh=True)
        password = content.get(PASSWORD_KEY, '')
        if not password:
            # Our own secret lost its key (edited by hand?): repair it.
            password = workload.generate_password()
            self._write_password(secret, password)
            logger.warning('The %s secret had no password; wrote a new one', PASSWORD_SECRET_LABEL)
        return secret, password, False

    def _write_password(self, secret: ops.Secret, password: str) -> None:
        """Add a revision to the app's password secret, if this unit still leads."""
        self._ensure_still_leader()
        secret.set_content({PASSWORD_KEY: password})
        self._password_written = True

    def _publish(self, record: LeaderRecord, previous: LeaderRecord | None) -> None:
        """Write the leader record into the peer app databag, if it changed."""
        relation = self.model.get_relation(PEER_ENDPOINT)
        if relation is None:
            # Juju creates the peer relation right after install; until then
            # there is no one to tell. relation-created will run us again.
            return
        if record == previous:
            # Writing the same values would still wake every peer up.
            return
        self._ensure_still_leader()
        relation.save(record, self.app)
        logger.info('Published %s as the leader at %s', record.unit, record.address)

    def _ensure_still_leader(self) -> None:
        """Confirm leadership right before a leader-only write.

        ``is_leader()`` asks Juju again once 30 seconds have passed since the
        last confirmation (ops caches the answer for as long as Juju
        guarantees it), so this is free in a quick hook and essential in a slow one.
        """
        if not self.unit.is_leader():
            raise LeadershipLostError

    # ------------------------------------------------------------ every unit

    def _published_record(self) -> LeaderRecord | ops.StatusBase:
        """What the leader published in the peer databag, or why there is nothing usable."""
        relation = self.model.get_relation(PEER_ENDPOINT)
        if relation is None:
            return ops.WaitingStatus(f'waiting for the {PEER_ENDPOINT} relation')
        if not relation.data[self.app]:
            return ops.WaitingStatus('waiting for the leader to publish its address')
        try:
            return relation.load(LeaderRecord, self.app)
        except (TypeError, ValueError) as e:
            logger.warning('Ignoring unusable leader data in %s: %s', PEER_ENDPOINT, e)
            return ops.WaitingStatus(
                'leader data is incomplete; waiting for the leader to rewrite it'
            )

    def _workload_settings(
        self, config: CharmConfig, leader_password: str | None
    ) -> workload.ValkeySettings | ops.StatusBase:
        """Gather everything this unit's config file depends on, or say what is missing."""
        record = self._published_record()
        is_leader = self.unit.is_leader()
        if not is_leader:
            if not isinstance(record, LeaderRecord):
                return record
            if record.unit == self.unit.name:
                # This unit led until recently. Replicating from itself would be
                # absurd; keep the last good file until the new leader publishes.
                return ops.WaitingStatus('no longer the leader; waiting for the new leader')

        if config.admin_password is not None:
            password = self._read_user_password(config.admin_password)
        elif leader_password is not None:
            password = leader_password
        elif isinstance(record, LeaderRecord):
            password = self._read_app_password(record.password_secret_id)
        else:
            password = ops.WaitingStatus('waiting for the password secret')
        if isinstance(password, ops.StatusBase):
            return password

        primary_address = record.address if isinstance(record, LeaderRecord) else None
        return workload.ValkeySettings(
            password=password,
            primary_address=None if is_leader else primary_address,
            log_level=config.log_level,
            maxmemory=config.maxmemory,
            maxmemory_policy=config.maxmemory_policy,
        )

    def _read_app_password(self, secret_id: str) -> str | ops.StatusBase:
        """Read the leader's secret by the id it published; never create one here."""
        try:
            # refresh=True: read (and track) the newest revision. After
            # rotate-password the leader bumps the password revision in the peer
            # databag, which wakes us up; whether Juju would hand a peer of the
            # owner the newest revision without refresh differs between Juju
            # versions, so do not depend on it.
            content = self.model.get_secret(id=secret_id).get_content(refresh=True)
        except ops.ModelError as e:
            logger.warning('Cannot read the password secret yet: %s', type(e).__name__)
            return ops.WaitingStatus('waiting for access to the password secret')
        password = content.get(PASSWORD_KEY)
        if not password:
            return ops.WaitingStatus('waiting for the leader to repair the password secret')
        return password

    def _read_user_password(self, secret: ops.Secret) -> str | ops.StatusBase:
        """Read the user's ``admin-password`` secret, or say how to fix it."""
        try:
            content = secret.get_content(refresh=True)
        except ops.SecretNotFoundError:
            return ops.BlockedStatus(
                'admin-password secret not found: check the id with `juju secrets`'
            )
        except ops.ModelError:
            return ops.BlockedStatus(
                'admin-password secret not granted: '
                f'run `juju grant-secret <secret> {self.app.name}`'
            )
        if not content.get(PASSWORD_KEY):
            return ops.BlockedStatus(
                f"admin-password secret has no '{PASSWORD_KEY}' key: "
                f'run `juju update-secret <secret> {PASSWORD_KEY}=...`'
            )
        return content[PASSWORD_KEY]

    def _configure_workload(self, settings: workload.ValkeySettings) -> None:
        """Render, push if different, and (re)start Valkey only if something changed."""
        if not self.container.can_connect():
            # pebble-ready will run the reconcile again.
            return
        desired = workload.render_config(settings, self.charm_dir / 'templates')
        try:
            pushed = self._push_if_changed(desired)
            if self._ensure_service(restart=pushed):
                self._set_workload_version()
        except ops.pebble.Error as e:
            # Not re-raised: a traceback would only make Juju retry this one
            # event; every later event retries anyway, from the same inputs.
            logger.error('Pebble error while configuring Valkey: %s', type(e).__name__)
            self._faults.append(
                ops.WaitingStatus(f'Pebble error ({type(e).__name__}); retrying on the next event')
            )
            return
        if pushed:
            role = 'primary' if settings.is_primary else f'replica of {settings.primary_address}'
            logger.info('Wrote %s as %s', workload.CONFIG_PATH, role)

    def _push_if_changed(self, desired: str) -> bool:
        try:
            with self.container.pull(workload.CONFIG_PATH) as file:
                current = file.read()
        except ops.pebble.PathError as e:
            if e.kind != 'not-found':
                raise
            current = None
        if current == desired:
            return False
        # Pebble writes to a temporary file and renames it: the file is never
        # half-written, and a failed push leaves the last good file in place.
        self.container.push(
            workload.CONFIG_PATH,
            desired,
            make_dirs=True,
            permissions=0o600,
            user_id=workload.WORKLOAD_UID,
            group_id=workload.WORKLOAD_GID,
        )
        return True

    def _ensure_data_dir_owned(self) -> None:
        """Valkey runs as the image's non-root user and must write its RDB files.

        Checked only right before Valkey (re)starts, not on every hook: a hook
        that changes nothing makes no Pebble call for it.
        """
        owner = (workload.WORKLOAD_UID, workload.WORKLOAD_GID)
        try:
            info = self.container.list_files(workload.DATA_DIR, itself=True)[0]
        except ops.pebble.APIError as e:
            if e.code != 404:
                raise
            # No storage mounted (yet): make the directory so Valkey can start.
            self.container.make_dir(
                workload.DATA_DIR, make_parents=True, user_id=owner[0], group_id=owner[1]
            )
            return
        if (info.user_id, info.group_id) != owner:
            self.container.exec(['chown', f'{owner[0]}:{owner[1]}', workload.DATA_DIR]).wait()

    def _ensure_service(self, *, restart: bool) -> bool:
        """Start or restart the service as needed.

        Returns whether the plan was new: a new container (new image, so
        maybe a new Valkey version) or a new charm revision's layer.
        """
        layer = workload.pebble_layer()
        planned = self.container.get_plan().services.get(workload.SERVICE)
        new_plan = planned != layer.services[workload.SERVICE]
        if new_plan:
            self.container.add_layer(workload.CONTAINER, layer, combine=True)
        elif not restart and self.container.get_service(workload.SERVICE).is_running():
            return False
        self._ensure_data_dir_owned()
        if new_plan:
            # replan starts the service, or restarts it if its definition changed.
            self.container.replan()
        elif restart:
            self.container.restart(workload.SERVICE)
        else:
            self.container.start(workload.SERVICE)
        return new_plan

    def _set_workload_version(self) -> None:
        try:
            stdout, _ = self.container.exec(['valkey-server', '--version']).wait_output()
        except ops.pebble.Error as e:
            # Cosmetic: Valkey runs; `juju status` shows no version until the
            # next new plan (a new container or charm revision).
            logger.warning('Could not read the Valkey version: %s', type(e).__name__)
            return
        version = workload.parse_version(stdout)
        if version:
            self.unit.set_workload_version(version)

    # ------------------------------------------------------------------ status

    def _on_collect_unit_status(self, event: ops.CollectStatusEvent) -> None:
        for status in self._unit_statuses:
            event.add_status(status)

    def _on_collect_app_status(self, event: ops.CollectStatusEvent) -> None:
        # Runs on the leader only. The application is as healthy as its primary,
        # and additionally needs the peer relation for its replicas to follow.
        for status in self._unit_statuses:
            if isinstance(status, ops.ActiveStatus):
                event.add_status(ops.ActiveStatus(f'primary is {self.unit.name}'))
            else:
                event.add_status(status)
        if self.model.get_relation(PEER_ENDPOINT) is None:
            event.add_status(ops.WaitingStatus(f'waiting for the {PEER_ENDPOINT} relation'))

    @functools.cached_property
    def _unit_statuses(self) -> list[ops.StatusBase]:
        """Why this unit is, or is not yet, serving in its role.

        Computed once, when the collect-status events run at the end of the
        hook (app status first, on the leader, then unit status).
        """
        config, config_problem = self._applicable_config()
        if self._faults or config_problem is not None:
            # What went wrong, in this hook or in the config, says more than
            # the state the unit is in; a Blocked config outranks a fault.
            return [*self._faults, *([config_problem] if config_problem else [])]
        assert config is not None  # noqa: S101 - no config problem means a config
        assessment = self._assessment
        if assessment is None:
            # This hook ran no reconcile (an event we do not act on): assess the
            # same inputs the reconcile would have used.
            assessment = self._workload_settings(config, leader_password=None)
        if isinstance(assessment, ops.StatusBase):
            return [assessment]
        if not self.container.can_connect():
            return [ops.WaitingStatus('waiting for Pebble in the valkey container')]
        try:
            running = self.container.get_service(workload.SERVICE).is_running()
        except (ops.ModelError, ops.pebble.Error):
            running = False
        if not running:
            return [ops.MaintenanceStatus('starting valkey')]
        if assessment.is_primary:
            return [ops.ActiveStatus('primary')]
        record = self._published_record()
        leader = record.unit if isinstance(record, LeaderRecord) else 'the leader'
        return [ops.ActiveStatus(f'replica of {leader}')]


if __name__ == '__main__':  # pragma: nocover
    ops.main(ValkeyLeaderCharm)
