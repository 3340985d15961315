"""lucidax.gallery across processes: resume after SIGKILL, 2 processes == 1 process, uneven
work shared out so both processes stay busy to the end; cost estimates, LPT, claim queues.

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


def kill_after_first_unit(proc, count_done) -> None:
    """SIGKILL ``proc`` as soon as ``count_done()`` sees a finished unit."""
    try:
        deadline = time.monotonic() + 120
        while count_done() == 0:
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


def finish_all(procs, timeout: float) -> list[list[str]]:
    """Wait for every process, check each exited 0, and return the sorted ``REPORT`` lines
    (split into words, without the tag) of all of them."""
    logs = []
    for p in procs:
        try:
            logs.append(p.communicate(timeout=timeout)[0])
        finally:
            if p.poll() is None:
                p.kill()
    for p, log in zip(procs, logs, strict=True):
        assert p.returncode == 0, log
    return sorted(line.split()[1:] for log in logs for line in log.splitlines()
                  if line.startswith("REPORT"))


def test_resume_after_sigkill(runner, tmp_path):
    out = tmp_path / "g"
    cfg = {**SETTINGS, "out": str(out), "layers": "c1,c2", "batch_size": 1}
    total = 4 + 6
    proc = _start(runner, cfg, sleep=0.4)
    kill_after_first_unit(proc, lambda: _done(out))
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
    reports = finish_all(procs, 180)
    # batches are claimed from a shared queue: both worked, every unit rendered once
    assert [r[0] for r in reports] == ["0", "1"] and sum(int(r[1]) for r in reports) == 8
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


# ---- uneven work: a shared queue keeps both processes busy until the end

UNEVEN_RUNNER = """
import json, sys, time
sys.path.insert(0, {tests!r})
from lucidax.gallery import GalleryConfig, init_distributed
from lucidax.gallery._build import _build
from test_gallery_support import fake_channel, fake_render, tiny_dataset, tiny_model

cfg = GalleryConfig(**json.loads(sys.argv[1]))
slow, fast = float(sys.argv[2]), float(sys.argv[3])
init_distributed(cfg)  # before the model touches jax


def render(model, params, objective, **kw):  # c2's even units are slow, the rest fast
    _, layer, units = objective
    time.sleep(slow if layer == "c2" and units[0] % 2 == 0 else fast)
    return fake_render(model, params, objective, **kw)


r = _build(cfg, progress=False, model=tiny_model(), dataset=tiny_dataset(), render_fn=render,
           channel_fn=fake_channel)
