"""flexvol: a loop-device FlexVolume driver and the toolkit around it."""

__version__ = "0.1.0"
