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
  Service, and chooses the primary; it checks ``is_leader()`` again right
  before each: Juju guarantees leadership for only 30 s after the last check.
* Leadership is not data: the leader takes the primary role only from a live
  primary that handed over to it, or, with none alive, when its server has
  every write. Until then the server with the writes acts for it, and the
  leader publishes that.
* Leadership is not liveness: Juju's lease outlives the leader's server. When
  that server is about to go (``stop``, the unit leaving) the leader hands the
  primary role to a replica, live, and publishes it as acting for it; a
  crashed server is never brought back as a primary by Pebble, only by the
  leader's choice; the leader takes the role back once its server caught up.
* Nothing leader-only is deferred: a deferred event re-runs later, when this
  unit may no longer lead. Every event runs one idempotent reconcile instead,
  and the next event retries whatever could not be done.
"""

from __future__ import annotations

import dataclasses
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
from workload import exporter
from workload.config import AclUser, TlsMaterial

logger = logging.getLogger(__name__)

# clients.ENDPOINT, named here so that hooks without clients never import clients.py.
CLIENT_ENDPOINT: Final = 'valkey-client'
# The COS endpoints, named here for the same reason (observability/scrape, dashboard, logs).
METRICS_ENDPOINT: Final = 'metrics-endpoint'
DASHBOARD_ENDPOINT: Final = 'grafana-dashboard'
LOGGING_ENDPOINT: Final = 'logging'


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
            service_selects='',  # the unit whose pod this unit last pointed <app>-primary at
            valkey_version='',  # what clients are told
            clients_problem=[],  # the first client relation the leader could not serve
            leaving=False,  # this unit leaves the application: it never takes the role again
            exporter_started=False,  # its container's Pebble answered: it can be configured
        )
        self._address = leadership.unit_address(self.unit.name, self.app.name, self.model.name)
        self._server_started = False  # this hook started this unit's server
        framework.observe(self.on.leader_elected, self._on_leader_elected)
        framework.observe(self.on.config_changed, self._on_config_changed)
        # Not leader-settings-changed (deprecated): the others learn of a new leader,
        # and of a new password, from the leader's writes to the peer application databag.
        framework.observe(self.on[PEER_ENDPOINT].relation_changed, self._on_peers_changed)
        framework.observe(self.on.rotate_password_action, self._on_rotate_password)
        framework.observe(self.on.upgrade_charm, self._on_upgrade_charm)
        framework.observe(self.on.secret_remove, self._on_secret_remove)
        framework.observe(self.on.stop, self._on_stop)
        framework.observe(self.on[PEER_ENDPOINT].relation_departed, self._on_peer_departed)
        framework.observe(self.on['valkey'].pebble_check_failed, self._on_valkey_check_failed)
        framework.observe(self.on[tls.ENDPOINT].relation_broken, self._on_certificates_broken)
        framework.observe(
            self.on.redis_exporter_pebble_ready, self._on_redis_exporter_pebble_ready
        )
        # COS: what Prometheus scrapes, the dashboard, where the logs go. Leader-only
        # writes again, and a new leader finds them in place (see _publish_to_cos).
        for event in (
            self.on.leader_elected,  # a new leader checks what its predecessor published
            self.on.upgrade_charm,  # new rules or a new dashboard
            self.on.valkey_pebble_ready,  # its log targets
            self.on[METRICS_ENDPOINT].relation_joined,
            self.on[DASHBOARD_ENDPOINT].relation_joined,
            self.on[LOGGING_ENDPOINT].relation_changed,  # a Loki unit published its URL
            self.on[LOGGING_ENDPOINT].relation_departed,
            self.on[LOGGING_ENDPOINT].relation_broken,
        ):
            framework.observe(event, self._on_cos_event)
        # Every other event that can bring new inputs runs the same reconcile.
        for event in (
            self.on.install,
            self.on[PEER_ENDPOINT].relation_created,  # the leader can publish from now on
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
        # The leader published a new record: follow the new primary, or the new password.
        # The server it names may have changed role since: check it, not just the record.
        self._reconcile(recheck_outside_juju=True)

    def _on_upgrade_charm(self, _: ops.UpgradeCharmEvent) -> None:
        # As on leader-elected (new code may define the Service anew; `juju refresh` repairs it).
        self._reconcile(recheck_outside_juju=True)

    def _on_input_changed(self, _: ops.EventBase) -> None:
        self._reconcile()

    def _on_stop(self, _: ops.StopEvent) -> None:
        # Kubernetes sent the pod SIGTERM (deleted, evicted, drained, `juju refresh`):
        # this hook runs within its 30 s grace period, then the server goes. The
        # lease (60 s, renewed every 30 s) usually outlives the pod, so nobody
        # else would take over: the leader hands the role over itself, now.
        self._step_down('pod is stopping')

    def _on_peer_departed(self, event: ops.RelationDepartedEvent) -> None:
        if event.departing_unit == self.unit:
            # Scale-down removes this unit (the highest-numbered): it leaves for good,
            # and keeps its lease until it runs out. Hand over, then stay a replica.
            self._stored.leaving = True
            self._step_down('unit is leaving')
            return
        # Another unit left: it may reach a new leader before its election.
        self._reconcile()

    def _on_valkey_check_failed(self, _: ops.PebbleCheckFailedEvent) -> None:
        # Valkey stopped answering (it crashed, or was OOM-killed): Pebble leaves it
        # down. The leader chooses another primary if it was the one; the server
        # comes back as a replica, of the server that has the writes.
        self._reconcile(recheck_outside_juju=True)

    def _on_certificates_broken(self, _: ops.RelationBrokenEvent) -> None:
        # Every unit, leader or not: each had its own key and certificate.
        tls.forget_private_key(self)
        self._reconcile()  # no relation any more: plaintext, and the files go

    def _on_redis_exporter_pebble_ready(self, _: ops.PebbleReadyEvent) -> None:
        # From now on every reconcile gives the exporter its password file.
        self._stored.exporter_started = True
        self._reconcile()
        self._publish_to_cos()

    def _on_cos_event(self, event: ops.EventBase) -> None:
        # A departed or broken Loki relation is gone from the model already: its
        # targets must still be switched off.
        logging_event = isinstance(event, ops.RelationEvent) and (
            event.relation.name == LOGGING_ENDPOINT
        )
        self._publish_to_cos(forward_logs=logging_event)

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
        if self._stored.leaving:
            return None  # its server follows the acting primary until the pod goes
        # Every unit asks for, and serves, its own certificate: not the leader's job.
        container = self.unit.get_container(valkey_container.CONTAINER)
        encryption = tls.reconcile(self, container, self._address)
        problem = self._lead_or_follow(recheck, app_password, encryption)
        return most_severe(encryption.problem, problem)

    def _lead_or_follow(
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
        # The published primary: the leader's server, or the one acting for it (maybe this one).
        role = Role.in_record(leader, self.unit.name)
        if role == Role.PRIMARY and not self._server_running():
            # This unit's server acted for the leader, and went down: it may have
            # lost writes its replicas have. Only the leader may make it primary again.
            role = Role('replica', leader.unit, leader.address, acting_because='restarted')
        # What the last hook could not finish (a primary not ready yet) is checked again.
        recheck = recheck or bool(self._stored.problem)
        users = self._client_users()
        return self._configure_workload(role, password, users, recheck, tls_material)

    def _configure_workload(
        self,
        role: Role,
        password: str | ops.StatusBase,
        users: tuple[AclUser, ...],
        recheck: bool,
        tls_material: TlsMaterial | None,
        *,
        may_promote: bool = False,
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
            users=(*users, exporter.user(password)),
            announce_host=self._address,  # a primary lists this unit by it: for a handover
            tls=tls_material,
            min_replicas_to_write=self._replicas_to_wait_for(),
        )
        container = self.unit.get_container(valkey_container.CONTAINER)
        templates = self.charm_dir / 'templates'
        applied = valkey_container.configure(
            container, settings, templates, recheck=recheck, may_promote=may_promote
        )
        if isinstance(applied, ops.StatusBase):
            return applied
        self._server_started = applied.started
        if self._stored.exporter_started:
            metrics = self.unit.get_container(exporter.CONTAINER)
            if problem := exporter.configure(metrics, password):
                return problem
        self._stored.file_role = str(role)
        if applied.version:
            self.unit.set_workload_version(applied.version)
            self._stored.valkey_version = applied.version
        if applied.waiting:
            return ops.WaitingStatus(f'{role}, not yet: {applied.waiting}')
        return None

    # -- The leader's duties: everything a non-leader must never do, in one place.

    def _perform_leader_duties(
        self, recheck: bool, app_password: AppPassword | None, tls_material: TlsMaterial | None
    ) -> ops.StatusBase | None:
        """Secret, clients, this unit's server, Service, peer record; returns a problem.

        1. The app secret with the password: a new leader reuses its predecessor's.
        2. Every client relation's user, answer and secret; the users, for the others.
        3. The leader chooses the primary from what every server says now, and never
           one with less data: its own server once the live primary handed over;
           until then, the server that has the writes acts for it.
        4. The ``<app>-primary`` Kubernetes Service selects that server's pod.
        5. The leader record in the peer application databag: how the others learn.
        """
        previous = self._published_record()
        if app_password is None:
            app_password = password_secret.ensure(
                self.model, previous, before_write=self._ensure_still_leader
            )
        peers = self.model.get_relation(PEER_ENDPOINT)
        users = self._serve_clients(peers, tls_material.ca if tls_material else None)
        password = app_password.password
        # Choosing the primary changes the workload of other units: check right before.
        self._ensure_still_leader()
        role, roles_changed = self._choose_primary(peers, password, previous, tls_material)
        # With peers, every leader hook compares its server with its file, not only
        # leader-elected: another unit's hook may have changed the server's role.
        check_server = recheck or (peers is not None and bool(peers.units))
        problem = self._configure_workload(
            role, password, users, check_server, tls_material, may_promote=role == Role.PRIMARY
        )
        if role != Role.PRIMARY and self._caught_up(password, tls_material):
            # This hook restarted the leader's server as a replica of the acting
            # primary, and it caught up: take the role back now, not on the next event.
            self._ensure_still_leader()
            role, retaken = self._choose_primary(peers, password, previous, tls_material)
            roles_changed = roles_changed or retaken
            problem = self._configure_workload(
                role, password, users, True, tls_material, may_promote=role == Role.PRIMARY
            )
        selects = role.primary_unit or self.unit.name
        # A role this hook had to change was changed by someone else first (a leader
        # that lost its lease): that one may have re-pointed the Service too.
        if recheck or roles_changed or self._stored.service_selects != selects:
            problem = most_severe(self._point_primary_service_at(selects), problem)
        record = LeaderRecord(
            unit=self.unit.name,
            address=self._address,
            password_secret_id=app_password.secret_id,
            password_revision=app_password.revision,
            primary_unit=role.primary_unit,
            primary_address=role.primary_address,
            primary_reason=role.acting_because,
        )
        # No peer relation before Juju creates it (right after install):
        # relation-created runs us again. An unchanged record is not rewritten:
        # that would wake every peer up for nothing.
        if peers is not None and record != previous:
            # The handover and the Kubernetes call above may have been slow: check again.
            self._ensure_still_leader()
            peers.save(record, self.app)
            logger.info('Published %s as the leader, %s as the primary', record.unit, selects)
        return problem

    def _choose_primary(
        self,
        peers: ops.Relation | None,
        password: str,
        previous: LeaderRecord | None,
        tls_material: TlsMaterial | None,
    ) -> tuple[Role, bool]:
        """This unit's server's role after this hook, and whether any server's role changed."""
        if peers is None or not peers.units:
            return Role.PRIMARY, False  # alone: no other server's data to wait for
        # Imported here: only the leader of several units reads the servers.
        from workload import client, primary_choice  # noqa: PLC0415

        names = [self.unit.name, *(unit.name for unit in peers.units)]
        units = {n: leadership.unit_address(n, self.app.name, self.model.name) for n in names}
        container = self.unit.get_container(valkey_container.CONTAINER)
        # Only the app password: the others take a new one after this unit (from
        # its record), so a server that refuses it is read as not answering.
        chosen = primary_choice.settle(
            leader=self.unit.name,
            units=units,
            published=previous.primary if previous is not None else None,
            passwords=[password],
            resolve=client.same_host,
            local=client.LOCAL,
            before_change=self._ensure_still_leader,
            # With TLS on, every server's port speaks TLS only.
            transports=valkey_container.transports(container, tls_material),
        )
        for change in chosen.changed:
            logger.info('Primary: %s', change)
        if chosen.unit == self.unit.name:
            return Role.PRIMARY, bool(chosen.changed)
        why = (chosen.reason or 'its server is not ready')[:200]
        acting = Role('replica', chosen.unit, units[chosen.unit], acting_because=why)
        return acting, bool(chosen.changed)

    def _step_down(self, why: str) -> None:
        """Hand the primary role from this unit's server, about to go, to the best replica.

        Leader only; every other unit's server is a replica, or acts for the
        leader, which hands over from it on its own next event. Bounded: one
        survey, one handover pause, one Kubernetes call: well inside the 30 s
        Kubernetes grants a pod between SIGTERM and SIGKILL.
        """
        previous = self._published_record()
        peers = self.model.get_relation(PEER_ENDPOINT)
        if not self.unit.is_leader() or previous is None or peers is None or not peers.units:
            return
        if previous.primary != self.unit.name:
            return  # another server acts already: nothing of this one's to hand over
        from workload import client, primary_choice  # noqa: PLC0415

        names = [self.unit.name, *(unit.name for unit in peers.units)]
        units = {n: leadership.unit_address(n, self.app.name, self.model.name) for n in names}
        container = self.unit.get_container(valkey_container.CONTAINER)
        try:
            password = password_secret.read_published(self.model, previous.password_secret_id)
            if isinstance(password, ops.StatusBase):
                return
            # What every hook does first: this unit's certificate, to reach the others by TLS.
            tls_material = tls.reconcile(self, container, self._address).material
            chosen = primary_choice.step_down(
                leader=self.unit.name,
                units=units,
                passwords=[password],
                resolve=client.same_host,
                local=client.LOCAL,
                before_change=self._ensure_still_leader,
                transports=valkey_container.transports(container, tls_material),
            )
            if chosen.unit == self.unit.name:
                logger.warning('The primary role stays here: %s', chosen.reason)
                return
            logger.info('Primary: %s (%s)', chosen.changed[0], why)
            acting = Role('replica', chosen.unit, units[chosen.unit], f"{self.unit.name}'s {why}")
            # Clients first: <app>-primary selects the new primary's pod.
            self._point_primary_service_at(chosen.unit)
            self._ensure_still_leader()  # the handover and the Kubernetes call took time
            peers.save(
                dataclasses.replace(
                    previous,
                    primary_unit=acting.primary_unit,
                    primary_address=acting.primary_address,
                    primary_reason=acting.acting_because,
                ),
                self.app,
            )
            users = self._client_users()
            self._configure_workload(acting, password, users, True, tls_material)
        except LeadershipLostError:
            # The lease ran out meanwhile: the new leader finds the primary by asking the servers.
            logger.warning('Lost leadership while handing the primary role over')
        except ops.ModelError as e:
            logger.error('Handing the primary role over failed: %s', type(e).__name__)

    def _caught_up(self, password: str, tls_material: TlsMaterial | None) -> bool:
        """Whether this hook started this unit's server, and it now streams from its primary."""
        if not self._server_started:
            return False
        from workload import client, primary_choice  # noqa: PLC0415

        container = self.unit.get_container(valkey_container.CONTAINER)
        transports = valkey_container.transports(container, tls_material)
        return primary_choice.wait_for_sync(client.LOCAL, [password], transports=transports)

    def _server_running(self) -> bool:
        return valkey_container.is_running(self.unit.get_container(valkey_container.CONTAINER))

    # -- COS: each integration's module is imported only where its relation exists.

    def _publish_to_cos(self, *, forward_logs: bool = False) -> None:
        """Scrape jobs, rules and dashboard (the leader); this unit's address and logs."""
        try:
            if scrape_relations := self.model.relations[METRICS_ENDPOINT]:
                from observability import Topology, scrape  # noqa: PLC0415

                leader_check = self._ensure_still_leader if self.unit.is_leader() else None
                scrape.publish(
                    scrape_relations, self.app, self.unit, Topology.of(self), self._address,
                    before_write=leader_check,
                )  # fmt: skip
            dashboard_relations = self.model.relations[DASHBOARD_ENDPOINT]
            if dashboard_relations and self.unit.is_leader():
                from observability import dashboard  # noqa: PLC0415

                dashboard.publish(
                    dashboard_relations, self.app, self.meta.name,
                    before_write=self._ensure_still_leader,
                )  # fmt: skip
            if forward_logs or self.model.relations[LOGGING_ENDPOINT]:
                self._forward_logs()
        except LeadershipLostError:
            logger.warning('Lost leadership while publishing to COS; the new leader does it')
        except ops.ModelError as e:
            logger.error('Could not publish to COS (%s); the next such event retries', e)

    def _forward_logs(self) -> None:
        from observability import Topology, logs  # noqa: PLC0415

        urls = logs.loki_urls(self.model.relations[LOGGING_ENDPOINT])
        names = [valkey_container.CONTAINER]
        if self._stored.exporter_started:
            names.append(exporter.CONTAINER)
        for name in names:
            container = self.unit.get_container(name)
            if not container.can_connect():
                continue  # its pebble-ready comes later, and runs this again
            try:
                if logs.forward(container, urls, Topology.of(self)):
                    logger.info('Log forwarding in %s: %d Loki unit(s)', name, len(urls))
            except ops.pebble.Error as e:
                logger.error('Could not set log forwarding in %s: %s', name, type(e).__name__)

    def _ensure_still_leader(self) -> None:
        """Confirm leadership right before a leader-only write.

        ``is_leader()`` asks Juju again once 30 seconds have passed since the
        last confirmation (ops caches the answer for as long as Juju
        guarantees it), so this is free in a quick hook and essential in a slow one.
        """
        if not self.unit.is_leader():
            raise LeadershipLostError

    def _point_primary_service_at(self, unit_name: str) -> ops.StatusBase | None:
        # Imported here: only the leader's hooks that talk to Kubernetes pay for lightkube.
        import primary_service  # noqa: PLC0415

        # The StatefulSet lookup may be slow: repoint() checks leadership before the write.
        problem = primary_service.repoint(
            self.app, self.model.name, unit_name, before_write=self._ensure_still_leader
        )
        self._stored.service_selects = unit_name if problem is None else ''
        return problem

    def _serve_clients(
        self, peers: ops.Relation | None, tls_ca: str | None
    ) -> tuple[AclUser, ...]:
        """Answer every client relation (leader only); the users every unit must render.

        ``tls_ca``: the CA this unit's certificate came with (every unit's comes from the
        same provider), or ``None``: plaintext.
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

    def _replicas_to_wait_for(self) -> int:
        """``min-replicas-to-write``: 1 while the application has other units, else 0.

        The same on every unit, so that a replica promoted live already has it.
        A unit whose pod is deleted stays in the peer relation (Juju keeps the
        unit): the primary waits for it. Only a scale-down to one unit
        (``relation-departed``) makes it 0.
        """
        peers = self.model.get_relation(PEER_ENDPOINT)
        return 1 if peers is not None and peers.units else 0

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
        leading = self.unit.is_leader()
        return leadership.statuses(
            config_problem=applicable(self.load_config, self._stored.last_good_options)[1],
            last_problem=ops.StatusBase.from_name(*problem) if problem else None,
            record=self._published_record() if leading else self._leader_to_follow(),
            unit_name=self.unit.name,
            leading=leading,
            file_role=self._stored.file_role,
        )


if __name__ == '__main__':  # pragma: nocover
    ops.main(ValkeyLeaderCharm)
