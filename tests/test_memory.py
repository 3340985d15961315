"""The memory guard (lucidax._memory): parsing, estimates, and refusals before any file."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lucidax import _memory
from lucidax.cli import build_parser, main

MEMINFO = """\
MemTotal:       24683568 kB
MemFree:        17233984 kB
MemAvailable:   22284360 kB
Buffers:          123456 kB
"""


@pytest.fixture(scope="module")
def starter():
    import lucidax.models as lm

    return lm.load("starter")


# -- what is available ------------------------------------------------------------------------
def test_parse_meminfo():
    assert _memory.parse_meminfo(MEMINFO) == 22284360 * 1024
    assert _memory.parse_meminfo("MemTotal: 1 kB\n") is None
    assert _memory.parse_meminfo("MemAvailable: oops kB\n") is None


def test_parse_cgroup_v2():
    assert _memory.parse_cgroup_v2("8589934592\n", "1073741824\n") == 7 * 1024**3
    assert _memory.parse_cgroup_v2("max\n", "1073741824\n") is None  # no limit
    assert _memory.parse_cgroup_v2("100\n", "200\n") == 0  # over the limit: nothing left
    assert _memory.parse_cgroup_v2(None, "1") is None


def test_parse_cgroup_v1():
    assert _memory.parse_cgroup_v1("4294967296\n", "1073741824\n") == 3 * 1024**3
    assert _memory.parse_cgroup_v1("9223372036854771712\n", "1\n") is None  # unlimited
    assert _memory.parse_cgroup_v1("", "1") is None


def test_available_bytes_on_this_machine():
    avail = _memory.available_bytes()
    assert avail is None or avail > 0


def test_unknown_availability_never_refuses(monkeypatch):
    monkeypatch.setattr(_memory, "available_bytes", lambda: None)
    _memory.check_memory(10**18, "anything")  # no raise
    _memory.check_memory(None, "anything", available=1)  # unknown need: no raise


def test_check_memory_message_and_override():
    with pytest.raises(_memory.InsufficientMemoryError) as e:
        _memory.check_memory(40 * 1024**3, "rendering 16 units at 100000 px",
                             available=20 * 1024**3)
    msg = str(e.value)
    assert isinstance(e.value, ValueError)
    assert "rendering 16 units at 100000 px needs about 40.0 GiB, 20.0 GiB is available" in msg
    assert "--no-memory-check" in msg and "\n" not in msg
    _memory.check_memory(40 * 1024**3, "x", available=20 * 1024**3, allowed=False)
    _memory.check_memory(17 * 1024**3, "x", available=20 * 1024**3)  # fits (under 90%)


# -- estimates --------------------------------------------------------------------------------
@settings(max_examples=15, deadline=None)
@given(size=st.integers(16, 2048), grow=st.integers(1, 512), batch=st.integers(1, 64),
       more=st.integers(1, 64))
def test_render_estimate_is_monotone(starter, size, grow, batch, more):
    est = _memory.estimate_render
    base = est(starter, "conv3", batch=batch, size=size)
    assert base is not None and base > 0
    assert est(starter, "conv3", batch=batch, size=size + grow) >= base
    assert est(starter, "conv3", batch=batch + more, size=size) >= base
    assert est(starter, "conv5", batch=batch, size=size) >= base  # deeper: more layers


@settings(max_examples=10, deadline=None)
@given(size=st.integers(16, 1024), grow=st.integers(1, 256), n=st.integers(1, 16))
def test_inversion_and_extraction_estimates_are_monotone(starter, size, grow, n):
    inv = _memory.estimate_inversion
    assert inv(starter, ["conv1", "conv3"], n_images=n, size=size + grow) >= \
        inv(starter, ["conv1", "conv3"], n_images=n, size=size)
    assert inv(starter, ["conv1", "conv3"], n_images=n + 1, size=size) >= \
        inv(starter, ["conv1", "conv3"], n_images=n, size=size)
    ext = _memory.estimate_extraction
    assert ext(starter, ["conv2"], batch=n, side=size + grow, n=100) >= \
        ext(starter, ["conv2"], batch=n, side=size, n=100)
    assert ext(starter, ["conv2"], batch=n + 1, side=size, n=100) >= \
        ext(starter, ["conv2"], batch=n, side=size, n=100)
    assert ext(starter, ["conv2"], batch=n, side=size, n=100, grid=None) >= \
        ext(starter, ["conv2"], batch=n, side=size, n=100)


def test_estimate_of_a_size_the_model_rejects_is_unknown(starter):
    assert _memory.estimate_render(starter, "conv5", batch=1, size=4, model_side=0,
                                   transforms=False) is None


# -- the commands refuse before writing anything ------------------------------------------------
def _refused(capsys, argv):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err
    assert err.startswith(f"lucidax {argv[0]}: error: ") and "needs about" in err
    return err


def test_render_refuses_a_huge_size(tmp_path, capsys):
    out = tmp_path / "r"
    err = _refused(capsys, ["render", "--model", "starter", "--size", "100000", "--steps", "1",
                            "--out", str(out), "--quiet"])
    assert "GiB" in err and "rendering 8 units at 100000 px" in err
    assert not out.exists()


def test_invert_refuses_a_huge_size(tmp_path, capsys):
    out = tmp_path / "i"
    err = _refused(capsys, ["invert", "--model", "starter", "--layers", "conv1,conv3",
                            "--size", "100000", "--out", str(out), "--quiet"])
    assert "GiB" in err and "inverting 4 images at 100000 px from 2 layers" in err
    assert not out.exists()


def test_gallery_refuses_a_huge_size_and_leaves_no_manifest(tmp_path, capsys):
    out = tmp_path / "g"
    err = _refused(capsys, ["gallery", "--model", "starter", "--layers", "conv2", "--units",
                            "0-3", "--size", "100000", "--dataset", "none", "--out", str(out),
                            "--quiet"])
    assert "GiB" in err
    assert not (out / "manifest.json").exists()
    assert not out.exists() or not os.listdir(out)


def test_probe_refuses_when_memory_is_short(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(_memory, "available_bytes", lambda: 1024**2)  # 1 MiB left
    out = tmp_path / "p"
    err = _refused(capsys, ["probe", "--model", "starter", "--layers", "conv1", "--n", "64",
                            "--target", "digit", "--out", str(out), "--quiet"])
    assert "extracting features of 64 images at 64 px from 1 layer" in err
    assert "1 MiB is available" in err
    assert not out.exists()


def test_dissect_refuses_when_memory_is_short(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(_memory, "available_bytes", lambda: 1024**2)
    out = tmp_path / "d"
    err = _refused(capsys, ["dissect", "--model", "starter", "--layers", "conv1", "--n", "32",
                            "--out", str(out), "--quiet"])
    assert "dissecting 1 layer with masks" in err
    assert not out.exists()


@pytest.mark.parametrize("command", [
    ["render"], ["invert", "--layers", "conv1"], ["gallery"], ["probe"],
    ["tcav", "--concepts", "color:red", "--class", "0"], ["dissect"],
])
def test_no_memory_check_flag_is_accepted(command):
    parser = build_parser()
    assert parser.parse_args(command).memory_check is True
    assert parser.parse_args([*command, "--no-memory-check"]).memory_check is False


def test_memory_check_stays_out_of_the_gallery_fingerprint(tmp_path):
    """A gallery made with the check resumes without it (and so galleries made before the
    field existed resume): memory_check is not a setting the fingerprint hashes."""
    import json

    from test_gallery_support import fake_channel, fake_render, tiny_dataset, tiny_model

    from lucidax.gallery import GalleryConfig
    from lucidax.gallery._build import _build

    def run(check):
        cfg = GalleryConfig(out=str(tmp_path), steps=2, size=16, variants=1, batch_size=2,
                            top_k=2, layers="c1", units="0-1", memory_check=check)
        return _build(cfg, progress=False, render_fn=fake_render, channel_fn=fake_channel,
                      model=tiny_model(), dataset=tiny_dataset())

    first = run(True)
    fingerprint = json.loads((tmp_path / "manifest.json").read_text())["fingerprint"]
    again = run(False)
    assert first.units_rendered == 2 and again.units_skipped == 2
    assert json.loads((tmp_path / "manifest.json").read_text())["fingerprint"] == fingerprint
