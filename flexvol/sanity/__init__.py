"""A conformance checker for any FlexVolume driver: calls it exactly as the kubelet and the
controller-manager do (docs/flexvolume.md sections 2 to 6) and checks the answers and the kernel's state.

Toolkit code: it may use subprocess and dataclasses, and never imports flexvol.cli.
"""
