"""The persistent compilation cache (lucidax._compile_cache): a second process loads what the
first compiled (counted with JAX's monitoring events), the environment variable and the CLI
flags move or turn it off, an unusable folder warns once and the run goes on uncached.

Every case runs in a fresh subprocess (the cache is process-wide) with ``XDG_CACHE_HOME``
in a temporary folder, so the user's own cache is never touched."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lucidax._compile_cache import ENV, _env_choice, default_compile_cache_dir

# argv[1]: JSON list of steps, each {"argv": CLI arguments} or {"job": true} (the library
# jobs' policy, enable_for_job), with optional "env" (set first; None unsets), "jax_dir" (a
# JAX cache folder set outside lucidax) and "fresh" (forget the process's earlier choice).
# After each step a tiny program of its own is compiled; per step: cache events and state.
DRIVER = r"""
import json, os, sys, warnings
import jax, jax.numpy as jnp
from jax import monitoring
from lucidax import _compile_cache
from lucidax.cli import main
counts = {}
monitoring.register_event_listener(lambda e, **k: counts.__setitem__(e, counts.get(e, 0) + 1))
hit, miss = "/jax/compilation_cache/cache_hits", "/jax/compilation_cache/cache_misses"
for i, step in enumerate(json.loads(sys.argv[1])):
    for k, v in step.get("env", {}).items():
        os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    if step.get("fresh"):
        _compile_cache._state.update(path=None, source=None, decided=False)
    if "jax_dir" in step:
        jax.config.update("jax_compilation_cache_dir", step["jax_dir"])
    before = dict(counts)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if "argv" in step:
            rc = main(step["argv"])
        else:
            rc = _compile_cache.enable_for_job() != _compile_cache.enable_for_job()  # 0: same
        if step.get("jit", True):
            float(jax.jit(lambda x: jnp.sin(x) * (3 + i) + 1)(jnp.float32(0.5)))
    print(json.dumps({"rc": rc, "info": _compile_cache.compile_cache_info(),
                      "hits": counts.get(hit, 0) - before.get(hit, 0),
                      "misses": counts.get(miss, 0) - before.get(miss, 0),
                      "warnings": [f"{w.category.__name__}: {w.message}" for w in caught]}))
