#!/usr/bin/env python3
# Copyright 2026 The valkey-leader-k8s authors
# See LICENSE file for licensing details.

"""A minimal valkey_client requirer, for the integration tests of valkey-leader-k8s.

It asks for the keys under ``PREFIX`` exactly as Canonical's Valkey charm
documents it (``RequirerCommonModel(resource=...)``), and its ``check`` action
talks to Valkey with the credentials it received, in the Valkey protocol over a
plain socket (no client library needed). Its results never hold the password.
"""

from __future__ import annotations

import socket

import ops
from dpcharmlibs.interfaces import (
    RequirerCommonModel,
    ResourceProviderModel,
    ResourceRequirerEventHandler,
    ValkeyResponseModel,
)

ENDPOINT = 'valkey'
PREFIX = 'it-client:'


class ValkeyTestClientCharm(ops.CharmBase):
    """Request a user for ``it-client:*``; check what it may do on demand."""

    def __init__(self, framework: ops.Framework) -> None:
        super().__init__(framework)
        self.valkey = ResourceRequirerEventHandler(
            self,
            ENDPOINT,
            [RequirerCommonModel(resource=f'{PREFIX}*')],
            response_model=ValkeyResponseModel,
        )
        framework.observe(self.on.collect_unit_status, self._on_collect_status)
        framework.observe(self.on.check_action, self._on_check)

    def _response(self) -> ResourceProviderModel | None:
        relation = self.model.get_relation(ENDPOINT)
        if relation is None:
            return None
        model = self.valkey.interface.build_model(relation.id, component=relation.app)
        for response in model.requests:
            if response.username and response.password and response.endpoints:
                return response
        return None

    def _on_collect_status(self, event: ops.CollectStatusEvent) -> None:
        if self._response() is None:
            event.add_status(ops.WaitingStatus('waiting for Valkey credentials'))
        event.add_status(ops.ActiveStatus('credentials received'))

    def _on_check(self, event: ops.ActionEvent) -> None:
        response = self._response()
        if response is None or not response.username or not response.password:
            event.fail('no Valkey credentials yet')
            return
        host, port = (response.endpoints or '').split(',')[0].rsplit(':', 1)
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            replies = {
                'auth': call(sock, 'AUTH', response.username, response.password),
                'own-prefix-write': call(sock, 'SET', f'{PREFIX}check', 'ok'),
                'own-prefix-read': call(sock, 'GET', f'{PREFIX}check'),
                'other-prefix-write': call(sock, 'SET', 'elsewhere:check', 'no'),
                'flushall': call(sock, 'FLUSHALL'),
            }
        event.set_results(
            {
                **replies,
                'username': response.username,
                'endpoints': response.endpoints or '',
                'read-only-endpoints': response.read_only_endpoints or '',
                'resource': response.resource,
                'tls': str(response.tls),
            }
        )


def call(sock: socket.socket, *args: str) -> str:
    """Send one command; return the reply's first line (``+OK``, ``-NOPERM ...``) or its value."""
    payload = f'*{len(args)}\r\n' + ''.join(f'${len(a.encode())}\r\n{a}\r\n' for a in args)
    sock.sendall(payload.encode())
    reply = sock.recv(65536).decode(errors='replace').split('\r\n')
    return reply[1] if reply[0].startswith('$') and reply[0] != '$-1' else reply[0]


if __name__ == '__main__':  # pragma: nocover
    ops.main(ValkeyTestClientCharm)
