"""TCAV: CAV fits, directional derivatives, planted concepts, calibration, cache, CLI runner.

All solver calls use the same problem shape (40 problems of 20 examples, <= 8 features) so
the vmapped L-BFGS program compiles once for the module (one exception: the FastCAV agreement
test fits 40 problems of 100 examples, the TCAV paper's 50 + 50). The starter model's own TCAV
run is in scripts/bench_tcav.py and the README (too slow to compile for a unit test);
scripts/bench_fastcav.py measures the mean-vs-logistic agreement on the starter and lite0.
"""

from __future__ import annotations

import csv
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lucidax.models import InputSpec, apply_perturbed, wrap
from lucidax.probes import (
    CAVs,
    ImageSet,
    TCAVJob,
    TCAVResult,
    adjust_pvalues,
    fit_cavs,
    layer_gradients,
    run_tcav,
    tcav,
    tcav_from_features,
    tcav_scores,
)

RUNS, NC, NR = 20, 10, 10
PIX = np.array([0.6, -0.5, 0.3], np.float32)  # pixel-colour shift that plants the concept
WC = np.array([[1.0, 0.3], [-0.4, 1.2], [0.5, -0.7]], np.float32)  # 1x1 "conv", 3 -> 2


def _tiny_apply(params, images, layers):
    n = images.shape[0]
    x = images.reshape(n, 2, 4, 2, 4, 3).mean(axis=(2, 4))  # 2x2 map
    act = jnp.einsum("nhwc,cd->nhwd", x, params["wc"])  # "conv": [N, 2, 2, 2]
    pooled = act.mean(axis=(1, 2))
    # logit of class "a": linear along the planted direction u, plus a small nonlinearity
    # (so that gradients differ between inputs); class "b" is its negative
    l0 = pooled @ params["u"] + 0.05 * jnp.sum(jnp.sin(4.0 * pooled), axis=1)
    out = {"conv": act, "logits": jnp.stack([l0, -l0], axis=1)}
    return {k: out[k] for k in layers}


@pytest.fixture(scope="module")
def tiny():
    u = PIX @ WC
    params = {"wc": jnp.asarray(WC), "u": jnp.asarray(u / np.linalg.norm(u))}
    return wrap(_tiny_apply, params, input_spec=InputSpec(side=8, channels=3),
                layer_names=["conv", "logits"], name="tiny", logits_layer="logits",
                labels=("a", "b"))


def _images(n, seed, shift=0.0):
    rng = np.random.default_rng(seed)
    return np.clip(rng.uniform(0.2, 0.8, (n, 8, 8, 3)) + shift * PIX, 0, 1).astype(np.float32)


@pytest.fixture(scope="module")
def pools():
    return {
        "random": _images(RUNS * (2 * NR + NC), 1),
        "planted": _images(RUNS * NC, 2, shift=0.15),
        "random_concept": _images(RUNS * NC, 3),
        "targets": _images(30, 4),
    }


# ----------------------------------------------------------------------------------------------
# CAVs and scores
# ----------------------------------------------------------------------------------------------
def test_fit_cavs_recovers_direction_and_matches_sklearn():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    u = np.array([1.0, -2.0, 0.5, 0.0, 0.0])
    u /= np.linalg.norm(u)
    pos = [rng.normal(size=(NC, 5)) * [1, 1, 2, 1, 3] + 3.0 * u for _ in range(2 * RUNS)]
    neg = [rng.normal(size=(NR, 5)) * [1, 1, 2, 1, 3] for _ in range(2 * RUNS)]
    fit = fit_cavs(pos, neg, test_size=0.0)
    assert isinstance(fit, CAVs) and fit.directions.shape == (2 * RUNS, 5)
    assert fit.converged.all()
    np.testing.assert_allclose(np.linalg.norm(fit.directions, axis=1), 1.0, rtol=1e-6)
    assert np.all(fit.directions @ u > 0)  # points towards the concept
    # same objective as scikit-learn's binary L2 logistic regression on standardized features
    # (2-class softmax penalizing both columns == binary with C = 2 / (lam * n))
    for i in (0, 7):
        x = np.concatenate([pos[i], neg[i]])
        mu, sd = x.mean(0), x.std(0)
        y = np.r_[np.ones(NC), np.zeros(NR)]
        ref = LogisticRegression(C=2 / (0.01 * len(x)), tol=1e-10, max_iter=10_000)
        ref.fit((x - mu) / sd, y)
        v = ref.coef_[0] / sd
        assert fit.directions[i] @ (v / np.linalg.norm(v)) > 0.999
    held = fit_cavs(pos, neg)  # with the held-out third
    assert 0.7 < float(np.mean(held.accuracy)) <= 1.0


