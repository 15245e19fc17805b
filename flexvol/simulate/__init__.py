"""Walk Pod / PV / PVC / StorageClass manifests through one node's storage flow."""
