"""Per-unit interpretability scores (lucidax.probes.interpretability_scores) and the
``lucidax interpretability`` job: planted units score near 1, random ones 0.5, the observer
is another network unless asked, synthetic references, end to end on the starter model."""

from __future__ import annotations

import csv
import json
import os

import numpy as np
import pytest

from lucidax.probes import interpretability_scores, observer_choices, sample_tasks


def _images(n: int, seed: int = 0) -> np.ndarray:
    """Images of random colour blobs: each channel a random level plus pixel noise."""
    rng = np.random.default_rng(seed)
    level = rng.random((n, 1, 1, 3))
    return np.clip(level + 0.15 * rng.standard_normal((n, 16, 16, 3)), 0, 1)


def _hist(images: np.ndarray) -> np.ndarray:
    """Observer features: per-channel 8-bin colour histograms."""
    return np.concatenate([
        np.stack([np.histogram(im[..., c], bins=8, range=(0, 1))[0] for im in images])
        for c in range(3)], axis=1).astype(np.float32)


def test_planted_unit_scores_near_one_and_random_half():
    images = _images(1500)
    redness = images[..., 0].mean(axis=(1, 2)) - 0.5 * images[..., 1:].mean(axis=(1, 2, 3))
    rng = np.random.default_rng(1)
    acts = np.stack([redness, rng.standard_normal(len(images))], axis=1)
    res = interpretability_scores(acts, _hist(images), n_tasks=400, seed=0)
    assert res.natural[0] >= 0.9, res.natural
    lo, hi = res.natural_ci[1]
    assert lo <= 0.5 <= hi and abs(res.natural[1] - 0.5) < 0.08
    assert res.n_tasks == 400 and res.k == 9 and res.synthetic is None
    assert res.natural_ci[0, 0] <= res.natural[0] <= res.natural_ci[0, 1]
    # many random units: centred on 0.5, most intervals cover it (tasks of one unit share
    # their pools, so the coverage is a little below the nominal 95%)
    rand = interpretability_scores(rng.standard_normal((len(images), 30)), _hist(images),
                                   n_tasks=300, seed=2)
    covers = (rand.natural_ci[:, 0] <= 0.5) & (rand.natural_ci[:, 1] >= 0.5)
    assert abs(rand.natural.mean() - 0.5) < 0.03 and covers.mean() >= 0.7


def test_tasks_follow_the_ranking_and_a_similarity_function_agrees():
    acts = np.arange(1000.0)[::-1].copy()  # image i has activation 999 - i
    t = sample_tasks(acts, n_tasks=50, k=9, seed=3)
    assert t.max_refs.shape == (1, 50, 9) and t.q_hi.shape == (1, 50)
    ranks = 999 - np.arange(1000)  # rank of image i (ascending)
    assert ranks[t.max_refs].min() >= 980 and ranks[t.min_refs].max() < 20
    assert np.all((ranks[t.q_hi] >= 950) & (ranks[t.q_hi] < 980))
    assert np.all((ranks[t.q_lo] >= 20) & (ranks[t.q_lo] < 50))
    assert all(len(set(r)) == 9 for r in t.max_refs[0])  # no repeats within a task
    feats = np.random.default_rng(0).standard_normal((1000, 6)).astype(np.float32)
    unit = feats / np.linalg.norm(feats, axis=1, keepdims=True)
    a = observer_choices(feats, t)
    b = observer_choices(lambda i, j: np.sum(unit[i] * unit[j], -1), t)
    np.testing.assert_array_equal(a, b)


def test_synthetic_references():
    images = _images(1200, seed=4)
    redness = images[..., 0].mean(axis=(1, 2))
    feats = _hist(images)
    red = _hist(np.clip(np.stack([np.ones((16, 16)), np.zeros((16, 16)),
                                  np.zeros((16, 16))], -1)[None] * [[[[0.95]]]], 0, 1))
    blue = _hist(np.zeros((3, 16, 16, 3)) + [0.05, 0.05, 0.95])
    res = interpretability_scores(np.stack([redness, redness], 1), feats, n_tasks=300,
                                  synthetic_refs=[np.repeat(red, 3, 0), blue], units=[7, 9])
    assert list(res.units) == [7, 9]
    assert res.synthetic[0] >= 0.85, res.synthetic  # a render of the planted direction
    assert res.synthetic[0] <= res.natural[0] + 0.05
    assert res.synthetic[1] < res.synthetic[0] - 0.2  # a "render" without red says less
    rows = res.rows()
    assert rows[0]["unit"] == 7 and "gap" in rows[0] and "synthetic_lo" in rows[0]
    assert res.summary()["median_synthetic"] == float(np.median(res.synthetic))


@pytest.mark.parametrize("kwargs, msg", [
    ({"unit_acts": np.zeros((10, 1)), "observer_feats": np.zeros((10, 3))}, "too few images"),
    ({"observer_feats": np.zeros((5, 3))}, "same images"),
    ({"k": 0}, "k must be"),
    ({"n_tasks": -1}, "n_tasks must be"),
    ({"bands": (0.6, (0.9, 0.95))}, "bands"),
    ({"unit_acts": np.full((200, 1), np.nan)}, "NaN"),
    ({"synthetic_refs": [np.zeros((2, 4))]}, "dimensions"),
])
def test_bad_input(kwargs, msg):
    base = {"unit_acts": np.random.default_rng(0).random((200, 1)),
            "observer_feats": np.random.default_rng(1).random((200, 3))}
    base.update(kwargs)
    acts, feats = base.pop("unit_acts"), base.pop("observer_feats")
    with pytest.raises(ValueError, match=msg) as e:
        interpretability_scores(acts, feats, **base)
    assert "\n" not in str(e.value)


