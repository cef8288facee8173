#!/usr/bin/env python3
# Copyright 2026 The valkey-leader-k8s authors
# See LICENSE file for licensing details.

"""Valkey on Kubernetes, where the Juju leader is the primary.

A reference for the ops how-to "Manage leadership changes"
(https://documentation.ubuntu.com/ops/latest/howto/manage-leadership-changes/):

* ``leader-elected`` is observed; the deprecated ``leader-settings-changed`` is not.
* The leader tells the other units who leads by writing the peer relation's
  application databag; they react to ``valkey-peers-relation-changed``.
* Only the leader writes the application secret, the peer databag and the
  Service, and takes the primary role; it checks ``is_leader()`` again right
  before each: Juju guarantees leadership for only 30 s after the last check.
* Nothing leader-only is deferred: a deferred event re-runs later, when this
  unit may no longer lead. Every event runs one idempotent reconcile instead,
  and the next event retries whatever could not be done.
"""

from __future__ import annotations

import logging
from typing import Final

import ops

import leadership
import password_secret
import tls
from charm_config import PasswordConfig, applicable
from leadership import PEER_ENDPOINT, LeaderRecord, LeadershipLostError, Role, most_severe
from password_secret import AppPassword
from workload import container as valkey_container
from workload.config import AclUser, TlsMaterial

logger = logging.getLogger(__name__)

# clients.ENDPOINT, named here so that hooks without clients never import clients.py.
CLIENT_ENDPOINT: Final = 'valkey-client'


