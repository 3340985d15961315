"""Feature-visualization galleries: every unit of a model rendered, with its top dataset
examples, as PNG grids and a static HTML site.

>>> from lucidax.gallery import GalleryConfig, build_gallery
>>> report = build_gallery(GalleryConfig())  # EfficientNet-Lite0: its preset layers and units
>>> report = build_gallery(GalleryConfig(model="starter", layers="conv3", out="gallery"))
>>> report.index   # gallery/index.html

Files on disk (every write atomic: temp file in the same folder + ``os.replace``)::

  <out>/manifest.json        settings + fingerprint, versions, weights hash, per-unit status
  <out>/index.html           cross-layer index
  <out>/<layer>/index.html   layer page; <layer>/sheet.png its contact sheet
  <out>/<layer>/<unit>.png   renders (top row) + top dataset examples (receptive-field crops)
  <out>/<layer>/<unit>_loss.png, <layer>/<unit>.html
  <out>/{probes,tcav,dissect}.html   pages for result files found in those folders

Re-running the same call resumes; ``distributed=True`` splits the units over
``jax.distributed`` processes.
"""

from ._build import GalleryReport, build_gallery
from ._config import (
    PRESETS,
    GalleryConfig,
    GalleryConfigError,
    ManifestMismatchError,
    parse_layer_units,
    parse_units,
)
from ._distributed import init_distributed
from ._examples import (
    ReceptiveField,
    TopK,
    receptive_field,
    receptive_fields,
    top_k_examples,
    unit_activation,
)
from ._interpretability import (
    InterpretabilityJob,
    InterpretabilityRun,
    default_observer,
    run_interpretability,
)
from ._io import UnsafePathError, safe_name, safe_path
from ._plan import GalleryPlan, plan_batches, plan_gallery

__all__ = [
    "GalleryConfig",
    "GalleryConfigError",
    "GalleryPlan",
    "GalleryReport",
    "InterpretabilityJob",
    "InterpretabilityRun",
    "ManifestMismatchError",
    "PRESETS",
    "ReceptiveField",
    "TopK",
    "UnsafePathError",
    "build_gallery",
    "default_observer",
    "init_distributed",
    "parse_layer_units",
    "parse_units",
    "plan_batches",
    "plan_gallery",
    "receptive_field",
    "receptive_fields",
    "run_interpretability",
    "safe_name",
    "safe_path",
    "top_k_examples",
    "unit_activation",
]
