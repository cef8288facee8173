# Copyright 2026 The valkey-leader-k8s authors
# See LICENSE file for licensing details.

"""Fixtures for tests that run real servers: every process is stopped, pass or fail."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .. import fake_kubernetes
from .charm_unit import CharmUnit
from .valkey_server import ValkeyServer

StartServer = Callable[..., ValkeyServer]


@pytest.fixture(autouse=True)
def kubernetes(monkeypatch: pytest.MonkeyPatch) -> fake_kubernetes.FakeKubernetes:
    """The leader's <app>-primary Service goes to a fake API server."""
    return fake_kubernetes.install(monkeypatch)


@pytest.fixture
def leader_unit(tmp_path: Path) -> CharmUnit:
    return CharmUnit(0, tmp_path / 'unit-0')


@pytest.fixture
def follower_unit(tmp_path: Path) -> CharmUnit:
    return CharmUnit(1, tmp_path / 'unit-1')


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[StartServer]:
    """Start ``valkey-server <the unit's file>``; every server is stopped at teardown."""
    started: list[ValkeyServer] = []

    def start(unit: CharmUnit, *, replicaof: int | None = None) -> ValkeyServer:
        server = ValkeyServer(
            unit.config_file,
            data_dir=tmp_path / f'valkey-dir-{len(started)}',
            log_file=tmp_path / f'valkey-{len(started)}.log',
            replicaof=replicaof,
        )
        started.append(server)
        server.start()
        return server

    yield start
    # Every server is stopped even if stopping one of them fails.
    with contextlib.ExitStack() as stack:
        for server in started:
            stack.callback(server.stop)
