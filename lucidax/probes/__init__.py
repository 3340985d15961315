"""lucidax.probes: what do a model's layers encode?

* :func:`extract` streams images through one jitted forward pass and writes per-layer,
  spatially reduced features to ``.npy`` files (bounded memory, on-disk cache).
* :func:`fit_probe` / :func:`fit_ridge`: cross-validated L2 logistic / ridge probes (one compiled
  program: the folds of a lambda solved together, lambdas along the regularization path).
* :func:`probe_layers`: both, for every layer, with results.json / .csv and a plot.
* :func:`tcav`: concept activation vectors and TCAV scores with t-tests against random
  concepts, corrected for multiple comparisons.
* :func:`dissect`: network dissection (which units detect which concept masks, by IoU).
* :class:`ProbeJob` / :func:`run_probe`, :class:`TCAVJob` / :func:`run_tcav`,
  :class:`DissectJob` / :func:`run_dissect`: what ``lucidax probe``, ``lucidax tcav`` and
  ``lucidax dissect`` run (a configuration dataclass and its entry point).
"""

from ._cav import CAVs, fit_cavs, tcav_scores
from ._concepts import (
    ArrayConcepts,
    ConceptBatch,
    FolderConcepts,
    StarterConcepts,
    concept_category,
    starter_concept_masks,
    starter_concepts,
)
from ._data import (
    BUILTIN_DATA,
    IMAGE_EXTENSIONS,
    ImageSet,
    list_image_folder,
    load_data,
    load_image,
)
from ._dissect import (
    DEFAULT_IOU_THRESHOLD,
    DEFAULT_QUANTILE,
    Dissection,
    UnitDissection,
    dissect,
    iou_counts,
    unit_thresholds,
)
from ._dissect_job import BUILTIN_DISSECT_DATA, DissectJob, DissectRun, run_dissect
from ._extract import REDUCTIONS, Features, Skipped, extract
from ._gradients import FEATURE_SPACES, layer_gradients
from ._interpretability import (
    DEFAULT_BANDS,
    InterpretabilityResult,
    Tasks,
    interpretability_scores,
    observer_choices,
    sample_tasks,
)
from ._linear import (
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
from ._plots import concept_colors, plot_dissection, plot_results, plot_tcav
from ._probe_job import ProbeJob, ProbeRun, run_probe
from ._report import (
    CSV_COLUMNS,
    format_dissection,
    format_results,
    format_tcav,
    write_dissection,
    write_results,
    write_tcav,
)
from ._stats import CORRECTIONS, TTest, adjust_pvalues, ttest_ind
from ._sweep import default_layers, probe_layers, resolve_target
from ._tcav import TCAVResult, tcav, tcav_from_features
from ._tcav_job import TCAVJob, TCAVRun, run_tcav

__all__ = [
    "BUILTIN_DATA",
    "BUILTIN_DISSECT_DATA",
    "CORRECTIONS",
    "CSV_COLUMNS",
    "DEFAULT_BANDS",
    "DEFAULT_IOU_THRESHOLD",
    "DEFAULT_LAMBDAS",
    "DEFAULT_QUANTILE",
    "FEATURE_SPACES",
    "IMAGE_EXTENSIONS",
    "REDUCTIONS",
    "ArrayConcepts",
    "CAVs",
    "ConceptBatch",
    "DissectJob",
    "DissectRun",
    "Dissection",
    "Features",
    "FolderConcepts",
    "ImageSet",
    "InterpretabilityResult",
    "LogisticFit",
    "ProbeConvergenceWarning",
    "ProbeJob",
    "ProbeResult",
    "ProbeRun",
    "RidgeResult",
    "Skipped",
    "StarterConcepts",
    "TCAVJob",
    "TCAVResult",
    "TCAVRun",
    "TTest",
    "Tasks",
    "UnitDissection",
    "adjust_pvalues",
    "concept_category",
    "concept_colors",
    "default_layers",
    "dissect",
    "extract",
    "fit_cavs",
    "fit_logistic",
    "fit_probe",
    "fit_ridge",
    "format_dissection",
    "format_results",
    "format_tcav",
    "interpretability_scores",
    "iou_counts",
    "layer_gradients",
    "list_image_folder",
    "load_data",
    "load_image",
    "observer_choices",
    "plot_dissection",
    "plot_results",
    "plot_tcav",
    "probe_layers",
    "resolve_target",
    "run_dissect",
    "run_probe",
    "run_tcav",
    "sample_tasks",
    "starter_concept_masks",
    "starter_concepts",
    "stratified_folds",
    "stratified_split",
    "tcav",
    "tcav_from_features",
    "tcav_scores",
    "ttest_ind",
    "unit_thresholds",
    "wilson_interval",
    "write_dissection",
    "write_results",
    "write_tcav",
]
