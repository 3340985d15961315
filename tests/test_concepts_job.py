"""``lucidax concepts`` end to end on the starter model: files, pages, resume, importance,
renders against natural images, bad input, the gallery link."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from lucidax.cli import main
from lucidax.concepts import ConceptsJob, crop_at, heatmaps, run_concepts, top_examples

SMALL = {"model": "starter", "layers": "conv4", "n": 48, "k": 4, "steps": 64,
         "top": 4, "heatmaps": 2, "batch_size": 16, "iterations": 60}


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("concepts")
    job = ConceptsJob(**SMALL, target_class="3", importance_images=2, designs=4,
                      out=str(out))
    return job, run_concepts(job, progress=False)


def test_run_writes_every_concept_and_page(first_run):
    job, run = first_run
    (layer,) = run.layers
    folder = layer.folder
    assert layer.factorization.W.shape == (4, 96)
    assert layer.factorization.method == "nmf"
    for c in range(job.k):
        for sub in ("renders", "crops", "heatmaps"):
            assert os.path.getsize(os.path.join(folder, sub, f"{c:02d}.png")) > 0
    for name in ("index.html", "class-3.html", "concepts.json", "factorization.npz",
                 "renders.png", "importance-3.json", "state.json"):
        assert os.path.isfile(os.path.join(folder, name)), name
    assert os.path.isfile(os.path.join(run.out, "index.html"))
    page = open(os.path.join(folder, "index.html")).read()
    assert page.count('<tr id="concept-') == job.k
    summary = json.load(open(os.path.join(folder, "concepts.json")))
    assert len(summary["concepts"]) == job.k
    assert "conv4" in run.table


def test_class_page_orders_concepts_by_sobol_importance(first_run):
    _, run = first_run
    (layer,) = run.layers
    imp = layer.importance
    assert imp["class"] == 3 and imp["label"] == "3"
    ranking = imp["sobol"]["ranking"]
    assert sorted(ranking) == list(range(4))
    page = open(os.path.join(layer.folder, "class-3.html")).read()
    positions = [page.index(f'id="concept-{c}"') for c in ranking]
    assert positions == sorted(positions)
    assert "spearman" in page


def test_renders_drive_their_direction_above_natural_images(first_run):
    _, run = first_run
    gains = [c["render_gain_vs_natural_max"] for c in run.layers[0].concepts]
    assert all(g is not None for g in gains)
    # a concept's render activates its direction well above the best natural image
    assert np.median(gains) > 1.5, gains


def test_second_run_resumes_every_stage(first_run):
    job, run = first_run
    folder = run.layers[0].folder
    stamps = {f: os.stat(os.path.join(folder, f)).st_mtime_ns
              for f in ("factorization.npz", "renders.json", "importance-3.json")}
    again = run_concepts(job, progress=False)
    assert {f: os.stat(os.path.join(folder, f)).st_mtime_ns for f in stamps} == stamps
    np.testing.assert_array_equal(again.layers[0].factorization.W, run.layers[0].factorization.W)


def test_changed_render_settings_redo_only_the_renders(first_run, tmp_path):
    job, run = first_run
    folder = run.layers[0].folder
    fact = os.stat(os.path.join(folder, "factorization.npz")).st_mtime_ns
    rend = os.stat(os.path.join(folder, "renders.json")).st_mtime_ns
    import dataclasses

    run_concepts(dataclasses.replace(job, steps=job.steps + 1, target_class=None),
                 progress=False)
    assert os.stat(os.path.join(folder, "factorization.npz")).st_mtime_ns == fact
    assert os.stat(os.path.join(folder, "renders.json")).st_mtime_ns != rend
    assert json.load(open(os.path.join(folder, "renders.json")))["steps"] == job.steps + 1


def test_top_examples_and_crops():
    codes = np.zeros((5, 3, 3, 2), np.float32)
    codes[2, 1, 2, 0] = 5.0
    codes[4, 0, 0, 0] = 3.0
    codes[0, 2, 1, 1] = 1.0
    ex = top_examples(codes, top=2)
    assert ex.image[0].tolist() == [2, 4]
    assert ex.position[0].tolist() == [[1, 2], [0, 0]]
    assert ex.value[0].tolist() == [5.0, 3.0]
    assert ex.image[1][0] == 0
    img = np.zeros((30, 30, 3), np.float32)
    img[10:20, 20:30] = 1.0  # cell (1, 2) of a 3 x 3 grid
    crop = crop_at(img, (1, 2), (3, 3), context=1.0, side=10)
    assert crop.shape == (10, 10, 3) and crop.mean() > 0.95
    maps = heatmaps(codes[[2, 4], :, :, 0], 12)
    assert maps.shape == (2, 12, 12) and maps.max() == pytest.approx(1.0)


def test_cli_runs_and_prints_where_it_wrote(tmp_path, capsys):
    out = tmp_path / "c"
    args = ["concepts", "--model", "starter", "--layers", "conv4", "--n", "48", "--k", "4",
            "--steps", "8", "--size", "32", "--top", "3", "--heatmaps", "1",
            "--iterations", "40", "--out", str(out), "--quiet"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "conv4: 4 concepts (nmf" in text and "index:" in text
    assert (out / "conv4" / "index.html").is_file()


@pytest.mark.parametrize("flags, message", [
    (["--k", "0"], "--k"),
    (["--stability", "1"], "at least 2 seeds"),
    (["--stability-methods", "nmf,ica"], "ica"),
    (["--class", "cat"], "class label"),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, flags, message):
    out = tmp_path / "never"
    code = main(["concepts", "--model", "starter", "--layers", "conv4", "--n", "16",
                 "--out", str(out), "--quiet", *flags])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("lucidax concepts: error:") and message in err
    assert len(err.strip().splitlines()) == 1
    assert not (out / "conv4").exists()


def test_nmf_on_a_signed_layer_says_what_to_use(tmp_path, capsys):
    code = main(["concepts", "--model", "starter", "--layers", "conv4_pre_relu", "--n", "16",
                 "--k", "2", "--out", str(tmp_path / "o"), "--quiet"])
    assert code == 2
    err = capsys.readouterr().err
    assert "non-negative" in err or "negative" in err


def test_gallery_links_the_concepts_page(first_run, tmp_path):
    from lucidax.gallery._site import analysis_dirs

    gallery = tmp_path / "g"
    (gallery / "concepts").mkdir(parents=True)
    (gallery / "concepts" / "index.html").write_text("<html></html>")
    assert "concepts" in analysis_dirs(gallery)


def test_dry_run_plans_without_writing(first_run, tmp_path, capsys):
    job, run = first_run
    # a resumed run: the plan names the stages already done
    assert main(["concepts", "--model", "starter", "--layers", "conv4", "--n", "48",
                 "--k", "4", "--out", run.out, "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "conv4: activations (8, 8, 96) -> 3,072 rows x 96 channels" in text
    assert "factorization" in text and "renders" in text
    fresh = tmp_path / "plan"
    assert main(["concepts", "--model", "starter", "--out", str(fresh), "--dry-run"]) == 0
    assert "conv5" in capsys.readouterr().out  # the deepest conv layer by default
    assert not fresh.exists()
    assert main(["concepts", "--model", "starter", "--data", "builtin:photos:nowhere",
                 "--out", str(fresh), "--dry-run"]) == 2


def test_pages_escape_names_and_quote_links(tmp_path):
    from types import SimpleNamespace

    from lucidax.concepts._page import write_pages
    from lucidax.concepts._stages import layer_dir_name

    evil = '<script>alert("x")</script> a/b'
    folder = tmp_path / layer_dir_name(evil)
    folder.mkdir()
    fact = SimpleNamespace(method="nmf", error=0.5, l0=1.0, seconds=0.1)
    concept = {"share": 0.5, "frequency": 0.5, "render_gain_vs_natural_max": 2.0}
    imp = {"class": 1, "label": "<img src=x onerror=alert(1)>", "images": [0],
           "sobol": {"ranking": [0], "mean": [0.3]}, "gradient": {"mean": [1.0]},
           "agreement": {"spearman": 1.0}, "seconds": {"sobol": 1.0}}
    layer = SimpleNamespace(layer=evil, factorization=fact, concepts=[concept],
                            importance=imp, stability=None, folder=str(folder))
    files = write_pages(str(tmp_path), [layer], meta={"model": "<b>m</b>"})
    assert "/" not in os.path.basename(str(folder)) and ".." not in str(folder.name)
    for path in files.values():
        html = open(path).read()
        assert "<script>" not in html and "<img src=x" not in html and "<b>m</b>" not in html
    index = open(files["index"]).read()
    assert "&lt;script&gt;" in index
    assert 'href="%3Cscript%3E' not in index  # the folder name is sanitized, then quoted
