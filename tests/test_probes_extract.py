"""Activation extraction (reductions, sources, cache, corrupt files) and the layer sweep."""

from __future__ import annotations

import csv
import gc
import json
import os

import flax.linen as nn
import imageio.v3 as iio
import jax
import numpy as np
import pytest

import lucidax.models as lm
from lucidax.probes import (
    Features,
    ProbeJob,
    extract,
    format_results,
    list_image_folder,
    load_image,
    probe_layers,
    run_probe,
)

SIDE = 32
N_CLASSES = 4


class _Tiny(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(8, (3, 3), name="conv1")(x))
        x = nn.avg_pool(x, (2, 2), (2, 2))
        x = nn.relu(nn.Conv(16, (3, 3), name="conv2")(x))
        return nn.Dense(N_CLASSES, name="fc")(x.mean(axis=(1, 2)))


@pytest.fixture(scope="module")
def tiny():
    rng = np.random.default_rng(0)  # numpy init: flax's jitted init costs seconds on CPU

    def dense(*shape):
        return {"kernel": (rng.normal(size=shape) / np.sqrt(np.prod(shape[:-1]))).astype(
            np.float32), "bias": np.zeros(shape[-1], np.float32)}

    params = {"conv1": dense(3, 3, 3, 8), "conv2": dense(3, 3, 8, 16),
              "fc": dense(16, N_CLASSES)}
    return lm.wrap(_Tiny(), params, input_spec=lm.InputSpec(side=SIDE), name="tiny")


def tinted(n, seed=0, side=SIDE):
    """Images whose class is a colour tint (a linearly decodable concept) plus noise."""
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.arange(n) % N_CLASSES)
    tints = np.asarray([[0.8, 0.2, 0.2], [0.2, 0.8, 0.2], [0.2, 0.2, 0.8], [0.7, 0.7, 0.2]])
    x = 0.6 * tints[y][:, None, None, :] + 0.4 * rng.random((n, side, side, 3))
    return x.astype(np.float32), y


@pytest.fixture(scope="module")
def images():
    return tinted(400)


def _png(path, img):
    iio.imwrite(path, (np.clip(img, 0, 1) * 255).round().astype(np.uint8))


