"""The `cluster` fixture: one real single-node Kubernetes 1.20 cluster per test session (ci/cluster.py).

At the end of the session the cluster is torn down, unless BOTFLEET_KEEP_CLUSTER=1 (then the next session's
`up` finds it healthy and returns in about a second).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import cluster_support
import pytest


@pytest.fixture(scope="session")
def cluster() -> Iterator[cluster_support.Cluster]:
    # A failure, not a skip: a suite that quietly does not run proves nothing.
    assert os.geteuid() == 0, "the real cluster needs root (containerd, iptables, a bridge)"
    info = cluster_support.ensure_cluster()
    yield info
    if os.environ.get("BOTFLEET_KEEP_CLUSTER") != "1":
        cluster_support.teardown()
