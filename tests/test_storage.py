"""Output to an fsspec URL (lucidax/_storage.py): gallery and ``lucidax render`` to
``memory://`` and ``file://`` roots, resume after SIGKILL and 2 processes through a ``file://``
root only (each process with its own staging folder), unsafe keys, the ``--out`` help."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import fsspec
import imageio.v3 as iio
import pytest
from test_gallery_procs import (  # noqa: F401
    SETTINGS,
    _build_here,
    _free_port,
    _start,
    finish_all,
    kill_after_first_unit,
    runner,
)
from test_gallery_support import tiny_model

from lucidax._storage import UnsafeKeyError, check_key, is_url, open_storage
from lucidax.cli import build_parser, main
from lucidax.gallery import GalleryConfig, plan_gallery
from lucidax.gallery._manifest import unit_done

CFG = {**SETTINGS, "layers": "c1,c2", "units": "0-3", "batch_size": 2}


@pytest.fixture(autouse=True)
def staging(tmp_path, monkeypatch):
    path = tmp_path / "staging"
    monkeypatch.setenv("LUCIDAX_STAGING", str(path))
    return path


def _url_files(url: str) -> dict[str, bytes]:
    """``{key: bytes}`` of every file under ``url`` except the manifests."""
    fs, root = fsspec.core.url_to_fs(url)
    root = root.rstrip("/")
    return {
        p[len(root) + 1:]: fs.cat_file(p)
        for p in sorted(fs.find(root))
        if not p.rsplit("/", 1)[-1].startswith("manifest")
    }


def _local_files(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and not p.name.startswith("manifest")}


def _manifest(url: str) -> dict:
    with fsspec.open(url.rstrip("/") + "/manifest.json", "r") as f:
        return json.load(f)


@pytest.fixture(scope="module")
def local_gallery(tmp_path_factory):
    out = tmp_path_factory.mktemp("local") / "g"
    _build_here({**CFG, "out": str(out)})
    return out


@pytest.mark.parametrize("scheme", ["memory", "file"])
def test_gallery_to_url_same_as_local(scheme, local_gallery, tmp_path, staging):
    url = (f"memory://lucidax-test-{uuid.uuid4().hex}/g" if scheme == "memory"
           else f"file://{tmp_path}/root/g")
    report = _build_here({**CFG, "out": url})
    assert report.out == url and report.index == f"{url}/index.html"
    assert report.manifest == f"{url}/manifest.json"
    assert report.units_rendered == 8
    got, want = _url_files(url), _local_files(local_gallery)
    assert sorted(got) == sorted(want)
    assert [k for k in want if got[k] != want[k]] == []
    m = _manifest(url)
    assert m["fingerprint"] == json.loads((local_gallery / "manifest.json").read_text())[
        "fingerprint"]
    assert sum(len(us) for us in m["units"].values()) == 8
    assert not any(staging.iterdir())  # the staging folder went away
    # the same call again resumes from the URL alone: nothing to render
    again = _build_here({**CFG, "out": url})
    assert (again.units_rendered, again.units_skipped) == (0, 8)
    assert _url_files(url) == got
    plan = plan_gallery(GalleryConfig(**CFG, out=url), model=tiny_model())  # --dry-run
    assert plan.done == 8 and f"{url}/manifest.json" in plan.summary()


def _url_done(root: Path) -> int:
    try:
        m = json.loads((root / "manifest.json").read_text())
    except (OSError, ValueError):
        return 0
    return sum(e["status"] == "done" for us in m["units"].values() for e in us.values())


def test_resume_after_sigkill_through_file_url(runner, tmp_path):  # noqa: F811
    root = tmp_path / "root" / "g"  # reached by the processes only as a file:// URL
    url = f"file://{root}"
    cfg = {**CFG, "out": url, "batch_size": 1, "units": "all"}
    total = 4 + 6
    proc = _start(runner, cfg, sleep=0.4, LUCIDAX_STAGING=str(tmp_path / "stage-killed"))
    kill_after_first_unit(proc, lambda: _url_done(root))
    m = json.loads((root / "manifest.json").read_text())
    done_before = {(layer, u): (root / e["grid"]).read_bytes()
                   for layer, us in m["units"].items() for u, e in us.items()
                   if e["status"] == "done"}
    assert 0 < len(done_before) < total
    assert not (root / "index.html").exists()

    report = _build_here(cfg)  # another staging folder (this test's): state only at the URL
    assert report.units_skipped == len(done_before)
    assert report.units_rendered == total - len(done_before)
    m = json.loads((root / "manifest.json").read_text())
    assert sum(len(us) for us in m["units"].values()) == total
    for layer, us in m["units"].items():
        for u, e in us.items():
            assert e["status"] == "done"
            assert iio.imread(root / e["loss_png"]).ndim == 3
            if (layer, u) in done_before:  # finished units were not redone
                assert (root / e["grid"]).read_bytes() == done_before[(layer, u)]
    assert all(iio.imread(p).ndim == 3 for p in root.rglob("*.png"))
    assert not [p for p in root.rglob("*") if p.name.endswith(".tmp")]
    assert (root / "index.html").is_file()


def test_two_processes_through_file_url(runner, local_gallery, tmp_path):  # noqa: F811
    root = tmp_path / "root" / "two"
    url = f"file://{root}"
    cfg = {**CFG, "out": url, "distributed": True, "shard_timeout": 120}
    coord = f"127.0.0.1:{_free_port()}"
    procs = [_start(runner, cfg, LUCIDAX_COORDINATOR=coord, LUCIDAX_NUM_PROCESSES="2",
                    LUCIDAX_PROCESS_ID=str(i), LUCIDAX_STAGING=str(tmp_path / f"stage{i}"))
             for i in range(2)]
    reports = finish_all(procs, 180)
    assert sum(int(r[1]) for r in reports) == 8
    assert reports[0][2] == f"{url}/index.html" and reports[1][2] == "None"
    got, want = _url_files(url), _local_files(local_gallery)
    assert sorted(got) == sorted(want)
    assert [k for k in want if got[k] != want[k]] == []
    m = _manifest(url)
    assert sum(len(us) for us in m["units"].values()) == 8
    assert not list(root.glob("manifest.*.json"))  # shards merged and removed at the URL
    assert not list((tmp_path / "stage0").glob("*/*")) and not list(
        (tmp_path / "stage1").glob("*/*"))


RENDER = ["render", "--model", "starter", "--layer", "conv2", "--units", "0,2",
          "--steps", "8", "--size", "32", "--quiet"]


def test_render_command_to_urls(tmp_path, capsys, staging):
    local = tmp_path / "local"
    assert main([*RENDER, "--out", str(local)]) == 0
    want = _local_files(local)
    want.pop("conv2/render.json")  # names the output folder and a time
    for url in (f"memory://lucidax-test-{uuid.uuid4().hex}/r", f"file://{tmp_path}/root/r"):
        capsys.readouterr()
        assert main([*RENDER, "--out", url]) == 0
        assert f"-> {url}/conv2.png" in capsys.readouterr().out
        got = _url_files(url)
        assert sorted(got) == sorted([*want, "conv2/render.json"])
        assert [k for k in want if got[k] != want[k]] == []
        summary = json.loads(got["conv2/render.json"])
        assert [r["unit"] for r in summary["units"]] == [0, 2]
    assert not any(staging.iterdir())


def test_concepts_to_a_url_resume_from_it(tmp_path, staging):
    """An analysis command to memory:// and file://: its pages and stages land at the URL, and
    a second run in another staging folder resumes from what is there (no stage redone)."""
    from lucidax.concepts import ConceptsJob, run_concepts

    for url in (f"memory://lucidax-test-{uuid.uuid4().hex}/c", f"file://{tmp_path}/root/c"):
        job = ConceptsJob(model="starter", layers="conv4", n=32, k=3, steps=4, top=2,
                          heatmaps=1, iterations=20, out=url)
        run = run_concepts(job, progress=False)
        assert run.out == url
        got = _url_files(url)
        for key in ("index.html", "conv4/index.html", "conv4/factorization.npz",
                    "conv4/state.json", "conv4/renders/00.png", "conv4/crops/02.png"):
            assert key in got, key
        assert not any(staging.iterdir())
        again = run_concepts(job, progress=False)
        assert _url_files(url)["conv4/factorization.npz"] == got["conv4/factorization.npz"]
        assert _url_files(url)["conv4/renders.json"] == got["conv4/renders.json"]
        assert again.layers[0].factorization.W.tolist() == run.layers[0].factorization.W.tolist()


def test_unsafe_keys_are_refused(tmp_path):
    for bad in ("../x.png", "/etc/passwd", "a/../../b", "a//b", "./a", "a\\b", "", "a\x00"):
        with pytest.raises(UnsafeKeyError):
            check_key(bad)
    assert check_key("layer/0.png") == "layer/0.png"
    s = open_storage(f"memory://lucidax-test-{uuid.uuid4().hex}/g")
    (s.local / "ok.txt").write_text("x")
    with pytest.raises(UnsafeKeyError):
        s.publish(["../ok.txt"])
    with pytest.raises(UnsafeKeyError):
        s.url_of("../index.html")
    assert s.publish(["ok.txt"]) == ["ok.txt"] and s.listing() == {"ok.txt": 1}
    s.close()
    entry = {"status": "done", "grid": "../c1/0.png", "loss_png": "c1/0_loss.png"}
    assert not unit_done(tmp_path, entry, {"../c1/0.png": 5, "c1/0_loss.png": 5})
    assert unit_done(tmp_path, {**entry, "grid": "c1/0.png"},
                     {"c1/0.png": 5, "c1/0_loss.png": 5})
    assert not unit_done(tmp_path, {**entry, "grid": "c1/0.png"}, {"c1/0_loss.png": 5})


def test_bad_urls_fail_in_one_line(capsys):
    assert is_url("gs://b/x") and is_url("file:///tmp/x") and not is_url("/tmp/x")
    assert main([*RENDER, "--out", "nosuchproto://x/y"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("lucidax render: error: --out 'nosuchproto://x/y': cannot open")
    assert len(err.splitlines()) == 1


def test_out_help_mentions_urls():
    sub = build_parser()._subparsers._group_actions[0].choices
    for name in ("gallery", "render", "probe", "tcav", "dissect", "attribute", "invert",
                 "concepts"):
        [action] = [a for a in sub[name]._actions if a.dest == "out"]
        assert "fsspec URL" in action.help and "gs://" in action.help, (name, action.help)