def test_fit_cavs_validates_input():
    with pytest.raises(ValueError, match="as many positive as negative"):
        fit_cavs([np.zeros((4, 2))], [])
    with pytest.raises(ValueError, match="at least 2"):
        fit_cavs([np.zeros((1, 2))], [np.zeros((3, 2))])
    with pytest.raises(ValueError, match="NaN"):
        fit_cavs([np.full((3, 2), np.nan)], [np.zeros((3, 2))])


def test_mean_cavs_match_logistic_and_recover_a_planted_direction():
    """FastCAV (``method="mean"``): the normalized mean difference, exactly; on well-separated
    isotropic features (50 + 50 examples) it agrees with the logistic CAV (cosine >= 0.9) and
    recovers the planted concept direction."""
    rng = np.random.default_rng(1)
    u = np.array([1.0, -2.0, 0.5, 0.0, 0.0])
    u /= np.linalg.norm(u)
    pos = [rng.normal(size=(50, 5)) + 3.0 * u for _ in range(2 * RUNS)]
    neg = [rng.normal(size=(50, 5)) for _ in range(2 * RUNS)]
    mean = fit_cavs(pos, neg, method="mean", test_size=0.0)
    logistic = fit_cavs(pos, neg, test_size=0.0)
    assert mean.method == "mean" and logistic.method == "logistic"
    assert mean.converged.all() and np.isnan(mean.lambda_) and logistic.lambda_ == 0.01
    # FastCAV's definition: mean of the concept activations centred by the global mean
    ref = np.stack([p.mean(0) - np.concatenate([p, n]).mean(0)
                    for p, n in zip(pos, neg, strict=True)])
    np.testing.assert_allclose(mean.directions,
                               ref / np.linalg.norm(ref, axis=1, keepdims=True), atol=1e-6)
    cos = np.sum(mean.directions * logistic.directions, axis=1)
    assert float(np.mean(cos)) >= 0.95 and float(np.min(cos)) >= 0.9, cos
    assert float(np.mean(mean.directions @ u)) >= 0.95 and np.all(mean.directions @ u > 0.85)
    held = fit_cavs(pos, neg, method="mean")  # held-out accuracy of sign(v . (a - mean))
    assert 0.9 < float(np.mean(held.accuracy)) <= 1.0
    with pytest.raises(ValueError, match="unknown CAV method 'svm'; valid: logistic, mean"):
        fit_cavs(pos, neg, method="svm")


def test_mean_cavs_compile_once_for_every_width():
    """One compiled FastCAV program per padded shape: new data and another width of the same
    bucket (and the layers of a tcav_from_features call) reuse it."""
    from lucidax.probes._cav import _mean_many

    rng = np.random.default_rng(2)

    def problems(d, shift=1.0):
        return ([rng.normal(size=(NC, d)) + shift for _ in range(RUNS)],
                [rng.normal(size=(NR, d)) for _ in range(RUNS)])

    fit_cavs(*problems(3), method="mean", width=8)
    size = _mean_many._cache_size()
    fit_cavs(*problems(3, 2.0), method="mean", width=8)
    fit_cavs(*problems(6), method="mean")  # bucket 8 too
    assert _mean_many._cache_size() == size
    # tcav_from_features: layers of widths 3 and 6 share one program (3 problem sets x RUNS)
    rnd = {"a": rng.normal(size=(RUNS * (2 * NR + NC), 3)),
           "b": rng.normal(size=(RUNS * (2 * NR + NC), 6))}
    con = {c: {"a": rng.normal(size=(RUNS * NC, 3)) + 1, "b": rng.normal(size=(RUNS * NC, 6))}
           for c in ("c1", "c2")}
    grads = {"a": rng.normal(size=(10, 3)), "b": rng.normal(size=(10, 6))}
    kw = dict(runs=RUNS, n_concept=NC, n_random=NR, cav="mean")
    r1 = tcav_from_features(con, rnd, grads, **kw)
    size = _mean_many._cache_size()
    r2 = tcav_from_features(con, rnd, grads, seed=5, **kw)
    assert _mean_many._cache_size() == size
    assert {r.cav for r in r1 + r2} == {"mean"} and len(r1) == 4
    with pytest.raises(ValueError, match="valid: logistic, mean"):
        tcav_from_features(con, rnd, grads, runs=RUNS, n_concept=NC, n_random=NR, cav="svm")