print("REPORT", r.process_id, r.units_rendered, r.units_skipped)
"""


def test_uneven_plan_keeps_both_processes_busy(tmp_path):
    """10 one-unit batches; the 3 slow ones (c2 units 0, 2, 4) are exactly those the old
    round-robin split (batch index % 2) gave to process 0 alone. Claimed from the shared
    queue, the processes finish within one batch of each other."""
    slow, fast = 1.0, 0.05
    runner = tmp_path / "run_uneven.py"
    runner.write_text(UNEVEN_RUNNER.format(tests=TESTS))
    out = tmp_path / "g"
    cfg = {**SETTINGS, "out": str(out), "layers": "c1,c2", "batch_size": 1,
           "distributed": True, "shard_timeout": 120}
    coord = f"127.0.0.1:{_free_port()}"
    procs = [
        subprocess.Popen(
            [sys.executable, str(runner), json.dumps(cfg), str(slow), str(fast)],
            env=_env(LUCIDAX_COORDINATOR=coord, LUCIDAX_NUM_PROCESSES="2",
                     LUCIDAX_PROCESS_ID=str(i)),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for i in range(2)
    ]
    reports = finish_all(procs, 120)
    assert [r[0] for r in reports] == ["0", "1"]
    assert sum(int(r[1]) for r in reports) == 10  # every unit once, none twice

    m = json.loads((out / "manifest.json").read_text())
    entries = [(layer, int(u), e) for layer, us in m["units"].items() for u, e in us.items()]
    assert sorted((layer, u) for layer, u, _ in entries) == [
        *(("c1", u) for u in range(4)), *(("c2", u) for u in range(6))]
    assert all(e["status"] == "done" for _, _, e in entries)
    spans: dict[int, list[tuple[float, float, str]]] = {0: [], 1: []}
    for layer, u, e in entries:
        spans[e["process"]].append((e["started_at"], e["finished_at"], f"{layer}/{u}"))
    assert spans[0] and spans[1], spans
    longest = max(t1 - t0 for ss in spans.values() for t0, t1, _ in ss)
    assert longest >= slow
    last = {p: max(ss, key=lambda s: s[1]) for p, ss in spans.items()}
    late = max(last, key=lambda p: last[p][1])
    # busy until the end: the first to finish found the queue empty, so the other was in
    # its last batch then (0.5 s: claiming, shard writes, a loaded machine)
    assert last[late][1] - last[1 - late][1] < last[late][1] - last[late][0] + 0.5, spans
    slow_by = {p: sum(1 for _, _, k in ss if k in ("c2/0", "c2/2", "c2/4"))
               for p, ss in spans.items()}
    assert min(slow_by.values()) >= 1, slow_by  # round robin would give p0 all three
    for p, ss in spans.items():  # and no process waited between its batches
        ss.sort()
        gaps = [b[0] - a[1] for a, b in zip(ss, ss[1:], strict=False)]
        assert max(gaps, default=0.0) < 0.5, (p, gaps)
    assert not (out / ".claims").exists()


def test_costs_and_lpt():
    from lucidax.gallery._plan import lpt_assign, lpt_order, plan_batches, plan_costs

    model = tiny_model()
    config = GalleryConfig(out="unused", model="tiny", layers="c1,c2", batch_size=2,
                           **SETTINGS).resolved("tiny")
    batches = plan_batches({"c1": range(4), "c2": range(6)}, 2)
    costs = plan_costs(config, model, batches)
    c1 = {costs[b.index] for b in batches if b.layer == "c1"}
    c2 = {costs[b.index] for b in batches if b.layer == "c2"}
    assert len(c1) == len(c2) == 1 and c2.pop() > c1.pop()  # deeper layer costs more
    order = lpt_order(batches, costs)
    assert [b.layer for b in order] == ["c2"] * 3 + ["c1"] * 2
    assert [b.index for b in order] == [2, 3, 4, 0, 1]  # ties in plan order
    # measured seconds (a resumed gallery's time_s) win over estimates, others scaled
    known = {"c1": {"0": {"status": "done", "time_s": 5.0}, "1": {"time_s": 5.0}}}
    timed = plan_costs(config, model, batches, known)
    assert timed[0] == 10.0 and timed[2] == pytest.approx(10.0 * costs[2] / costs[0])
    assert [b.index for b in lpt_order(batches, timed)] == [2, 3, 4, 0, 1]
    shares = lpt_assign(batches, {0: 1, 1: 1, 2: 5, 3: 3, 4: 3}, 2)
    assert [[b.index for b in s] for s in shares] == [[2, 0, 1], [3, 4]]


def test_claim_files_each_batch_once(tmp_path):
    """The fallback queue (a shared folder): racing claimers take every batch exactly once."""
    import threading

    from lucidax.gallery._distributed import claim_batches
    from lucidax.gallery._plan import plan_batches

    order = plan_batches({"a": range(40)}, 1)
    got: dict[int, list[int]] = {0: [], 1: [], 2: []}

    def work(pid):
        for b in claim_batches(order, tmp_path, "run1", pid, 3, kind="files"):
            got[pid].append(b.index)
            time.sleep(0.001)

    threads = [threading.Thread(target=work, args=(p,)) for p in got]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(i for v in got.values() for i in v) == list(range(40))
    assert sum(1 for v in got.values() if v) >= 2
    static = [[b.index for b in claim_batches(order, tmp_path, "r", p, 2, kind="static",
                                              costs={i: 1.0 for i in range(40)})]
              for p in range(2)]
    assert sorted(static[0] + static[1]) == list(range(40)) and len(static[0]) == 20
