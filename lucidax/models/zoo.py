"""Imports every architecture module so that each registers itself."""

from . import inception, resnet, starter, vgg  # noqa: F401