def test_tcav_scores_is_fraction_of_positive_directional_derivatives():
    g = np.array([[1.0, 0.0], [0.5, -1.0], [-1.0, 0.2], [2.0, 2.0]])
    v = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    np.testing.assert_allclose(tcav_scores(g, v), [3 / 4, 2 / 4, 1 / 4])
    with pytest.raises(ValueError, match="gradients must be"):
        tcav_scores(np.ones((3, 3)), v)


# ----------------------------------------------------------------------------------------------
# gradients
# ----------------------------------------------------------------------------------------------
def test_mean_space_directional_derivative_matches_finite_difference(tiny, pools):
    x = pools["targets"][:8]
    g_mean = layer_gradients(tiny, tiny.params, x, "conv", "a", reduce="mean", batch_size=8)
    g_flat = layer_gradients(tiny, tiny.params, x, ["conv"], 0, reduce="flatten")
    assert g_mean["conv"].shape == (8, 2) and g_flat["conv"].shape == (8, 8)
    # the mean-space gradient is the flattened gradient summed over positions
    np.testing.assert_allclose(g_flat["conv"].reshape(8, 4, 2).sum(1), g_mean["conv"],
                               rtol=1e-5, atol=1e-6)
    # ... and the derivative along v of adding eps * v at every position
    v = np.array([0.8, -0.6], np.float32)
    eps = 1e-2

    def logit(delta):
        return np.asarray(apply_perturbed(tiny, tiny.params, x, ("logits",), {"conv": delta})
                          ["logits"][:, 0], np.float64)

    fd = (logit(eps * v) - logit(-eps * v)) / (2 * eps)
    np.testing.assert_allclose(g_mean["conv"] @ v, fd, rtol=2e-3, atol=2e-4)
    # class "b" is the negated logit
    g_b = layer_gradients(tiny, tiny.params, x, "conv", "b", batch_size=8)
    np.testing.assert_allclose(g_b["conv"], -g_mean["conv"], rtol=1e-6)


def test_gradient_errors(tiny, pools):
    with pytest.raises(ValueError, match="class labels: a, b"):
        layer_gradients(tiny, tiny.params, pools["targets"], "conv", "c")
    with pytest.raises(ValueError, match="feature space"):
        layer_gradients(tiny, tiny.params, pools["targets"], "conv", 0, reduce="max")
    with pytest.raises(ValueError, match="out of range"):
        layer_gradients(tiny, tiny.params, pools["targets"], "conv", 5)


# ----------------------------------------------------------------------------------------------
# the experiment
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("reduce", ["mean", "flatten"])
def test_planted_concept_gives_tcav_one_and_is_significant(tiny, pools, reduce, tmp_path):
    concepts = {"planted": pools["planted"], "random concept": pools["random_concept"]}
    res = {}
    for cls in ("a", "b"):
        out = tcav(tiny, tiny.params, concepts, pools["random"], pools["targets"], cls,
                   ("conv",), runs=RUNS, n_concept=NC, n_random=NR, reduce=reduce,
                   cache_dir=tmp_path, progress=False, seed=3)
        res.update({(r.concept, cls): r for r in out})
    a, b = res[("planted", "a")], res[("planted", "b")]
    assert a.mean >= 0.95 and min(a.scores) >= 0.8  # the logit rises along the concept
    assert a.significant and a.p_adj < 0.01 and a.mean > a.null_mean
    assert b.mean <= 0.05 and b.significant  # ... and the negated logit falls
    assert a.cav_accuracy > 0.9 and 0.2 < a.null_cav_accuracy < 0.8
    assert a.independent_runs and len(a.scores) == RUNS and len(a.null_scores) == RUNS
    rc = res[("random concept", "a")]
    assert not rc.significant and rc.p_adj > 0.05
    assert a.correction == "holm" and a.test == "welch" and a.reduce == reduce
    json.dumps(a.to_dict())  # JSON-ready


