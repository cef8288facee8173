# Copyright 2026 The valkey-leader-k8s authors
# See LICENSE file for licensing details.

"""The ``<app>-primary`` Kubernetes Service: one stable address for writes.

It selects the leader's pod only, so clients that connect to
``<app>-primary.<model>.svc.cluster.local:6379`` always reach the primary.
Only the leader manages it (server-side apply, field manager = the app name).

This module imports lightkube at the top, and the charm imports this module
only on the leader's path that talks to Kubernetes: followers, and hooks with
nothing to change, never pay for importing lightkube. Nothing here knows about
Juju events.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Final

import httpx2
import ops
from lightkube import ApiError, Client, ConfigError
from lightkube.models.core_v1 import ServicePort, ServiceSpec
from lightkube.models.meta_v1 import ObjectMeta, OwnerReference
from lightkube.resources.apps_v1 import StatefulSet
from lightkube.resources.core_v1 import Service

logger = logging.getLogger(__name__)

PORT: Final = 6379
POD_NAME_LABEL: Final = 'statefulset.kubernetes.io/pod-name'
APP_LABEL: Final = 'app.kubernetes.io/name'
# A hook must not hang on an unreachable API server.
_TIMEOUT_SECONDS: Final = 20.0


class PrimaryServiceError(Exception):
    """Kubernetes refused or failed; ``needs_user`` says whether retrying can help."""

    def __init__(self, message: str, *, needs_user: bool) -> None:
        super().__init__(message)
        self.message = message
        self.needs_user = needs_user


def service_name(app_name: str) -> str:
    """The Service's name: ``<app>-primary``."""
    return f'{app_name}-primary'


def build_service(
    *, app_name: str, namespace: str, leader_pod: str, port: int, statefulset_uid: str
) -> Service:
    """The Service that routes ``port`` to the leader's pod, owned by the app's StatefulSet.

    The owner reference makes Kubernetes delete the Service together with the
    application (``juju remove-application``), with no hook needed.
    """
    return Service(
        apiVersion='v1',
        kind='Service',
        metadata=ObjectMeta(
            name=service_name(app_name),
            namespace=namespace,
            labels={APP_LABEL: app_name},
            ownerReferences=[
                OwnerReference(
                    apiVersion='apps/v1',
                    kind='StatefulSet',
                    name=app_name,
                    uid=statefulset_uid,
                )
            ],
        ),
        spec=ServiceSpec(
            type='ClusterIP',
            selector={APP_LABEL: app_name, POD_NAME_LABEL: leader_pod},
            ports=[ServicePort(name='valkey', port=port, targetPort=port, protocol='TCP')],
        ),
    )


def make_client(namespace: str, field_manager: str) -> Client:
    """A client for the model's namespace, with the pod's service account."""
    return Client(
        namespace=namespace,
        field_manager=field_manager,
        timeout=httpx2.Timeout(_TIMEOUT_SECONDS),
    )


def point_at(
    *,
    app_name: str,
    namespace: str,
    leader_pod: str,
    port: int,
    before_write: Callable[[], None],
) -> None:
    """Create or update ``<app>-primary`` so that it selects ``leader_pod``.

    ``before_write`` runs right before the apply; whatever it raises (the
    charm's "no longer the leader") propagates and nothing is written.

    Raises:
        PrimaryServiceError: with a message the user can act on.
    """
    try:
        client = make_client(namespace, field_manager=app_name)
        statefulset = client.get(StatefulSet, name=app_name, namespace=namespace)
        uid = statefulset.metadata.uid if statefulset.metadata else None
        if not uid:
            raise PrimaryServiceError(
                f'StatefulSet {app_name} has no uid yet; retrying', needs_user=False
            )
        service = build_service(
            app_name=app_name,
            namespace=namespace,
            leader_pod=leader_pod,
            port=port,
            statefulset_uid=uid,
        )
        before_write()
        client.apply(service, field_manager=app_name, force=True)
    except ApiError as e:
        raise _explain(e, app_name) from None
    except ConfigError:
        raise PrimaryServiceError(
            'no Kubernetes credentials in the charm container; retrying', needs_user=False
        ) from None
    except httpx2.HTTPError as e:
        raise PrimaryServiceError(
            f'Kubernetes API unreachable ({type(e).__name__}); retrying', needs_user=False
        ) from None
    except ValueError as e:
        # An answer lightkube cannot decode (msgspec.ValidationError is a ValueError).
        raise PrimaryServiceError(
            f'unexpected answer from the Kubernetes API ({type(e).__name__}); retrying',
            needs_user=False,
        ) from None


def repoint(
    app: ops.Application, model_name: str, unit_name: str, before_write: Callable[[], None]
) -> ops.StatusBase | None:
    """:func:`point_at` the unit's pod, with a failure as the status that says what to do."""
    app_name, leader_pod = app.name, unit_name.replace('/', '-')
    try:
        point_at(
            app_name=app_name,
            namespace=model_name,
            leader_pod=leader_pod,
            port=PORT,
            before_write=before_write,
        )
    except PrimaryServiceError as e:
        logger.warning(
            'Could not point the %s Service at %s: %s',
            service_name(app_name),
            leader_pod,
            e.message,
        )
        return (ops.BlockedStatus if e.needs_user else ops.WaitingStatus)(e.message)
    logger.info('Pointed the %s Service at %s', service_name(app_name), leader_pod)
    return None


def _explain(error: ApiError, app_name: str) -> PrimaryServiceError:
    code = error.status.code
    name = service_name(app_name)
    if code == 403:
        # On a Kubernetes model `juju trust` refuses to run without
        # `--scope=cluster` (juju/juju cmd/juju/application/trust.go, 3.x and
        # 4.x); `juju deploy --trust` needs no scope.
        return PrimaryServiceError(
            f'not allowed to manage the {name} Service: '
            f'run `juju trust {app_name} --scope=cluster`',
            needs_user=True,
        )
    if code == 404:
        return PrimaryServiceError(
            f'StatefulSet {app_name} or its namespace not found, so {name} '
            'cannot be applied; retrying',
            needs_user=False,
        )
    if code == 409:
        return PrimaryServiceError(
            f'conflict while applying the {name} Service; retrying', needs_user=False
        )
    if code == 422:
        return PrimaryServiceError(
            f'Kubernetes rejected the {name} Service as invalid (422): please report a bug',
            needs_user=True,
        )
    return PrimaryServiceError(
        f'Kubernetes API error {code} while applying the {name} Service; retrying',
        needs_user=False,
    )