"""


def _run(tmp_path: Path, steps: list[dict], **env: str) -> list[dict]:
    full = {k: v for k, v in os.environ.items()
            if k not in (ENV, "JAX_COMPILATION_CACHE_DIR")}
    full.update({"XDG_CACHE_HOME": str(tmp_path / "xdg"), "JAX_PLATFORMS": "cpu"})
    full.update(env)
    res = subprocess.run([sys.executable, "-c", DRIVER, json.dumps(steps)],
                         capture_output=True, text=True, env=full, cwd=tmp_path, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    out = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    assert len(out) == len(steps), res.stdout
    return out


def _entries(folder: Path) -> list[Path]:
    return sorted(folder.glob("*-cache"))


def test_second_process_hits_the_cache(tmp_path):
    """The same lucidax program (a starter render through the CLI) in a second process with
    the same cache folder: loaded from the cache, not compiled."""
    cache = tmp_path / "cc"
    render = ["--compile-cache", str(cache), "render", "--model", "starter", "--layer",
              "conv2", "--units", "0", "--steps", "2", "--size", "32", "--quiet"]
    [cold] = _run(tmp_path, [{"argv": [*render, "--out", "a"], "jit": False}])
    assert cold["rc"] == 0 and cold["info"]["enabled"]
    assert cold["info"]["path"] == str(cache) and cold["info"]["source"] == "argument"
    assert cold["misses"] >= 3 and cold["hits"] == 0  # compiled, and written
    written = _entries(cache)
    assert len(written) >= cold["misses"]
    [warm] = _run(tmp_path, [{"argv": [*render, "--out", "b"], "jit": False}])
    assert warm["rc"] == 0
    # the fresh process loads what the first compiled instead of compiling it
    assert warm["hits"] >= cold["misses"] - 1 and warm["misses"] <= 1, (cold, warm)
    assert _entries(cache) == written
    assert (tmp_path / "b" / "conv2" / "0000.png").is_file()
    assert not (tmp_path / "xdg").exists()  # the given folder, not the default


def test_folders_flags_env_and_jobs(tmp_path):
    folder = tmp_path / "xdg" / "lucidax" / "jax-compile"
    (tmp_path / "a-file").write_text("not a folder")
    env_dir, flag_dir, own = tmp_path / "env", tmp_path / "flag", tmp_path / "jax-own"
    steps = [
        # 0: the CLI's default: the user's cache folder
        {"argv": ["models"]},
        # 1: the environment variable moves it; 2: --compile-cache beats the variable
        {"argv": ["models"], "env": {ENV: str(env_dir)}},
        {"argv": ["--compile-cache", str(flag_dir), "models"]},
        # 3: --no-compile-cache turns it off; 4: so does the variable's off value
        {"argv": ["--no-compile-cache", "models"]},
        {"argv": ["models"], "env": {ENV: "off"}},
        # 5: a library job respects the off value; 6: ... and a JAX folder set outside
        {"job": True, "fresh": True},
        {"job": True, "fresh": True, "env": {ENV: None}, "jax_dir": str(own)},
        # 7: a job with nothing decided: on, in the environment variable's folder
        {"job": True, "fresh": True, "env": {ENV: str(env_dir)}, "jax_dir": None},
        # 8: a folder that cannot be made: one warning, the run goes on uncached
        {"argv": ["--compile-cache", str(tmp_path / "a-file" / "cache"), "models"]},
    ]
    r = _run(tmp_path, steps)
    assert all(s["rc"] == 0 for s in r)
    assert r[0]["info"] == {"enabled": True, "path": str(folder), "source": "default",
                            "default": str(folder)}
    assert r[0]["misses"] >= 1 and len(_entries(folder)) >= 1
    assert r[1]["info"]["path"] == str(env_dir) and r[1]["info"]["source"] == "env"
    assert r[2]["info"]["path"] == str(flag_dir) and r[2]["info"]["source"] == "argument"
    for s in (r[1], r[2], r[7]):
        assert s["misses"] >= 1 and s["hits"] == 0
    assert len(_entries(flag_dir)) >= 1
    assert r[3]["info"]["enabled"] is False and r[3]["info"]["source"] == "disabled"
    assert r[4]["info"]["enabled"] is False and r[4]["info"]["source"] == "env-disabled"
    assert r[5]["info"]["enabled"] is False and r[5]["info"]["source"] == "env-disabled"
    assert r[6]["info"]["path"] == str(own) and r[6]["info"]["source"] == "jax"
    assert r[7]["info"]["path"] == str(env_dir) and r[7]["info"]["source"] == "env"
    assert len(_entries(env_dir)) >= 2  # steps 1 and 7
    for s in r[3:6] + r[8:]:
        assert s["hits"] == s["misses"] == 0, s
    assert r[8]["info"]["enabled"] is False and r[8]["info"]["source"] == "unwritable"
    msgs = [w for w in r[8]["warnings"] if "CompileCacheWarning" in w]
    assert len(msgs) == 1 and "cannot be used" in msgs[0], r[8]["warnings"]
    assert all("CompileCacheWarning" not in w for s in r[:8] for w in s["warnings"])


@pytest.mark.parametrize("value", ["0", "off", "None", "", " NO ", "false"])
def test_env_off_values(monkeypatch, value):
    monkeypatch.setenv(ENV, value)
    assert _env_choice() == (None, "env-disabled")
    monkeypatch.setenv(ENV, "/some/folder")
    assert _env_choice() == ("/some/folder", "env")
    monkeypatch.delenv(ENV)
    assert _env_choice() is None


@pytest.mark.parametrize("platform,env,expected", [
    ("linux", {"XDG_CACHE_HOME": "/x/cache"}, "/x/cache/lucidax/jax-compile"),
    ("linux", {}, "~/.cache/lucidax/jax-compile"),
    ("darwin", {}, "~/Library/Caches/lucidax/jax-compile"),
])
def test_default_dir_per_platform(monkeypatch, platform, env, expected):
    monkeypatch.setattr(sys, "platform", platform)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert default_compile_cache_dir() == Path(os.path.expanduser(expected))