def test_mean_cavs_give_the_same_decisions_as_logistic(tiny, pools, tmp_path):
    """``cav="mean"`` on the planted-concept setup: the same significance decisions as the
    logistic CAVs for both classes, close TCAV scores, recorded in the result."""
    concepts = {"planted": pools["planted"], "random concept": pools["random_concept"]}
    res = {}
    for cav in ("logistic", "mean"):
        for cls in ("a", "b"):
            out = tcav(tiny, tiny.params, concepts, pools["random"], pools["targets"], cls,
                       ("conv",), runs=RUNS, n_concept=NC, n_random=NR, cav=cav,
                       cache_dir=tmp_path, progress=False, seed=3)
            res.update({(r.concept, cls, cav): r for r in out})
    for c in concepts:
        for cls in ("a", "b"):
            lo, me = res[(c, cls, "logistic")], res[(c, cls, "mean")]
            assert lo.cav == "logistic" and me.cav == "mean" and me.to_dict()["cav"] == "mean"
            assert me.significant == lo.significant, (c, cls)
            assert abs(me.mean - lo.mean) < 0.15, (c, cls, me.mean, lo.mean)
    assert res[("planted", "a", "mean")].significant and res[("planted", "a", "mean")].mean > 0.9
    assert res[("planted", "a", "mean")].cav_accuracy > 0.9
    with pytest.raises(ValueError, match="valid: logistic, mean"):
        tcav(tiny, tiny.params, concepts, pools["random"], pools["targets"], "a", "conv",
             cav="svm", progress=False)


def test_random_concepts_false_positive_rate_is_nominal():
    """Random concepts (drawn like the random images) against the random-vs-random null:
    about 5% of raw p-values fall below 0.05, and after Holm none stays significant."""
    import scipy.stats as ss

    d = 5
    pvals = []
    for e in range(200):  # independent experiments: own pools, own null
        rng = np.random.default_rng(1000 + e)
        rnd = {"l": rng.normal(size=(RUNS * (2 * NR + NC), d))}
        con = {"rc": {"l": rng.normal(size=(RUNS * NC, d))}}
        grads = {"l": rng.normal(size=(30, d)) + [1.0, 0.5, 0.0, 0.0, 0.0]}
        (r,) = tcav_from_features(con, rnd, grads, runs=RUNS, n_concept=NC, n_random=NR,
                                  seed=e)
        pvals.append(r.p)
    pvals = np.asarray(pvals)
    hits = int(np.sum(pvals < 0.05))
    # two-sided binomial test of the false-positive rate against 0.05
    assert ss.binomtest(hits, len(pvals), 0.05).pvalue > 0.001, hits
    assert 0.3 < float(np.mean(pvals)) < 0.7  # p-values roughly uniform
    assert int(np.sum(adjust_pvalues(pvals, "holm") <= 0.05)) <= 1
    assert int(np.sum(adjust_pvalues(pvals, "bh") <= 0.05)) <= 2


def test_small_pools_are_flagged_and_counts_validated():
    rng = np.random.default_rng(0)
    rnd = {"l": rng.normal(size=(RUNS * (2 * NR + NC), 3))}
    con = {"c": {"l": rng.normal(size=(NC + 5, 3)) + 2.0}}  # fewer than runs * n_concept
    grads = {"l": rng.normal(size=(10, 3))}
    (r,) = tcav_from_features(con, rnd, grads, runs=RUNS, n_concept=NC, n_random=NR)
    assert not r.independent_runs
    with pytest.raises(ValueError, match="runs must be an integer >= 2"):
        tcav_from_features(con, rnd, grads, runs=1)
    with pytest.raises(ValueError, match="each run needs"):
        tcav_from_features({"c": {"l": np.zeros((3, 3))}}, rnd, grads, runs=RUNS)
    with pytest.raises(ValueError, match="do not match the gradients"):
        tcav_from_features(con, rnd, {"l": np.zeros((10, 4))})
    with pytest.raises(ValueError, match="correction"):
        tcav_from_features(con, rnd, grads, correction="holmes")


