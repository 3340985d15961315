"""lucidax.probes: what do a model's layers encode?

* :func:`extract` streams images through one jitted forward pass and writes per-layer,
  spatially reduced features to ``.npy`` files (bounded memory, on-disk cache).
* :func:`fit_probe` / :func:`fit_ridge`: cross-validated L2 logistic / ridge probes, every
  (fold, lambda) problem solved at once in JAX.
* :func:`probe_layers`: both, for every layer, with results.json / .csv and a plot.
* :func:`run_probe_cli`: what ``lucidax probe`` calls.
* :func:`dissect`: network dissection (which units detect which concept masks, by IoU);
  :func:`run_dissect_cli` is ``lucidax dissect``.
"""

from .dissect import (
    BUILTIN_DISSECT_DATA,
    DEFAULT_IOU_THRESHOLD,
    DEFAULT_QUANTILE,
    ArrayConcepts,
    ConceptBatch,
    Dissection,
    DissectRun,
    FolderConcepts,
    StarterConcepts,
    UnitDissection,
    concept_category,
    dissect,
    format_dissection,
    iou_counts,
    plot_dissection,
    run_dissect_cli,
    starter_concept_masks,
    starter_concepts,
    unit_thresholds,
    write_dissection,
)
from .extract import (
    IMAGE_EXTENSIONS,
    REDUCTIONS,
    Features,
    Skipped,
    extract,
    list_image_folder,
    load_image,
)
from .linear import (
    DEFAULT_LAMBDAS,
    LogisticFit,
    ProbeConvergenceWarning,
    ProbeResult,
    RidgeResult,
    fit_logistic,
    fit_probe,
    fit_ridge,
    stratified_folds,
    stratified_split,
    wilson_interval,
)
from .run import BUILTIN_DATA, ProbeRun, load_data, run_probe_cli
from .sweep import (
    CSV_COLUMNS,
    default_layers,
    format_results,
    plot_results,
    probe_layers,
    resolve_target,
    write_results,
)

__all__ = [
    "BUILTIN_DATA",
    "BUILTIN_DISSECT_DATA",
    "CSV_COLUMNS",
    "DEFAULT_IOU_THRESHOLD",
    "DEFAULT_LAMBDAS",
    "DEFAULT_QUANTILE",
    "IMAGE_EXTENSIONS",
    "REDUCTIONS",
    "ArrayConcepts",
    "ConceptBatch",
    "DissectRun",
    "Dissection",
    "Features",
    "FolderConcepts",
    "LogisticFit",
    "ProbeConvergenceWarning",
    "ProbeResult",
    "ProbeRun",
    "RidgeResult",
    "Skipped",
    "StarterConcepts",
    "UnitDissection",
    "concept_category",
    "default_layers",
    "dissect",
    "extract",
    "fit_logistic",
    "fit_probe",
    "fit_ridge",
    "format_dissection",
    "format_results",
    "iou_counts",
    "list_image_folder",
    "load_data",
    "load_image",
    "plot_dissection",
    "plot_results",
    "probe_layers",
    "resolve_target",
    "run_dissect_cli",
    "run_probe_cli",
    "starter_concept_masks",
    "starter_concepts",
    "stratified_folds",
    "stratified_split",
    "unit_thresholds",
    "wilson_interval",
    "write_dissection",
    "write_results",
]
