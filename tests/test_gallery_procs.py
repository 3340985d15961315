"""lucidax.gallery across processes: resume after SIGKILL, 2 processes == 1 process.

Uses lucidax.visualize.render when it is importable (else a deterministic stand-in).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import imageio.v3 as iio
import pytest
from test_gallery_support import RUNNER, render_fns, tiny_dataset, tiny_model

from lucidax.gallery import GalleryConfig
from lucidax.gallery._build import _build

TESTS = str(Path(__file__).resolve().parent)
SETTINGS = {"steps": 12, "size": 32, "variants": 2, "top_k": 4, "transforms": "none"}


@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    path = tmp_path_factory.mktemp("runner") / "run_gallery.py"
    path.write_text(RUNNER.format(tests=TESTS))
    return path


def _env(**extra):
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1")
    env.pop("XLA_FLAGS", None)
    env.update(extra)
    return env


def _start(runner, cfg: dict, *, sleep=0.0, **env):
    return subprocess.Popen(
        [sys.executable, str(runner), json.dumps(cfg), str(sleep)],
        env=_env(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _done(out: Path) -> int:
    try:
        m = json.loads((out / "manifest.json").read_text())
    except (OSError, ValueError):
        return 0
    return sum(e["status"] == "done" for us in m["units"].values() for e in us.values())


def _build_here(cfg: dict):
    render, channel = render_fns()
    return _build(
        GalleryConfig(**cfg),
        progress=False,
        model=tiny_model(),
        dataset=tiny_dataset(),
        render_fn=render,
        channel_fn=channel,
    )


def test_resume_after_sigkill(runner, tmp_path):
    out = tmp_path / "g"
    cfg = {**SETTINGS, "out": str(out), "layers": "c1,c2", "batch_size": 1}
    total = 4 + 6
    proc = _start(runner, cfg, sleep=0.4)
    try:
        deadline = time.monotonic() + 120
        while _done(out) == 0:
            assert proc.poll() is None, proc.stdout.read()
            assert time.monotonic() < deadline, "no unit finished in time"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    m = json.loads((out / "manifest.json").read_text())
    done_before = {
        (layer, u): (out / e["grid"]).read_bytes()
        for layer, us in m["units"].items()
        for u, e in us.items()
        if e["status"] == "done"
    }
    assert 0 < len(done_before) < total
    assert not (out / "index.html").exists()

    report = _build_here(cfg)
    assert report.units_skipped == len(done_before)
    assert report.units_rendered == total - len(done_before)
    m = json.loads((out / "manifest.json").read_text())
    assert sum(len(us) for us in m["units"].values()) == total
    for layer, us in m["units"].items():
        for u, e in us.items():
            assert e["status"] == "done"
            assert iio.imread(out / e["grid"]).ndim == 3
            assert iio.imread(out / e["loss_png"]).ndim == 3
            if (layer, u) in done_before:  # finished units were not redone
                assert (out / e["grid"]).read_bytes() == done_before[(layer, u)]
    assert all(iio.imread(p).ndim == 3 for p in out.rglob("*.png"))
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    assert (out / "index.html").is_file()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _files(out: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(out)): p.read_bytes()
        for p in sorted(out.rglob("*"))
        if p.is_file() and not p.name.startswith("manifest")
    }


def test_two_processes_make_the_same_gallery(runner, tmp_path):
    base = {**SETTINGS, "layers": "c1,c2", "units": "0-3", "batch_size": 2}
    two = tmp_path / "two"
    cfg2 = {**base, "out": str(two), "distributed": True, "shard_timeout": 120}
    coord = f"127.0.0.1:{_free_port()}"
    procs = [
        _start(
            runner,
            cfg2,
            LUCIDAX_COORDINATOR=coord,
            LUCIDAX_NUM_PROCESSES="2",
            LUCIDAX_PROCESS_ID=str(i),
        )
        for i in range(2)
    ]
    # meanwhile, the same gallery in this process
    one = tmp_path / "one"
    report = _build_here({**base, "out": str(one)})
    assert report.units_rendered == 8
    logs = []
    for p in procs:
        try:
            logs.append(p.communicate(timeout=180)[0])
        finally:
            if p.poll() is None:
                p.kill()
    for p, log in zip(procs, logs, strict=True):
        assert p.returncode == 0, log
    reports = sorted(
        line.split()[1:] for log in logs for line in log.splitlines() if line.startswith("REPORT")
    )
    assert [r[:2] for r in reports] == [["0", "4"], ["1", "4"]]  # each rendered its half
    assert reports[0][2].endswith("index.html") and reports[1][2] == "None"

    f1, f2 = _files(one), _files(two)
    assert sorted(f1) == sorted(f2)
    assert len([k for k in f1 if k.endswith(".png")]) == 8 * 2 + 2  # grids, losses, sheets
    differ = [k for k in f1 if f1[k] != f2[k]]
    assert not differ, differ
    m1 = json.loads((one / "manifest.json").read_text())
    m2 = json.loads((two / "manifest.json").read_text())
    assert m1["fingerprint"] == m2["fingerprint"]
    assert {e["process"] for us in m2["units"].values() for e in us.values()} == {0, 1}
    assert not list(two.glob("manifest.*.json"))  # shards merged and removed
