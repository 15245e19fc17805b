"""The CSI front end: `flexvol csi` serves the Identity, Controller and Node services of the
Container Storage Interface on a unix socket, with the storage steps, records and locks of the
FlexVolume driver (volume.py, state.py), so a volume is one thing whichever front end made it.

Nothing here is imported by the FlexVolume driver's per-call path: grpc loads only in the
long-running plugin process.
"""
