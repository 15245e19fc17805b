"""A conformance checker for any FlexVolume driver: calls it exactly as the kubelet and the
controller-manager do (docs/flexvolume.md sections 2 to 6) and checks the answers and the kernel's state.

Toolkit code: it may use dataclasses, runs every process through core/runner.py, and never
imports flexvol.cli.
"""
