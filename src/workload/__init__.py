# Copyright 2026 The valkey-leader-k8s authors
# See LICENSE file for licensing details.

"""Valkey machinery: what the charm runs, knowing no Juju events.

* :mod:`workload.config`: the settings of one unit's ``valkey.conf``, rendered.
* :mod:`workload.container`: push the file, run Valkey under Pebble.
* :mod:`workload.live`: change a running server live (role, password, options).
* :mod:`workload.handover`: move the primary role from a live primary, losing no write.
* :mod:`workload.client`: the charm's connections to a server.
* :mod:`workload.exporter`: the ``redis_exporter`` sidecar and its Valkey user.

``src/charm.py`` decides *what* each unit runs; this package says *how*.
"""
