"""Names Kubernetes and flexvol put on API objects for provisioning."""

from __future__ import annotations

from flexvol.core.config import DRIVER_NAME

PROVISIONER_NAME = DRIVER_NAME
# Kubernetes 1.20 sets only the beta name; later releases add the GA one. Both are read.
STORAGE_PROVISIONER_ANNOTATIONS = (
    "volume.beta.kubernetes.io/storage-provisioner",
    "volume.kubernetes.io/storage-provisioner",
)
SELECTED_NODE_ANNOTATION = "volume.kubernetes.io/selected-node"
# Before storageClassName existed; still honoured by the PV controller.
STORAGE_CLASS_ANNOTATION = "volume.beta.kubernetes.io/storage-class"
# Without it a Released PV with policy Delete goes Failed ("no volume plugin matched")
# instead of waiting for us to delete it.
PROVISIONED_BY_ANNOTATION = "pv.kubernetes.io/provisioned-by"
# The node a PV was placed on, by name; nodeAffinity carries the hostname label's value.
NODE_ANNOTATION = "flexvol.io/node"
# PV nodeAffinity matches node labels only; matchFields on metadata.name never matches.
HOSTNAME_LABEL = "kubernetes.io/hostname"

# Capacity objects the node agents publish (see capacity.py for why a custom object).
CAPACITY_GROUP = "flexvol.io"
CAPACITY_VERSION = "v1alpha1"
CAPACITY_PLURAL = "nodecapacities"
CAPACITY_KIND = "NodeCapacity"

ANY_WRITER_MODES = ("ReadWriteMany", "ReadOnlyMany")
