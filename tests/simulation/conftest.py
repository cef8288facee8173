# Copyright 2026 The valkey-leader-k8s authors
# See LICENSE file for licensing details.

"""Fixtures for the multi-unit simulation: every server is stopped, pass or fail."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .driver import Application


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Application]:
    """Three units of the charm, not deployed yet."""
    with Application(tmp_path) as application:
        yield application