class ValkeyLeaderCharm(ops.CharmBase):
    """Run Valkey with the Juju leader as primary and every other unit as its replica."""

    # What this unit remembers between hooks (never a password). It lives in
    # the charm container, so a recreated pod starts without it.
    _stored = ops.StoredState()

    def __init__(self, framework: ops.Framework) -> None:
        super().__init__(framework)
        self._stored.set_default(
            last_good_options={},  # a leadership change must reach the file while Blocked
            file_role='',  # what the unit's config file makes it: what its status says
            problem=[],  # why the last reconcile could not finish: [status name, message]
            primary_service_applied=False,  # since this unit was last elected
            valkey_version='',  # what clients are told
            clients_problem=[],  # the first client relation the leader could not serve
        )
        self._address = leadership.unit_address(self.unit.name, self.app.name, self.model.name)
        framework.observe(self.on.leader_elected, self._on_leader_elected)
        framework.observe(self.on.config_changed, self._on_config_changed)
        # Not leader-settings-changed (deprecated): the others learn of a new leader,
        # and of a new password, from the leader's writes to the peer application databag.
        framework.observe(self.on[PEER_ENDPOINT].relation_changed, self._on_peers_changed)
        framework.observe(self.on.rotate_password_action, self._on_rotate_password)
        framework.observe(self.on.upgrade_charm, self._on_upgrade_charm)
        framework.observe(self.on.secret_remove, self._on_secret_remove)
        framework.observe(self.on[tls.ENDPOINT].relation_broken, self._on_certificates_broken)
        # Every other event that can bring new inputs runs the same reconcile.
        for event in (
            self.on.install,
            self.on[PEER_ENDPOINT].relation_created,  # the leader can publish from now on
            self.on[PEER_ENDPOINT].relation_departed,  # may reach a new leader before its election
            self.on.valkey_pebble_ready,
            self.on.secret_changed,  # a new revision of a secret this unit reads
            self.on[CLIENT_ENDPOINT].relation_changed,  # a client asked for its user
            self.on[CLIENT_ENDPOINT].relation_broken,  # its user goes, on every unit
            self.on[tls.ENDPOINT].relation_created,  # each unit asks for its certificate
            self.on[tls.ENDPOINT].relation_changed,  # the provider signed it (or renewed it)
            self.on.secret_expired,  # this unit's certificate is due for renewal
            self.on.update_status,  # retries whatever the last event could not finish
        ):
            framework.observe(event, self._on_input_changed)
        # Status is only ever set here, on every hook, observed or not.
        framework.observe(self.on.collect_unit_status, self._on_collect_unit_status)
        framework.observe(self.on.collect_app_status, self._on_collect_app_status)

    def _on_leader_elected(self, _: ops.LeaderElectedEvent) -> None:
        # The Service and the servers live outside Juju: a previous leader may have
        # re-pointed one, or taken the primary role, then lost its lease before
        # saying so. Check them, whatever was recorded.
        self._reconcile(recheck_outside_juju=True)

    def _on_config_changed(self, _: ops.ConfigChangedEvent) -> None:
        self._reconcile()

    def _on_peers_changed(self, _: ops.RelationChangedEvent) -> None:
        # The leader published a new record: follow the new leader, or the new password.
        self._reconcile()

    def _on_upgrade_charm(self, _: ops.UpgradeCharmEvent) -> None:
        # As on leader-elected (new code may define the Service anew; `juju refresh` repairs it).
        self._reconcile(recheck_outside_juju=True)

    def _on_input_changed(self, _: ops.EventBase) -> None:
        self._reconcile()

    def _on_certificates_broken(self, _: ops.RelationBrokenEvent) -> None:
        # Every unit, leader or not: each had its own key and certificate.
        tls.forget_private_key(self)
        self._reconcile()  # no relation any more: plaintext, and the files go

    def _on_rotate_password(self, event: ops.ActionEvent) -> None:
        try:
            if self.load_config(PasswordConfig).admin_password is not None:
                event.fail(
                    'admin-password is set: rotate your own secret '
                    '(`juju update-secret <your secret> password=...`), or unset admin-password'
                )
                return
            # Only the leader writes the app secret; rotate() checks again right before.
            self._ensure_still_leader()
            rotated = password_secret.rotate(
                self.model, self._published_record(), before_write=self._ensure_still_leader
            )
        except ValueError as e:
            event.fail(f'Fix the config first: {e}')
            return
        except LeadershipLostError:
            event.fail(leadership.run_on_the_leader_instead(self._leader_to_follow(), self.app))
            return
        except ops.ModelError as e:
            event.fail(f'The password was not rotated: Juju refused ({type(e).__name__})')
            return
        problem = self._reconcile(app_password=rotated)
        published = self._published_record()
        if published is None or published.password_revision < rotated.revision:
            why = problem.message if problem else f'no {PEER_ENDPOINT} relation yet'
            event.fail(
                f'The password was rotated, but the other units were not told yet ({why}); '
                'the next event on the leader tells them'
            )
            return
        # Never the password itself: action results are stored and shown by Juju.
        result = 'password rotated; every unit applies it live'
        if problem is not None:
            result += f'; still pending on this unit: {problem.message}'
        event.set_results({'result': result, 'secret-id': rotated.secret_id})

    def _on_secret_remove(self, event: ops.SecretRemoveEvent) -> None:
        # Sent to the owner once no unit tracks an old revision. This unit owns
        # its certificate secrets (any unit); the application owns the others
        # (only the leader may remove those).
        if tls.owns_secret(event.secret.label):
            self._remove_revision(event)
            return
        if not self.unit.is_leader():
            return
        import clients  # noqa: PLC0415 - only here: a rare event

        label = event.secret.label
        if label != password_secret.LABEL and not clients.owns_secret(label):
            return
        self._remove_revision(event)

    def _remove_revision(self, event: ops.SecretRemoveEvent) -> None:
        try:
            event.remove_revision()
        except ops.ModelError as e:
            # Juju sends secret-remove again until the revision is gone.
            logger.warning('Could not remove revision %s: %s', event.revision, type(e).__name__)

    # -- One reconcile path for every event.

    def _reconcile(
        self, *, recheck_outside_juju: bool = False, app_password: AppPassword | None = None
    ) -> ops.StatusBase | None:
        """Bring this unit (and the app, if it leads) in line; say what stands in the way."""
        problem = self._converge(recheck_outside_juju, app_password)
        self._stored.problem = [problem.name, problem.message] if problem else []
        return problem

    def _converge(self, recheck: bool, app_password: AppPassword | None) -> ops.StatusBase | None:
        # Every unit asks for, and serves, its own certificate: not the leader's job.
        container = self.unit.get_container(valkey_container.CONTAINER)
        encryption = tls.reconcile(self, container, self._address)
        return most_severe(encryption.problem, self._run(recheck, app_password, encryption))

    def _run(
        self, recheck: bool, app_password: AppPassword | None, encryption: tls.Encryption
    ) -> ops.StatusBase | None:
        if self.unit.is_leader():
            try:
                return self._perform_leader_duties(recheck, app_password, encryption.material)
            except LeadershipLostError:
                # Juju moved the lease during this hook: from here on, this unit follows.
                logger.warning('Lost leadership during the hook; following the published leader')
            except ops.ModelError as e:
                logger.error('Leader duties failed: %s', type(e).__name__)
                return ops.WaitingStatus(f'leader duties failed ({type(e).__name__}); retrying')
        return self._follow_the_leader(recheck, encryption.material)

    def _follow_the_leader(
        self, recheck: bool, tls_material: TlsMaterial | None
    ) -> ops.StatusBase | None:
        leader = self._leader_to_follow()
        if isinstance(leader, ops.StatusBase):
            return leader
        # A non-leader reads the secret by the id the leader published; it never creates one.
        password = password_secret.read_published(self.model, leader.password_secret_id)
        role = Role.replica_of(leader)
        users = self._client_users()
        return self._configure_workload(role, password, users, recheck, tls_material)

    def _configure_workload(
        self,
        role: Role,
        password: str | ops.StatusBase,
        users: tuple[AclUser, ...],
        recheck: bool,
        tls_material: TlsMaterial | None,
    ) -> ops.StatusBase | None:
        """Render this unit's file for ``role``; make Valkey run it; or say why not."""
        config, config_problem = applicable(self.load_config, self._stored.last_good_options)
        if config is None:
            return None  # collect-status reports the config's problem
        if config_problem is None:
            self._stored.last_good_options = config.workload_options
        if config.admin_password is not None:
            password = password_secret.read_user_secret(config.admin_password, self.app.name)
        if isinstance(password, ops.StatusBase):
            return password
        settings = config.valkey_settings(
            password=password,
            primary_address=role.replicaof,
            users=users,
            announce_host=self._address,  # a primary lists this unit by it: for a handover
            tls=tls_material,
        )
        container = self.unit.get_container(valkey_container.CONTAINER)
        templates = self.charm_dir / 'templates'
        applied = valkey_container.configure(container, settings, templates, recheck=recheck)
        if isinstance(applied, ops.StatusBase):
            return applied
        self._stored.file_role = str(role)
        if applied.version:
            self.unit.set_workload_version(applied.version)
            self._stored.valkey_version = applied.version
        return None

    # -- The leader's duties: everything a non-leader must never do, in one place.

    def _perform_leader_duties(
        self, recheck: bool, app_password: AppPassword | None, tls_material: TlsMaterial | None
    ) -> ops.StatusBase | None:
        """Secret, clients, this unit's server, Service, peer record; returns a problem.

        1. The app secret with the password: a new leader reuses its predecessor's.
        2. Every client relation's user, answer and secret; the users, for the others.
        3. This unit's server becomes the primary: the old one hands over if it answers.
        4. The ``<app>-primary`` Kubernetes Service selects this unit's pod.
        5. The leader record in the peer application databag: how the others learn.
        """
        previous = self._published_record()
        if app_password is None:
            app_password = password_secret.ensure(
                self.model, previous, before_write=self._ensure_still_leader
            )
        peers = self.model.get_relation(PEER_ENDPOINT)
        users = self._serve_clients(peers, tls_material.ca if tls_material else None)
        # Taking the primary role changes the workload of another unit: check right before.
        self._ensure_still_leader()
        password = app_password.password
        problem = self._configure_workload(Role.PRIMARY, password, users, recheck, tls_material)
        if recheck or not self._stored.primary_service_applied:
            problem = most_severe(self._point_primary_service_here(), problem)
        record = LeaderRecord(
            unit=self.unit.name,
            address=self._address,
            password_secret_id=app_password.secret_id,
            password_revision=app_password.revision,
        )
        # No peer relation before Juju creates it (right after install):
        # relation-created runs us again. An unchanged record is not rewritten:
        # that would wake every peer up for nothing.
        if peers is not None and record != previous:
            # The handover and the Kubernetes call above may have been slow: check again.
            self._ensure_still_leader()
            peers.save(record, self.app)
            logger.info('Published %s as the leader at %s', record.unit, record.address)
        return problem

    def _ensure_still_leader(self) -> None:
        """Confirm leadership right before a leader-only write.

        ``is_leader()`` asks Juju again once 30 seconds have passed since the
        last confirmation (ops caches the answer for as long as Juju
        guarantees it), so this is free in a quick hook and essential in a slow one.
        """
        if not self.unit.is_leader():
            raise LeadershipLostError

    def _point_primary_service_here(self) -> ops.StatusBase | None:
        # Imported here: only the leader's hooks that talk to Kubernetes pay for lightkube.
        import primary_service  # noqa: PLC0415

        # The StatefulSet lookup may be slow: repoint() checks leadership before the write.
        problem = primary_service.repoint(
            self.app, self.model.name, self.unit.name, before_write=self._ensure_still_leader
        )
        self._stored.primary_service_applied = problem is None
        return problem

    def _serve_clients(
        self, peers: ops.Relation | None, tls_ca: str | None
    ) -> tuple[AclUser, ...]:
        """Answer every client relation (leader only); the users every unit must render.

        ``tls_ca``: the CA this unit (the primary) serves TLS with, or ``None``: plaintext.
        """
        published = peers is not None and peers.data[self.app].get(leadership.CLIENT_USERS_KEY)
        if not self.model.relations[CLIENT_ENDPOINT] and not published:
            self._stored.clients_problem = []
            return ()  # no client to serve or to clean up after: no import of the machinery
        import clients  # noqa: PLC0415

        served = clients.serve(
            self,
            peers,
            self._stored.valkey_version,
            tls_ca=tls_ca,
            before_write=self._ensure_still_leader,
        )
        self._stored.clients_problem = served.remembered_problem  # for collect-status
        return served.users

    def _client_users(self) -> tuple[AclUser, ...]:
        """The users the leader published for this unit's client relations.

        Every unit renders them: Valkey does not replicate users.
        """
        if not self.model.relations[CLIENT_ENDPOINT]:
            return ()
        import clients  # noqa: PLC0415

        return clients.users_for_this_unit(self.model)

    def _leader_to_follow(self) -> LeaderRecord | ops.StatusBase:
        record = leadership.read_record(self.model.get_relation(PEER_ENDPOINT), self.app)
        return leadership.leader_to_follow(record, self.unit.name)

    def _published_record(self) -> LeaderRecord | None:
        record = leadership.read_record(self.model.get_relation(PEER_ENDPOINT), self.app)
        return record if isinstance(record, LeaderRecord) else None

    # -- Status: what the unit IS, from what this and earlier hooks found, with no slow I/O.

    def _on_collect_unit_status(self, event: ops.CollectStatusEvent) -> None:
        for status in self._statuses():
            event.add_status(status)

    def _on_collect_app_status(self, event: ops.CollectStatusEvent) -> None:
        # Runs on the leader only: the application is as healthy as its primary.
        primary = ops.ActiveStatus(f'primary is {self.unit.name}')
        for status in self._statuses():
            event.add_status(primary if status == ops.ActiveStatus('primary') else status)
        if self.model.get_relation(PEER_ENDPOINT) is None:
            event.add_status(ops.WaitingStatus(f'waiting for the {PEER_ENDPOINT} relation'))
        if problem := self._stored.clients_problem:  # a client relation the leader cannot serve
            event.add_status(ops.StatusBase.from_name(*problem))

    def _statuses(self) -> list[ops.StatusBase]:
        problem = self._stored.problem
        return leadership.statuses(
            config_problem=applicable(self.load_config, self._stored.last_good_options)[1],
            last_problem=ops.StatusBase.from_name(*problem) if problem else None,
            leader=None if self.unit.is_leader() else self._leader_to_follow(),
            file_role=self._stored.file_role,
        )


if __name__ == '__main__':  # pragma: nocover
    ops.main(ValkeyLeaderCharm)
