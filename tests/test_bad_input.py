"""Every command fails well (issue 15): bad input gives exit code 2 and one line on stderr
naming the file or flag, with no traceback, before any expensive work; unreadable files of a
folder are skipped with a one-line warning that counts and names them."""

from __future__ import annotations

import json
import os
import shutil
import time
import warnings

import numpy as np
import pytest

import lucidax.models
from lucidax import _files
from lucidax.cli import main

COMMANDS = {  # the smallest valid arguments of each command (besides --out)
    "render": ["--units", "0", "--steps", "1"],
    "invert": ["--layers", "conv1", "--steps", "1"],
    "probe": ["--target", "digit", "--n", "8", "--layers", "conv1"],
    "tcav": ["--concepts", "color:red", "--class", "3", "--runs", "2"],
    "dissect": ["--n", "8", "--layers", "conv1"],
    "attribute": ["--n", "1", "--methods", "gradient", "--no-evaluate"],
    "gallery": ["--model", "starter", "--layers", "conv1", "--units", "0", "--steps", "1"],
}


# --- helpers ------------------------------------------------------------------------------------
def _png(path, seed=0):
    import imageio.v3 as iio

    rng = np.random.default_rng(seed)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    iio.imwrite(path, (rng.random((16, 16, 3)) * 255).astype(np.uint8))
    return str(path)


