"""Imports every architecture module so that each registers itself."""

import importlib

for _mod in ("inception", "resnet", "vgg", "starter"):
    try:
        importlib.import_module(f"{__package__}.{_mod}")
    except ModuleNotFoundError as e:  # architecture not written yet during development
        if e.name != f"{__package__}.{_mod}":
            raise
