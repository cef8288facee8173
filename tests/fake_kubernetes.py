# Copyright 2026 The valkey-leader-k8s authors
# See LICENSE file for licensing details.

"""A fake Kubernetes API server at the HTTP boundary, for tests without a cluster.

The charm's real lightkube ``Client`` talks to it through an
``httpx2.MockTransport``: requests are serialised by lightkube exactly as they
would be for a real API server, and recorded here for assertions.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

import httpx2
import pytest
from lightkube import Client, KubeConfig

import primary_service

APP = 'valkey-leader-k8s'
STATEFULSET_UID = '6f1d2c3b-0000-4000-8000-000000000001'


@dataclasses.dataclass
class Request:
    method: str
    path: str
    params: dict[str, str]
    body: dict[str, Any] | None


@dataclasses.dataclass
class FakeKubernetes:
    """Records requests; answers like an API server that holds the app's StatefulSet."""

    requests: list[Request] = dataclasses.field(default_factory=list[Request])
    services: dict[str, dict[str, Any]] = dataclasses.field(
        default_factory=dict[str, dict[str, Any]]
    )
    fail_with: int | None = None
    """When set, matching requests get this HTTP status code, as a Kubernetes Status."""
    fail_method: str | None = None
    """Restrict ``fail_with`` to one HTTP method (``PATCH``: only the apply fails)."""
    certificate_authority: str | None = None
    """A CA file for the client to trust, as in a pod (the cluster's ``ca.crt``).

    Unset, lightkube loads the system's whole CA bundle for every client, which a
    charm in a pod never does; the benchmark sets it to be faithful to that cost."""
    on_request: Callable[[Request], None] | None = None
    """Called with every request before it is answered.

    Each request is a round trip to the API server: a slow call, during which
    time passes for the caller. The simulation uses this to let a leader's
    lease run out in the middle of its hook (``tests/simulation/driver.py``)."""

    def handle(self, request: httpx2.Request) -> httpx2.Response:
        body = json.loads(request.content) if request.content else None
        recorded = Request(request.method, request.url.path, dict(request.url.params), body)
        self.requests.append(recorded)
        if self.on_request is not None:
            self.on_request(recorded)
        if self.fail_with is not None and self.fail_method in (None, request.method):
            return self._status(self.fail_with)
        parts = request.url.path.strip('/').split('/')
        if request.method == 'GET' and parts[:2] == ['apis', 'apps'] and 'statefulsets' in parts:
            name, namespace = parts[-1], parts[-3]
            return httpx2.Response(
                200,
                json={
                    'apiVersion': 'apps/v1',
                    'kind': 'StatefulSet',
                    'metadata': {'name': name, 'namespace': namespace, 'uid': STATEFULSET_UID},
                    'spec': {
                        'selector': {'matchLabels': {primary_service.APP_LABEL: name}},
                        'serviceName': f'{name}-endpoints',
                        'template': {'metadata': {'labels': {primary_service.APP_LABEL: name}}},
                    },
                },
            )
        if request.method == 'GET' and 'services' in parts and parts[-1] in self.services:
            # What was applied is what a GET returns (no status, no defaults).
            return httpx2.Response(200, json=self.services[parts[-1]])
        if request.method == 'PATCH' and 'services' in parts and body is not None:
            self.services[parts[-1]] = body
            return httpx2.Response(200, json=body)
        return self._status(404)

    @staticmethod
    def _status(code: int) -> httpx2.Response:
        return httpx2.Response(
            code,
            json={
                'apiVersion': 'v1',
                'kind': 'Status',
                'status': 'Failure',
                'message': f'fake API server says {code}',
                'code': code,
            },
        )

    @property
    def applies(self) -> list[Request]:
        return [r for r in self.requests if r.method == 'PATCH']

    def selected_pod(self, service: str = f'{APP}-primary') -> str | None:
        """The pod the Service as stored selects, or ``None`` if it does not exist."""
        body = self.services.get(service)
        return body['spec']['selector'][primary_service.POD_NAME_LABEL] if body else None

    def make_client(self, namespace: str, field_manager: str) -> Client:
        cluster: dict[str, str] = {'server': 'https://kubernetes.invalid'}
        if self.certificate_authority is not None:
            cluster['certificate-authority'] = self.certificate_authority
        return Client(
            config=KubeConfig.from_dict(  # pyright: ignore[reportUnknownMemberType]
                {
                    'clusters': [{'name': 'fake', 'cluster': cluster}],
                    'users': [{'name': 'charm', 'user': {'token': 'not-a-real-token'}}],
                    'contexts': [
                        {'name': 'fake', 'context': {'cluster': 'fake', 'user': 'charm'}}
                    ],
                    'current-context': 'fake',
                }
            ),
            namespace=namespace,
            field_manager=field_manager,
            transport=httpx2.MockTransport(self.handle),
        )


REAL_MAKE_CLIENT = primary_service.make_client
"""The charm's own client factory, for the one test that builds a real client."""


def install(monkeypatch: pytest.MonkeyPatch) -> FakeKubernetes:
    """Route the charm's Kubernetes client to a new fake API server."""
    fake = FakeKubernetes()
    monkeypatch.setattr(primary_service, 'make_client', fake.make_client)
    return fake