@pytest.fixture()
def folder(tmp_path):
    """Two class folders with good images, plus corrupt files that must be skipped."""
    x, _ = tinted(12, seed=3, side=40)
    root = tmp_path / "imgs"
    for cls in ("cat", "dog"):
        (root / cls).mkdir(parents=True)
    for i in range(12):
        _png(root / ("cat" if i % 2 == 0 else "dog") / f"img{i:02d}.png", x[i])
    good = (root / "cat" / "img00.png").read_bytes()
    (root / "cat" / "truncated.png").write_bytes(good[: len(good) // 2])
    (root / "dog" / "random.png").write_bytes(np.random.default_rng(0).bytes(500))
    (root / "cat" / "notes.png").write_text("this is not an image\n")
    (root / "dog" / "empty.jpg").write_bytes(b"")
    (root / "dog" / "README.txt").write_text("ignored: not an image extension")
    return root


# ------------------------------------------------------------------------------------------
def test_reductions_match_numpy(tiny, images):
    x = images[0][:40]
    ref = jax.tree.map(np.asarray, tiny.apply(tiny.params, x, ("conv1", "fc")))
    a = ref["conv1"]  # [40, 32, 32, 8]
    cases = {
        "mean": a.mean(axis=(1, 2)),
        "max": a.max(axis=(1, 2)),
        "center": a[:, 16, 16],
        ("position", 3, -1): a[:, 3, 31],
        ("position", 0.0, 1.0): a[:, 0, 31],
        ("grid", 2): a.reshape(40, 2, 16, 2, 16, 8).mean(axis=(2, 4)).reshape(40, -1),
        "grid3": np.stack(
            [np.stack([a[:, h0:h1, w0:w1].mean(axis=(1, 2)) for w0, w1 in
                       ((0, 11), (10, 22), (21, 32))], axis=1)
             for h0, h1 in ((0, 11), (10, 22), (21, 32))], axis=1).reshape(40, -1),
    }
    for reduce, want in cases.items():
        f = extract(tiny, tiny.params, x, ["conv1", "fc"], reduce=reduce, batch_size=16,
                    progress=False)
        assert np.allclose(f["conv1"], want, atol=1e-5), reduce
        assert np.allclose(f["fc"], ref["fc"], atol=1e-5)  # dense layers pass through


def test_array_cache_hits_and_misses(tiny, images, tmp_path):
    x = images[0][:100]
    cache = tmp_path / "cache"
    kw = dict(batch_size=32, cache_dir=cache, progress=False)
    first = extract(tiny, tiny.params, x, ["conv1", "conv2"], **kw)
    assert first.cache_misses == ("conv1", "conv2") and first.cache_hits == ()
    second = extract(tiny, tiny.params, x, ["conv1", "conv2"], **kw)
    assert second.cache_hits == ("conv1", "conv2") and second.cache_misses == ()
    assert np.array_equal(first["conv2"], second["conv2"])
    # a new layer misses, the old one still hits
    third = extract(tiny, tiny.params, x, ["conv1", "fc"], **kw)
    assert third.cache_hits == ("conv1",) and third.cache_misses == ("fc",)
    # another reduction, another dtype, other params, other images: misses
    assert extract(tiny, tiny.params, x, ["conv1"], reduce="max", **kw).cache_misses == (
        "conv1",)
    half = extract(tiny, tiny.params, x, ["conv1"], dtype="float16", **kw)
    assert half.cache_misses == ("conv1",) and half["conv1"].dtype == np.float16
    assert np.allclose(half["conv1"], first["conv1"], rtol=2e-3, atol=1e-3)
    other = jax.tree.map(lambda p: p * 1.5, tiny.params)
    assert extract(tiny, other, x, ["conv1"], **kw).cache_misses == ("conv1",)
    changed = x.copy()
    changed[7, 3, 3, 0] += 0.25
    assert extract(tiny, tiny.params, changed, ["conv1"], **kw).cache_misses == ("conv1",)
    assert extract(tiny, tiny.params, x[:99], ["conv1"], **kw).cache_misses == ("conv1",)
    assert extract(tiny, tiny.params, x, ["conv1"], **kw).cache_hits == ("conv1",)


def test_features_are_files_on_disk(tiny, images, tmp_path):
    x = images[0][:100]
    f = extract(tiny, tiny.params, x, ["conv2", "fc"], batch_size=16, cache_dir=tmp_path,
                progress=False)
    for layer, width in (("conv2", 16), ("fc", N_CLASSES)):
        arr = f[layer]
        assert isinstance(arr, np.memmap) and not arr.flags.writeable
        assert os.path.dirname(f.files[layer]) == str(tmp_path)
        assert os.path.samefile(arr.filename, f.files[layer])
        assert arr.shape == (100, width)
        loaded = np.load(f.files[layer])  # a plain, valid .npy file
        assert loaded.shape == (100, width) and np.array_equal(loaded, arr)
        assert os.path.getsize(f.files[layer]) == arr.offset + 100 * width * 4
    assert not [p for p in os.listdir(tmp_path) if ".tmp" in p]  # nothing half-written


def test_no_cache_dir_uses_a_private_temp_folder(tiny, images):
    f = extract(tiny, tiny.params, images[0][:20], ["fc"], progress=False)
    folder = os.path.dirname(f.files["fc"])
    assert os.path.isdir(folder) and f.cache_misses == ("fc",)
    del f
    gc.collect()
    assert not os.path.exists(folder)


def test_iterable_of_batches_with_labels(tiny, images):
    x, y = images[0][:100], images[1][:100]
    batches = [(x[a:b], y[a:b]) for a, b in ((0, 30), (30, 80), (80, 100))]
    f = extract(tiny, tiny.params, iter(batches), ["conv2"], batch_size=16, progress=False)
    ref = extract(tiny, tiny.params, x, ["conv2"], batch_size=16, progress=False)
    assert np.allclose(f["conv2"], ref["conv2"], atol=1e-6)
    assert np.array_equal(f.labels["label"], y) and np.array_equal(f.index, np.arange(100))
    dicts = [{"image": (x[a:b] * 255).round().astype(np.uint8), "label": {"cls": y[a:b]}}
             for a, b in ((0, 50), (50, 100))]
    g = extract(tiny, tiny.params, dicts, ["fc"], batch_size=32, progress=False)
    assert g.n == 100 and np.array_equal(g.labels["cls"], y)


def test_corrupt_images_are_skipped_and_labels_stay_aligned(tiny, folder, tmp_path):
    f = extract(tiny, tiny.params, folder, ["conv1", "fc"], batch_size=5, cache_dir=tmp_path,
                progress=False)
    assert f.n == 12 and f.n_seen == 16 and len(f.skipped) == 4
    skipped = {os.path.basename(s.path): s.reason for s in f.skipped}
    assert set(skipped) == {"truncated.png", "random.png", "notes.png", "empty.jpg"}
    assert all(reason for reason in skipped.values())
    assert skipped["empty.jpg"] == "empty file"
    paths, labels, names = list_image_folder(folder)
    assert [os.path.basename(paths[s.index]) for s in f.skipped] == [
        os.path.basename(s.path) for s in f.skipped]
    # every row: its path, its label (the folder name) and its features belong together
    for row, path in enumerate(f.paths):
        cls = os.path.basename(os.path.dirname(path))
        assert f.label_names["label"][f.labels["label"][row]] == cls
        assert paths[f.index[row]] == path and labels["label"][f.index[row]] == f.labels[
            "label"][row]
    x = np.stack([load_image(p, size=SIDE) for p in f.paths])
    want = np.asarray(tiny.apply(tiny.params, x, ("fc",))["fc"])
    assert np.allclose(f["fc"], want, atol=1e-5)
    assert x.shape == (12, SIDE, SIDE, 3)  # 40 px images resized to the model's side
    # the cache brings the skipped list back too; touching an image invalidates it
    again = extract(tiny, tiny.params, folder, ["fc"], batch_size=5, cache_dir=tmp_path,
                    progress=False)
    assert again.cache_hits == ("fc",) and again.skipped == f.skipped
    assert np.array_equal(again.labels["label"], f.labels["label"])
    st = os.stat(f.paths[0])
    os.utime(f.paths[0], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert extract(tiny, tiny.params, folder, ["fc"], batch_size=5, cache_dir=tmp_path,
                   progress=False).cache_misses == ("fc",)
    _png(folder / "dog" / "new.png", np.full((40, 40, 3), 0.5))
    grown = extract(tiny, tiny.params, folder, ["fc"], batch_size=5, cache_dir=tmp_path,
                    progress=False)
    assert grown.cache_misses == ("fc",) and grown.n == 13


def test_csv_labels_grayscale_and_missing_files(tiny, tmp_path):
    root = tmp_path / "csvdata"
    root.mkdir()
    rng = np.random.default_rng(0)
    rows = []
    for i in range(6):
        gray = rng.random((SIDE, SIDE))
        _png(root / f"g{i}.png", gray)  # grayscale files for an RGB model
        rows.append((f"g{i}.png", "round" if i % 2 else "square", f"{0.5 * i:.1f}"))
    rows.insert(2, ("missing.png", "round", "9.5"))
    with open(root / "labels.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["filename", "shape", "area"])
        w.writerows(rows)
    f = extract(tiny, tiny.params, root, ["fc"], progress=False)
    assert f.n == 6 and [os.path.basename(s.path) for s in f.skipped] == ["missing.png"]
    assert f.label_names["shape"] == ("round", "square")
    kept = [r for r in rows if r[0] != "missing.png"]
    assert [f.label_names["shape"][c] for c in f.labels["shape"]] == [r[1] for r in kept]
    assert np.allclose(f.labels["area"], [float(r[2]) for r in kept])  # continuous column
    # a 1-channel model reads the same files (and RGB ones) as grayscale
    gray_model = lm.wrap(
        lambda p, im, layers: {"mean": im.mean(axis=(1, 2))}, {},
        input_spec=lm.InputSpec(side=SIDE, channels=1), layer_names=["mean"], name="gray",
    )
    g = extract(gray_model, {}, root / "labels.csv", ["mean"], progress=False)
    assert g["mean"].shape == (6, 1)


def test_bad_inputs_give_clear_errors(tiny, images, tmp_path):
    x = images[0][:8]
    with pytest.raises(ValueError, match="Valid layers: conv1, conv2, fc"):
        extract(tiny, tiny.params, x, ["conv9"], progress=False)
    with pytest.raises(ValueError, match="Valid reductions"):
        extract(tiny, tiny.params, x, ["conv1"], reduce="median", progress=False)
    with pytest.raises(ValueError, match="outside layer 'conv1'"):
        extract(tiny, tiny.params, x, ["conv1"], reduce=("position", 40, 0), progress=False)
    with pytest.raises(ValueError, match="3 input channel"):
        extract(tiny, tiny.params, x[..., :1], ["conv1"], progress=False)
    with pytest.raises(ValueError, match="Valid dtypes"):
        extract(tiny, tiny.params, x, ["conv1"], dtype="int8", progress=False)
    with pytest.raises(FileNotFoundError, match="not found"):
        extract(tiny, tiny.params, str(tmp_path / "nope"), ["conv1"], progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images"):
        extract(tiny, tiny.params, tmp_path / "empty", ["conv1"], progress=False)
    with pytest.raises(TypeError, match="data must be"):
        extract(tiny, tiny.params, 42, ["conv1"], progress=False)
    with pytest.raises(ValueError, match="one label per image"):
        extract(tiny, tiny.params, x, ["conv1"], labels=np.zeros(5), progress=False)


# ------------------------------------------------------------------------------------------
def test_probe_layers_writes_results(tiny, images, tmp_path):
    x, y = images
    out = tmp_path / "out"
    results = probe_layers(tiny, tiny.params, x, y, "all", target_name="tint", out_dir=out,
                           cache_dir=tmp_path / "cache", progress=False)
    assert [r.layer for r in results] == ["conv1", "conv2", "fc", "output"]
    assert all(r.target == "tint" and r.n_test == 100 for r in results)
    assert results[0].accuracy > 0.9 and results[0].ci_low > results[0].chance
    doc = json.loads((out / "results.json").read_text())
    assert doc["target"] == "tint" and doc["model"] == "tiny" and doc["data"]["n_images"] == 400
    assert [row["layer"] for row in doc["layers"]] == ["conv1", "conv2", "fc", "output"]
    with open(out / "results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["depth"]) for r in rows] == [0, 1, 2, 3]
    assert float(rows[0]["accuracy"]) == pytest.approx(results[0].accuracy)
    assert {"ci_low", "ci_high", "lambda", "chance", "n_features", "n_train"} <= set(rows[0])
    assert int(rows[1]["n_features"]) == 16
    assert (out / "accuracy_by_layer.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert b"<svg" in (out / "accuracy_by_layer.svg").read_bytes()[:500]
    assert not [p for p in os.listdir(out) if p.startswith(".tmp")]
    assert "conv1" in format_results(results)


def test_run_probe_cli_folder_and_builtin(tiny, images, folder, tmp_path, monkeypatch):
    run = run_probe(ProbeJob(tiny, layers="conv1", data=str(folder), out=tmp_path / "f",
                             folds=2, test_size=0.5), progress=False)
    assert run.results[0].layer == "conv1" and run.results[0].n_test == 6
    assert all(os.path.isfile(p) for p in run.files.values()) and "conv1" in run.table
    doc = json.loads((tmp_path / "f" / "results.json").read_text())
    assert doc["data"]["n_skipped"] == 4 and doc["class_names"] == ["cat", "dog"]

    # builtin:starter, with the dataset stubbed (the real one is exercised by its own tests)
    from lucidax.models import starter

    x, y = images
    calls = {}

    def fake_dataset(n, *, split="train", seed=0, fixed=None):
        calls.update(n=n, split=split, seed=seed)
        fam = {"color": y[:n], "digit": (y[:n] + 1) % N_CLASSES}
        names = {"color": ("red", "green", "blue", "yellow"), "digit": ("0", "1", "2", "3")}
        return starter.StarterData(
            images=x[:n], labels=fam, label_names=names, digit_mask=None,
            background_mask=None, alpha=None, digit_index=None, crop_box=None, flipped=None,
            split=split,
        )

    monkeypatch.setattr(starter, "dataset", fake_dataset)
    run = run_probe(ProbeJob(tiny, layers="conv1", data="builtin:starter", target="color",
                             n=400, out=tmp_path / "b"), progress=False)
    assert calls == {"n": 400, "split": "test", "seed": 0}
    assert run.results[0].target == "color" and run.results[0].accuracy > 0.9
    doc = json.loads((tmp_path / "b" / "results.json").read_text())
    assert doc["class_names"] == ["red", "green", "blue", "yellow"]
    with pytest.raises(ValueError, match="Valid targets: color, digit"):
        run_probe(ProbeJob(tiny, layers="conv1", data="builtin:starter", target="colour",
                           n=400, out=tmp_path / "c"), progress=False)
    with pytest.raises(ValueError, match="Valid: builtin:starter"):
        run_probe(ProbeJob(tiny, data="builtin:imagenet", out=tmp_path / "d"), progress=False)


def test_features_summary_is_json(tiny, folder):
    f = extract(tiny, tiny.params, folder, ["fc"], progress=False)
    assert isinstance(f, Features)
    s = json.loads(json.dumps(f.summary()))
    assert s["n"] == 12 and s["n_skipped"] == 4 and s["shapes"]["fc"] == [12, N_CLASSES]


def test_a_second_extraction_and_a_params_copy_reuse_the_compiled_forward(tiny, images,
                                                                          monkeypatch):
    """One program per architecture (``Model.program``): no new trace for a second call or
    for a ``with_params`` copy (new weights)."""
    import lucidax.probes._extract as ex

    traces = []
    real = ex.fast_apply

    def counting(*a, **k):
        traces.append(1)
        return real(*a, **k)

    monkeypatch.setattr(ex, "fast_apply", counting)
    x = images[0][:20]
    kw = dict(reduce="max", batch_size=7, dtype="float16", progress=False)
    first = extract(tiny, tiny.params, x, ["conv1"], **kw)
    n = len(traces)
    assert n >= 1
    extract(tiny, tiny.params, x, ["conv1"], **kw)
    copy = tiny.with_params(jax.tree.map(lambda a: a * 0.5, tiny.params))
    halved = extract(copy, copy.params, x, ["conv1"], **kw)
    assert len(traces) == n
    assert not np.allclose(np.asarray(first["conv1"]), np.asarray(halved["conv1"]))