def test_observer_is_never_the_analysed_model_unless_asked():
    from lucidax.gallery import InterpretabilityJob, default_observer

    assert default_observer("efficientnet_lite0") == "efficientnet_lite1"
    assert default_observer("efficientnet_lite1") == "efficientnet_lite0"
    assert default_observer("efficientnet_lite2") == "efficientnet_lite1"
    assert default_observer("starter") == "efficientnet_lite0"
    for m in ("starter", "efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"):
        assert InterpretabilityJob(model=m).observer_name() != m
    with pytest.raises(ValueError, match="is the analysed model.*--allow-same-observer"):
        InterpretabilityJob(model="efficientnet_lite0",
                            observer="efficientnet_lite0").observer_name()
    assert InterpretabilityJob(model="starter", observer="starter",
                               allow_same_observer=True).observer_name() == "starter"


def test_job_end_to_end_on_starter(tmp_path, monkeypatch):
    from lucidax.gallery import InterpretabilityJob, run_interpretability

    monkeypatch.setenv("LUCIDAX_MAX_STEPS", "8")
    monkeypatch.setenv("LUCIDAX_COMPILE_CACHE", "0")
    out = tmp_path / "interp"
    run = run_interpretability(InterpretabilityJob(
        model="starter", layers="conv1", units="0-2", n=64, n_tasks=40, observer_size=64,
        synthetic=True, renders=2, steps=8, size=32, randomize=True, out=str(out)),
        progress=False)
    assert set(run.files) == {"json", "csv", "conv1_plot"}
    assert all(os.path.isfile(p) for p in run.files.values())
    data = json.loads((out / "interpretability.json").read_text())
    s = data["summary"]
    assert s["observer"] == "efficientnet_lite0" and s["observer_layer"] == "avgpool"
    layer = s["layers"]["conv1"]
    assert layer["units"] == 3 and 0 <= layer["median_natural"] <= 1
    assert set(layer["median_synthetic"]) == {"image"} and "median_random_natural" in layer
    rows = list(csv.DictReader((out / "interpretability.csv").open()))
    assert [r["unit"] for r in rows] == ["0", "1", "2"]
    assert {"natural", "natural_lo", "synthetic_image", "gap_image",
            "random_natural"} <= set(rows[0])
    assert "observer: efficientnet_lite0" in run.table


@pytest.mark.parametrize("argv, msg", [
    (["--observer", "starter"], "is the analysed model"),
    (["--params", "image,bogus"], "unknown parameterization 'bogus'"),
    (["--n", "0"], "--n"),
    (["--layers", "conv9"], "conv9"),
    (["--reduce", "median"], "invalid choice"),
])
def test_cli_bad_input_one_line(tmp_path, capsys, argv, msg):
    from lucidax.cli import main

    try:
        rc = main(["interpretability", "--out", str(tmp_path / "o"), "--n", "64",
                   "--quiet", *argv])
    except SystemExit as e:  # argparse's own errors (choices)
        rc = e.code
    err = capsys.readouterr().err.strip()
    assert rc == 2 and msg in err, err
    if "invalid choice" not in msg:
        assert len(err.splitlines()) == 1 and err.startswith("lucidax interpretability: error")


def test_group_aware_sampling_removes_a_photo_identity_shortcut():
    """20 'photos' x 50 crops: the unit responds to the photo (a level per photo), the
    observer only recognises the photo (one-hot features). Without groups a task's high query
    and its top references share the top photo (score ~1); with groups the references come
    from other photos than the queries' and the observer is at chance. A unit that sees a
    visible property varying within photos keeps its high score."""
    rng = np.random.default_rng(0)
    g = np.repeat(np.arange(20), 50)
    level = rng.permutation(20).astype(np.float64)
    colour = rng.random(1000)  # visible, varies within each photo
    acts = np.stack([level[g] + 0.1 * rng.random(1000), colour], axis=1)
    feats = np.concatenate([np.eye(20)[g] + 0.05 * rng.standard_normal((1000, 20)),
                            np.stack([colour, 1 - colour], axis=1) * 3], axis=1)
    photo_only = feats.copy()
    photo_only[:, 20:] = 0
    naive = interpretability_scores(acts[:, :1], photo_only, n_tasks=300, seed=0)
    aware = interpretability_scores(acts[:, :1], photo_only, n_tasks=300, seed=0, groups=g)
    assert naive.natural[0] > 0.9 and not naive.separate_groups
    assert abs(aware.natural[0] - 0.5) < 0.1 and aware.separate_groups
    lo, hi = aware.natural_ci[0]
    assert lo - 0.03 <= 0.5 <= hi + 0.03
    t = sample_tasks(acts, n_tasks=100, groups=g, seed=1)
    for refs in (t.max_refs, t.min_refs):  # never a query's photo among the references
        assert not np.any(g[refs] == g[t.q_hi][..., None])
        assert not np.any(g[refs] == g[t.q_lo][..., None])
    assert all(len(set(r)) == 9 for r in t.max_refs[1])
    real = interpretability_scores(acts[:, 1:], feats, n_tasks=300, seed=0, groups=g)
    assert real.natural[0] > 0.9
    off = sample_tasks(acts, n_tasks=20, groups=g, separate_groups=False, seed=4)
    same = sample_tasks(acts, n_tasks=20, seed=4)
    assert np.array_equal(off.max_refs, same.max_refs)
    with pytest.raises(ValueError, match="groups has 10 ids"):
        sample_tasks(acts, groups=g[:10])
    with pytest.raises(ValueError, match="outside the groups"):
        sample_tasks(acts, groups=np.minimum(g, 1))  # two groups: nothing outside both