def _corrupt(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(np.random.default_rng(1).bytes(300))
    return str(path)


def _text(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write("not an image\n")
    return str(path)


def _fails(capsys, argv, *needles):
    """Run the CLI: exit code 2, exactly one stderr line starting ``lucidax <cmd>: error:``
    and containing every needle, no traceback; returns that line."""
    rc = main(argv)
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2, err
    assert "Traceback" not in err
    assert len(lines) == 1, err
    assert lines[0].startswith(f"lucidax {argv[0]}: error: "), err
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


@pytest.fixture
def no_model(monkeypatch):
    """Loading a model fails the test: the check must come before it."""

    def load(*a, **k):
        raise AssertionError("the model was loaded before the bad input was refused")

    monkeypatch.setattr(lucidax.models, "load", load)


@pytest.fixture
def bad_files(tmp_path):
    """A corrupt .png, a text file named .jpg, and a file where a folder is expected."""
    return {"png": _corrupt(tmp_path / "bad.png"), "jpg": _text(tmp_path / "text.jpg"),
            "file": _text(tmp_path / "f.txt")}


# --- row 1: unreadable images ---------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["png", "jpg"])
@pytest.mark.parametrize("argv", [
    ["attribute", "--images", "{}"],
    ["invert", "--layers", "conv1", "--images", "{}"],
], ids=["attribute", "invert"])
def test_unreadable_image_given_explicitly_is_one_line(capsys, tmp_path, bad_files, no_model,
                                                       argv, kind):
    path = bad_files[kind]
    argv = [a.format(path) for a in argv] + ["--out", str(tmp_path / "o")]
    line = _fails(capsys, argv, f"cannot read image {path!r}", "not a readable image")
    assert "pillow can not handle" not in line
    assert not (tmp_path / "o").exists()


def test_invert_images_folder_or_missing_file(capsys, tmp_path, no_model):
    out = str(tmp_path / "o")
    _fails(capsys, ["invert", "--layers", "conv1", "--images", str(tmp_path), "--out", out],
           f"--images {str(tmp_path)!r} is a folder; give image files")
    missing = str(tmp_path / "nope.png")
    _fails(capsys, ["invert", "--layers", "conv1", "--images", missing, "--out", out],
           f"no such image file: {missing!r}")


def test_one_uint8_conversion_and_its_nan_policy(tmp_path):
    img = np.full((4, 5, 3), 0.25, np.float32)
    img[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):  # user-facing saves refuse NaN
        _files.save_png(tmp_path / "x.png", img)
    assert not os.path.exists(tmp_path / "x.png")
    grey = _files.to_uint8(img, nan=0.5)  # the gallery: a failed unit is a grey tile
    assert grey[0, 0].tolist() == [128, 128, 128] and grey[1, 1].tolist() == [64] * 3
    batch = np.stack([img, img])[..., :1]  # [2, 4, 5, 1]
    assert _files.to_uint8(batch, nan=0.5, rgb=True).shape == (2, 4, 5, 3)
    assert _files.to_uint8(img[..., :1], nan=0.5).shape == (4, 5)  # grayscale PNG
    rgba = np.concatenate([img, np.ones_like(img[..., :1])], -1)
    assert _files.to_uint8(rgba, nan=0.0).shape == (4, 5, 4)
    assert _files.to_uint8(rgba, nan=0.0, rgb=True).shape == (4, 5, 3)
    grid = _files.image_grid(np.zeros((3, 2, 2, 3), np.uint8), cols=2, pad=1, fill=238)
    assert grid.dtype == np.uint8 and grid.shape == (7, 7, 3) and grid[0, 0, 0] == 238


def test_pad_batch_keeps_one_shape():
    from lucidax._batching import pad_batch, valid_mask

    x = np.arange(6, dtype=np.float32).reshape(3, 2)
    edge = pad_batch(x, 5)
    assert edge.shape == (5, 2) and (edge[3:] == x[-1]).all()
    assert (pad_batch(x, 5, fill="zeros")[3:] == 0).all()
    assert pad_batch(x, 3) is x
    assert valid_mask(3, 5).tolist() == [True, True, True, False, False]
    with pytest.raises(ValueError):
        pad_batch(x, 2)


def test_load_image_errors_name_the_file(tmp_path, bad_files):
    for path in (bad_files["png"], bad_files["jpg"]):
        with pytest.raises(_files.UnreadableImageError, match="bad.png|text.jpg") as e:
            _files.load_image(path, size=8)
        assert isinstance(e.value, ValueError) and "\n" not in str(e.value)
    with pytest.raises(FileNotFoundError, match="nope.png"):
        _files.load_image(tmp_path / "nope.png", size=8)
    with pytest.raises(_files.UnreadableImageError, match="folder"):
        _files.load_image(tmp_path, size=8)
    truncated = tmp_path / "trunc.png"
    data = open(_png(tmp_path / "ok.png"), "rb").read()
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(_files.UnreadableImageError, match="trunc.png"):
        _files.load_image(truncated, size=8)
    assert _files.check_image(truncated) is not None
    assert _files.check_image(tmp_path / "ok.png") is None


def test_read_images_skips_with_a_count_and_names(tmp_path, bad_files):
    good = _png(tmp_path / "good.png")
    paths = [good, bad_files["png"], bad_files["jpg"]]
    with pytest.warns(_files.SkippedFilesWarning,
                      match=r"skipped 2 unreadable image file\(s\) in my folder: bad.png, "
                            r"text.jpg \(not a readable image"):
        images, kept = _files.read_images(paths, size=8, where="my folder")
    assert images.shape == (1, 8, 8, 3) and kept == [good]
    with pytest.warns(_files.SkippedFilesWarning, match="skipped 2"):
        assert _files.readable_images(paths, "my folder") == [good]
    with pytest.raises(ValueError, match="no readable image in my folder: all 2"):
        _files.read_images(paths[1:], size=8, where="my folder")
    with pytest.raises(ValueError, match="no readable image in my folder: all 2"):
        _files.readable_images(paths[1:], "my folder")


def test_attribute_folder_skips_unreadable_files_with_a_warning(capsys, tmp_path, bad_files):
    folder = tmp_path / "imgs"
    _png(folder / "z.png")  # after the bad files: --n 1 reads until one image is readable
    for f in (bad_files["png"], bad_files["jpg"]):
        shutil.copy(f, folder)
    rc = main(["attribute", "--images", str(folder), "--n", "1", "--methods", "gradient",
               "--no-evaluate", "--quiet", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 0, err
    warn = [ln for ln in err.splitlines() if ln.strip()]
    assert len(warn) == 1 and warn[0].startswith("lucidax attribute: warning: skipped 2 "), err
    assert "bad.png" in warn[0] and "text.jpg" in warn[0]
    assert json.loads((tmp_path / "o" / "results.json").read_text())["image_names"] == ["z.png"]


def _all_bad(folder, bad_files, sub=("",)):
    for s in sub:
        for f in (bad_files["png"], bad_files["jpg"]):
            os.makedirs(folder / s, exist_ok=True)
            shutil.copy(f, folder / s)
    return str(folder)


def test_attribute_folder_with_nothing_readable(capsys, tmp_path, bad_files):
    folder = _all_bad(tmp_path / "bad", bad_files)
    _fails(capsys, ["attribute", "--images", folder, "--quiet", "--out", str(tmp_path / "o")],
           "no readable image in --images folder", "bad.png", "text.jpg")


def test_tcav_checks_its_image_folders_before_the_work(capsys, tmp_path, bad_files,
                                                       monkeypatch):
    import importlib

    tcav_mod = importlib.import_module("lucidax.probes._tcav_job")

    def tcav(*a, **k):
        raise AssertionError("tcav started before its folders were checked")

    monkeypatch.setattr(tcav_mod, "tcav", tcav)
    folder = _all_bad(tmp_path / "bad", bad_files)
    t0 = time.perf_counter()
    _fails(capsys, ["tcav", "--concepts", folder, "--class", "3", "--quiet",
                    "--out", str(tmp_path / "o")],
           f"no readable image in image folder {folder!r}", "bad.png", "text.jpg")
    assert time.perf_counter() - t0 < 10


def test_tcav_folder_skips_unreadable_files(tmp_path, bad_files):
    from lucidax.probes import ImageSet

    folder = tmp_path / "c"
    _png(folder / "a.png")
    _png(folder / "b.png", 1)
    shutil.copy(bad_files["png"], folder)
    with pytest.warns(_files.SkippedFilesWarning, match="skipped 1 .*bad.png"):
        s = ImageSet.from_folder(folder, size=8)
    assert s.n == 2 and s.images.shape == (2, 8, 8, 3)


def test_dissect_folder_skips_unreadable_images_and_masks(capsys, tmp_path, bad_files):
    from lucidax.probes import FolderConcepts

    root = tmp_path / "d"
    for i in range(3):
        _png(root / "images" / f"g{i}.png", i)
        _png(root / "masks" / "stroke" / f"g{i}.png", i)
    shutil.copy(bad_files["png"], root / "images" / "bad.png")
    _corrupt(root / "masks" / "stroke" / "g2.png")
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        fc = FolderConcepts(root, size=8)
    msgs = [str(x.message) for x in w if issubclass(x.category, _files.SkippedFilesWarning)]
    assert len(msgs) == 2, msgs
    assert "skipped 1 unreadable image file(s) in images folder" in msgs[0]
    assert "bad.png" in msgs[0]
    assert "masks folder" in msgs[1] and os.path.join("stroke", "g2.png") in msgs[1]
    assert fc.stems == ("g0", "g1") and fc.n == 2
    # nothing readable: one line from the command
    allbad = tmp_path / "allbad"
    _all_bad(allbad / "images", bad_files)
    os.makedirs(allbad / "masks" / "stroke")
    _fails(capsys, ["dissect", "--data", str(allbad), "--quiet", "--out", str(tmp_path / "o")],
           "no readable image in images folder", "bad.png")


def test_probe_folder_with_nothing_readable(capsys, tmp_path, bad_files):
    folder = _all_bad(tmp_path / "cls", bad_files, sub=("a", "b"))
    _fails(capsys, ["probe", "--data", folder, "--layers", "conv1", "--quiet",
                    "--out", str(tmp_path / "o")],
           "no readable image in data folder", "bad.png", "text.jpg")


# --- row 2: --out (and --cache-dir) that cannot be a folder ------------------------------------
@pytest.mark.parametrize("command", list(COMMANDS))
def test_out_that_is_a_file_fails_fast(capsys, tmp_path, bad_files, no_model, command):
    before = open(bad_files["file"]).read()
    listing = sorted(os.listdir(tmp_path))
    t0 = time.perf_counter()
    _fails(capsys, [command, *COMMANDS[command], "--out", bad_files["file"]],
           f"--out {bad_files['file']!r} is an existing file, not a folder")
    assert time.perf_counter() - t0 < 5
    assert open(bad_files["file"]).read() == before
    assert sorted(os.listdir(tmp_path)) == listing


@pytest.mark.parametrize("command", ["render", "attribute"])
def test_out_under_a_file_fails_fast(capsys, tmp_path, bad_files, no_model, command):
    out = os.path.join(bad_files["file"], "sub")
    _fails(capsys, [command, *COMMANDS[command], "--out", out],
           f"--out {out!r} cannot be created", "is a file, not a folder")


@pytest.mark.parametrize("command", ["probe", "tcav"])
def test_cache_dir_that_is_a_file(capsys, tmp_path, bad_files, no_model, command):
    _fails(capsys, [command, *COMMANDS[command], "--out", str(tmp_path / "o"),
                    "--cache-dir", bad_files["file"]],
           f"--cache-dir {bad_files['file']!r} is an existing file")
    assert not (tmp_path / "o").exists()


def test_prepare_out_dir_creates_nothing(tmp_path):
    assert _files.prepare_out_dir(tmp_path / "a" / "b") == str(tmp_path / "a" / "b")
    assert not (tmp_path / "a").exists()
    with pytest.raises(ValueError, match="--out is empty"):
        _files.prepare_out_dir("")


def test_permission_error_on_a_user_path_is_one_line(capsys, tmp_path, monkeypatch):
    import lucidax.visualize as viz

    def render_job(*a, **k):
        raise PermissionError(13, "Permission denied", str(tmp_path / "x.png"))

    monkeypatch.setattr(viz, "render_job", render_job)
    _fails(capsys, ["render", "--out", str(tmp_path / "o")], "Permission denied",
           str(tmp_path / "x.png"))


# --- row 3: attribute --option ------------------------------------------------------------------
@pytest.mark.parametrize("option,needles", [
    ("occlusion.patchsize=16", ("occlusion has no option 'patchsize'", "did you mean 'patch'?",
                                "valid options of occlusion: patch, stride, baseline, "
                                "batch_size")),
    ("ig.step=64", ("did you mean 'steps'?",)),
    ("occlusion.patch=abc", ("occlusion.patch takes int or tuple[int, int]", "'abc'")),
    ("ig.steps=3.5", ("ig.steps takes int",)),
    ("gradcam.relu=1", ("gradcam.relu takes bool",)),
    ("occlusion.return_raw=true", ("has no option 'return_raw'",)),
    ("occ.patch=3", ("Unknown attribution method 'occ'", "occlusion")),
    ("occlusionpatch=3", ("must look like METHOD.OPTION=VALUE",)),
    ("occlusion.patch", ("must look like METHOD.OPTION=VALUE",)),
])
def test_attribute_bad_option(capsys, tmp_path, no_model, option, needles):
    _fails(capsys, ["attribute", "--option", option, "--out", str(tmp_path / "o")], *needles)


def test_attribute_bad_option_from_python(tmp_path, no_model):
    from lucidax.attribute import AttributeJob, run_attribute

    with pytest.raises(ValueError, match="did you mean 'patch'"):
        run_attribute(AttributeJob("starter", options={"occlusion": {"patchsize": 3}},
                                   out=tmp_path / "o"))


def test_attribute_good_options_pass():
    from lucidax.attribute import parse_options

    assert parse_options(["occlusion.patch=[4,4]", "ig.steps=8", "lime.baseline=blur",
                          "gradcam.relu=false", "random.key=3"]) == {
        "occlusion": {"patch": [4, 4]}, "ig": {"steps": 8}, "lime": {"baseline": "blur"},
        "gradcam": {"relu": False}, "random": {"key": 3}}


# --- row 4: .npz / .npy that are not NumPy files -------------------------------------------------
def test_gallery_random_bytes_dataset(capsys, tmp_path, no_model):
    bad = _corrupt(tmp_path / "bad.npz")
    line = _fails(capsys, [*(["gallery"] + COMMANDS["gallery"]), "--dataset", bad,
                           "--out", str(tmp_path / "o")],
                  f"cannot read {bad!r} as .npz/.npy", "not a NumPy .npy/.npz file",
                  "expected a .npy array [N, H, W, C] in [0, 1]")
    assert "pickle" not in line


@pytest.mark.parametrize("name", ["bad.npy", "bad.npz"])
def test_attribute_random_bytes_array(capsys, tmp_path, no_model, name):
    bad = _corrupt(tmp_path / name)
    line = _fails(capsys, ["attribute", "--images", bad, "--out", str(tmp_path / "o")],
                  f"cannot read {bad!r} as .npz/.npy", "expected an array [N, H, W, C]")
    assert "pickle" not in line


def test_attribute_npy_out_of_range(capsys, tmp_path, no_model):
    p = tmp_path / "x.npy"
    np.save(p, np.full((1, 8, 8, 3), 7.0, np.float32))
    _fails(capsys, ["attribute", "--images", str(p), "--out", str(tmp_path / "o")],
           "in [0, 1]", "7")


def test_load_array(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros((2, 3)))
    np.savez(tmp_path / "b.npz", images=np.ones(2))
    assert _files.load_array(tmp_path / "a.npy").shape == (2, 3)
    assert list(_files.load_array(tmp_path / "b.npz")) == ["images"]
    np.save(tmp_path / "o.npy", np.array([{"x": 1}], dtype=object))
    with pytest.raises(ValueError, match="cannot read .*o.npy.* as .npz/.npy") as e:
        _files.load_array(tmp_path / "o.npy")
    assert "allow_pickle" not in str(e.value)


# --- row 5: messages name CLI flags, not Python arguments --------------------------------------
def test_probe_without_target_names_the_flag(capsys, tmp_path, monkeypatch):
    from lucidax.models import starter

    def dataset(*a, **k):
        raise AssertionError("the data was made before --target was checked")

    monkeypatch.setattr(starter, "dataset", dataset)
    line = _fails(capsys, ["probe", "--quiet", "--out", str(tmp_path / "o")],
                  "choose one with --target", "valid targets: digit, color, background, "
                                              "position, size")
    assert "target_name" not in line
    monkeypatch.undo()  # a given target is checked against the data's families once made
    _fails(capsys, ["probe", "--target", "digt", "--n", "4", "--quiet",
                    "--out", str(tmp_path / "o")], "--target", "Did you mean 'digit'?")


def test_probe_library_still_names_the_python_argument():
    from lucidax.probes import resolve_target

    feats = type("F", (), {"labels": {"a": np.zeros(2), "b": np.zeros(2)}, "label_names": {},
                           "n_seen": 2, "index": np.arange(2)})()
    with pytest.raises(ValueError, match="target_name="):
        resolve_target(feats, None, None, None)


# --- row 6: models --json ------------------------------------------------------------------------
def test_models_json_lists_the_zoo(capsys, no_model):
    assert main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == lucidax.models.list_models()
    starter = next(r for r in rows if r["name"] == "starter")
    assert starter["side"] == 64 and starter["weights"] == "shipped"
    assert starter["weights_available"] is True and starter["description"]
    assert {r["weights"] for r in rows} <= {"shipped", "package", "random"}


# --- row 7: sizes --------------------------------------------------------------------------------
@pytest.mark.parametrize("argv,needle", [
    (["render", "--steps", "0"], "--steps must be an integer >= 1; got 0"),
    (["render", "--size", "-5"], "--size must be an integer >= 1; got -5"),
    (["render", "--size", "0"], "--size must be an integer >= 1; got 0"),
    (["render", "--batch-size", "0"], "--batch-size must be an integer >= 1"),
    (["render", "--learning-rate", "0"], "--learning-rate must be > 0"),
    (["render", "--units", "3-1"], "the end is before the start"),
    (["invert", "--layers", "conv1", "--steps", "-1"], "--steps must be an integer >= 1"),
    (["invert", "--layers", "conv1", "--size", "0"], "--size must be an integer >= 1"),
    (["invert", "--layers", "conv1", "--scale", "0"], "--scale must be an integer >= 1"),
    (["invert", "--layers", "conv1", "--jitter", "-1"], "--jitter must be an integer >= 0"),
    (["probe", "--n", "0"], "--n must be an integer >= 1; got 0"),
    (["probe", "--batch-size", "0"], "--batch-size must be an integer >= 1"),
    (["probe", "--folds", "1"], "--folds must be an integer >= 2"),
    (["probe", "--test-size", "1.5"], "--test-size must be a share in (0, 1)"),
    (["tcav", "--concepts", "color:red", "--class", "3", "--runs", "0"],
     "--runs must be an integer >= 2"),
    (["tcav", "--concepts", "color:red", "--class", "3", "--batch-size", "0"],
     "--batch-size must be an integer >= 1"),
    (["tcav", "--concepts", "color:red", "--class", "3", "--n-targets", "0"],
     "--n-targets must be an integer >= 1"),
    (["tcav", "--concepts", "color:red", "--class", "3", "--alpha", "2"],
     "--alpha must be in (0, 1)"),
    (["dissect", "--n", "0"], "--n must be an integer >= 1"),
    (["dissect", "--batch-size", "0"], "--batch-size must be an integer >= 1"),
    (["dissect", "--size", "0"], "--size must be an integer >= 1"),
    (["dissect", "--quantile", "0"], "--quantile must be in (0, 1)"),
    (["dissect", "--iou-threshold", "2"], "--iou-threshold must be in [0, 1]"),
    (["attribute", "--n", "0"], "--n must be an integer >= 1"),
    (["attribute", "--steps", "0"], "--steps must be an integer >= 1"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_bad_sizes_fail_before_the_model_loads(capsys, tmp_path, no_model, argv, needle):
    _fails(capsys, [*argv, "--out", str(tmp_path / "o")], needle)
    assert not (tmp_path / "o").exists()
