"""lucidax.probes: what do a model's layers encode?

* :func:`extract` streams images through one jitted forward pass and writes per-layer,
  spatially reduced features to ``.npy`` files (bounded memory, on-disk cache).
* :func:`fit_probe` / :func:`fit_ridge`: cross-validated L2 logistic / ridge probes, every
  (fold, lambda) problem solved at once in JAX.
* :func:`probe_layers`: both, for every layer, with results.json / .csv and a plot.
* :func:`run_probe_cli`: what ``lucidax probe`` calls.
"""

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
    "CSV_COLUMNS",
    "DEFAULT_LAMBDAS",
    "IMAGE_EXTENSIONS",
    "REDUCTIONS",
    "Features",
    "LogisticFit",
    "ProbeConvergenceWarning",
    "ProbeResult",
    "ProbeRun",
    "RidgeResult",
    "Skipped",
    "default_layers",
    "extract",
    "fit_logistic",
    "fit_probe",
    "fit_ridge",
    "format_results",
    "list_image_folder",
    "load_data",
    "load_image",
    "plot_results",
    "probe_layers",
    "resolve_target",
    "run_probe_cli",
    "stratified_folds",
    "stratified_split",
    "wilson_interval",
    "write_results",
]