def test_second_run_reuses_the_cache(tiny, pools, tmp_path):
    kw = dict(runs=RUNS, n_concept=NC, n_random=NR, cache_dir=tmp_path, progress=False)
    concepts = {"planted": ImageSet.from_array(pools["planted"], "planted")}
    first, second = {}, {}
    r1 = tcav(tiny, tiny.params, concepts, pools["random"], pools["targets"], 0, "conv",
              stats=first, **kw)
    loads = []
    lazy = ImageSet("planted", concepts["planted"].key, len(pools["planted"]),
                    lambda: loads.append(1) or pools["planted"])
    r2 = tcav(tiny, tiny.params, {"planted": lazy}, pools["random"], pools["targets"], 0,
              "conv", stats=second, **kw)
    assert first["gradient_cache_misses"] == ["conv"]
    assert second["gradient_cache_misses"] == [] and second["feature_cache_misses"] == []
    assert set(second["feature_cache_hits"]) == {"random", "planted"}
    assert loads == []  # a warm cache never builds the concept images
    assert r1[0].scores == r2[0].scores and r1[0].p == r2[0].p


# ----------------------------------------------------------------------------------------------
# the CLI runner (image folders) and the builtin starter sources
# ----------------------------------------------------------------------------------------------
def _write_folder(folder, images):
    import imageio.v3 as iio

    folder.mkdir(parents=True)
    for i, img in enumerate(images):
        iio.imwrite(folder / f"{i:04d}.png", np.round(img * 255).astype(np.uint8))
    return str(folder)


def test_run_tcav_cli_from_folders_writes_results(tiny, pools, tmp_path, monkeypatch):
    import imageio.v3 as iio

    kw = dict(
        layers="conv", target_class="a", runs=RUNS, n_concept=NC, n_random=NR,
        concepts=[_write_folder(tmp_path / "stripes", pools["planted"]),
                  "other=" + _write_folder(tmp_path / "rc", pools["random_concept"])],
        random=_write_folder(tmp_path / "random", pools["random"]),
        targets=_write_folder(tmp_path / "class_a", pools["targets"]),
        correction="bh")
    run = run_tcav(TCAVJob(tiny, out=tmp_path / "o", **kw), progress=False)
    assert [(r.concept, r.layer) for r in run.results] == [("stripes", "conv"),
                                                          ("other", "conv")]
    planted, other = run.results
    assert planted.significant and planted.mean >= 0.95 and not other.significant
    assert planted.correction == "bh" and planted.n_targets == 30
    doc = json.loads((tmp_path / "o" / "results.json").read_text())
    assert doc["target"] == "a" and len(doc["results"]) == 2 and doc["config"]["runs"] == RUNS
    with open(run.files["csv"], newline="") as f:
        rows = list(csv.DictReader(f))
    assert [row["concept"] for row in rows] == ["stripes", "other"]
    assert rows[0]["significant"] == "True"
    assert iio.imread(run.files["png"]).shape[0] > 100
    assert os.path.getsize(run.files["svg"]) > 0
    assert "stripes" in run.table and "ns" in run.table
    again = run_tcav(TCAVJob(tiny, out=tmp_path / "o", **kw), progress=False)
    assert again.cache["gradient_cache_misses"] == []
    assert again.cache["feature_cache_misses"] == []
    assert again.results[0].scores == planted.scores
    assert doc["config"]["cav"] == "logistic" and doc["results"][0]["cav"] == "logistic"
    # --cav mean: the same cache, recorded in results.json, the CSV and the table
    fast = run_tcav(TCAVJob(tiny, out=tmp_path / "m", cache_dir=tmp_path / "o" / "cache",
                            cav="mean", **kw), progress=False)
    assert fast.cache["feature_cache_misses"] == []
    assert [r.significant for r in fast.results] == [True, False]
    doc = json.loads((tmp_path / "m" / "results.json").read_text())
    assert doc["config"]["cav"] == "mean" and {r["cav"] for r in doc["results"]} == {"mean"}
    with open(fast.files["csv"], newline="") as f:
        rows = list(csv.DictReader(f))
    assert [row["cav"] for row in rows] == ["mean", "mean"]
    assert "FastCAV" in fast.table
    # one concept, one narrow panel: the title is wrapped to the figure, never cut at its sides
    import importlib

    plots = importlib.import_module("lucidax.probes._plots")
    figs = []
    monkeypatch.setattr(plots, "save_plot", lambda path, fig, **kw: figs.append(fig))
    plots.plot_tcav(run.results[:1], tmp_path / "one.png")
    figs[0].canvas.draw()
    box = figs[0]._suptitle.get_window_extent()
    assert 0 <= box.x0 and box.x1 <= figs[0].bbox.width and "\n" in figs[0]._suptitle.get_text()


