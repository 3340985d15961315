"""Imports every architecture module so that each registers itself."""

from . import efficientnet, inception, resnet, starter, vgg  # noqa: F401
