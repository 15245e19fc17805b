"""Dynamic provisioning: a claim becomes a flexvol volume on one node, and goes away with it.

The decisions (which claim to act on, the PV to build, where it fits, what to reclaim) are
pure functions over API objects as plain dicts (claims.py, placement.py, reclaim.py). The
controllers (provisioner.py, agent.py) apply them through the small `Cluster` interface of
cluster.py, which kube.py implements with the official client and the tests with a fake.
Nothing here is on the driver's per-call path.
"""
