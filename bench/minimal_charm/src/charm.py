#!/usr/bin/env python3
# Copyright 2026 The valkey-leader-k8s authors
# See LICENSE file for licensing details.

"""The baseline: an ops charm with valkey-leader-k8s's metadata that does nothing.

Whatever a hook of this charm costs is what ops and Python cost on their own;
the benchmark reports valkey-leader-k8s's figures as ratios to these.
"""

import ops


class MinimalCharm(ops.CharmBase):
    """Observes nothing, sets no status, touches nothing."""


if __name__ == '__main__':  # pragma: nocover
    ops.main(MinimalCharm)
