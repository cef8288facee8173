# Copyright 2026 The valkey-leader-k8s authors
# See LICENSE file for licensing details.

"""Fixtures for the multi-unit simulation: every server is stopped, pass or fail.

In pods, every namespace, link and ``/etc/netns`` file is removed too (see ``pods.py``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from . import pods
from .driver import Application


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Application]:
    """Three units of the charm, not deployed yet."""
    with Application(tmp_path) as application:
        yield application


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[pods.Cluster]:
    """A pod network and cluster DNS; skipped where network namespaces cannot be made."""
    reason = pods.unavailable()
    if reason is not None:
        pytest.skip(f'pods as network namespaces: {reason}')
    with pods.Cluster(tmp_path / 'cluster') as made:
        yield made


@pytest.fixture
def pod_app(tmp_path: Path, cluster: pods.Cluster) -> Iterator[Application]:
    """Three units of the charm, each in a pod of its own, not deployed yet."""
    with Application(tmp_path, pods=cluster) as application:
        yield application
