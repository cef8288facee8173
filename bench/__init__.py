# Copyright 2026 The valkey-leader-k8s authors
# See LICENSE file for licensing details.

"""The benchmark run by ``tox -e bench``: see run.py and docs/benchmark.md."""