def test_builtin_starter_sources_are_lazy_and_keyed():
    from lucidax.models import starter

    small = {"size": "small"}  # 28 px digits: no digit resizing (keeps the test fast)
    red = ImageSet.starter(6, fixed={"color": "red", **small}, seed=1)
    assert red.n == 6 and "images" not in vars(red)  # nothing built yet
    assert red.key != ImageSet.starter(6, fixed={"color": "red", **small}, seed=2).key
    assert red.key != ImageSet.starter(6, fixed={"color": "blue", **small}, seed=1).key
    assert red.images.shape == (6, starter.SIDE, starter.SIDE, 3)
    with pytest.raises(ValueError, match="red"):
        ImageSet.starter(6, fixed={"color": "reed"})


def test_cli_cav_flag_parses_into_the_job():
    from lucidax.cli import build_parser
    from lucidax.cli._common import dataclass_from_args

    parser = build_parser()
    base = ["tcav", "--concepts", "color:red", "--class", "3"]
    assert dataclass_from_args(TCAVJob, parser.parse_args(base)).cav == "logistic"
    job = dataclass_from_args(TCAVJob, parser.parse_args([*base, "--cav", "mean"]))
    assert job.cav == "mean"
    with pytest.raises(SystemExit):
        parser.parse_args([*base, "--cav", "svm"])
    with pytest.raises(ValueError, match="--cav must be one of logistic, mean"):
        run_tcav(TCAVJob("starter", concepts=["color:red"], cav="svm", out=None),
                 progress=False)
    assert TCAVResult.__dataclass_fields__["cav"].default == "logistic"


def test_run_tcav_cli_rejects_bad_specs():
    with pytest.raises(ValueError, match="color"):
        run_tcav(TCAVJob("starter", concepts=["colour:red"], out=None), progress=False)
    with pytest.raises(ValueError, match="red"):
        run_tcav(TCAVJob("starter", concepts=["color:reed"], out=None), progress=False)
    with pytest.raises(ValueError, match="class labels: 0, 1, 2"):
        run_tcav(TCAVJob("starter", concepts=["color:red"], target_class="ten", out=None),
                 progress=False)


def test_gradients_compile_once_per_architecture(tiny, pools, monkeypatch):
    """``Model.program``: a second call and a ``with_params`` copy trace nothing new."""
    import lucidax.probes._gradients as gr

    traces = []
    real = gr.apply_perturbed

    def counting(*a, **k):
        traces.append(1)
        return real(*a, **k)

    monkeypatch.setattr(gr, "apply_perturbed", counting)
    x = pools["targets"][:9]
    g1 = layer_gradients(tiny, tiny.params, x, "conv", "a", batch_size=9)
    n = len(traces)
    assert n >= 1
    layer_gradients(tiny, tiny.params, x, "conv", "a", batch_size=9)
    copy = tiny.with_params(jax.tree.map(lambda a: a * 2.0, tiny.params))
    g2 = layer_gradients(copy, copy.params, x, "conv", "a", batch_size=9)
    assert len(traces) == n
    assert not np.allclose(g1["conv"], g2["conv"])
