"""Shared helpers for the gallery tests (a tiny model, a fake renderer); no tests here.

Also imported by the subprocesses the tests start (resume after SIGKILL, 2 processes).
"""

from __future__ import annotations

import types

import jax
import jax.numpy as jnp
import numpy as np

from lucidax.models import InputSpec, wrap

SIDE = 32
XSS = "<script>alert(1)</script>"


def _conv(x, w):
    return jax.lax.conv_general_dilated(
        x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )


def _apply(params, x, layers):
    out = {}
    h = jax.nn.relu(_conv(x - 0.5, params["c1"]))
    out["c1"] = h
    if set(layers) <= set(out):
        return out
    h = jax.lax.reduce_window(h, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
    h = jax.nn.relu(_conv(h, params["c2"]))
    out["c2"] = h
    if set(layers) <= set(out):
        return out
    out["logits"] = h.mean(axis=(1, 2)) @ params["w"]
    return out


def tiny_model(seed: int = 0, *, labels=None):
    """A 3-layer CNN (c1: 4 units, c2: 6 units, logits: 3) on 32 px RGB, random weights."""
    rng = np.random.default_rng(seed)  # numpy: no JAX compile for a test fixture
    params = {
        "c1": (rng.standard_normal((3, 3, 3, 4)) * 0.5).astype(np.float32),
        "c2": (rng.standard_normal((3, 3, 4, 6)) * 0.3).astype(np.float32),
        "w": (rng.standard_normal((6, 3)) * 0.5).astype(np.float32),
    }
    return wrap(
        _apply,
        params,
        input_spec=InputSpec(side=SIDE, channels=3),
        layer_names=["c1", "c2", "logits"],
        name="tiny",
        logits_layer="logits",
        labels=labels if labels is not None else ["zero", "one", XSS],
    )


def tiny_dataset(n: int = 40, seed: int = 0):
    rng = np.random.default_rng(seed)
    images = rng.random((n, SIDE, SIDE, 3), dtype=np.float32)
    labels = rng.integers(0, 3, n)
    return types.SimpleNamespace(images=images, labels=labels, label_names=["cat", "dog", XSS])


def fake_render(model, params, objective, *, optimizer, steps, size, key, unit_ids, **_):
    """Deterministic per-image stand-in for lucidax.visualize.render (no optimization)."""
    ids = np.asarray(unit_ids)
    seed = [int(v) for v in np.asarray(jax.random.key_data(key)).reshape(-1)]
    images = np.stack([np.random.default_rng([*seed, int(u)]).random((size, size, 3)) for u in ids])
    loss = -np.linspace(0, 1, steps, dtype=np.float32)[:, None] * (1 + ids[None, :] % 3)
    return types.SimpleNamespace(
        images=images.astype(np.float32),
        loss=loss,
        objective_values=-loss[-1],
        finite=np.ones(len(ids), bool),
        failed_units=[],
    )


def fake_channel(layer, units):
    return ("channel", layer, tuple(int(u) for u in units))


def render_fns(*, sleep: float = 0.0):
    """(render, channel): lucidax.visualize's when it is importable, else the fake pair;
    ``sleep`` seconds are added per batch (to make a run slow enough to interrupt)."""
    try:
        from lucidax.visualize import channel, render
    except ImportError:
        render, channel = fake_render, fake_channel
    if sleep:
        import time

        inner = render

        def render(*args, **kwargs):
            time.sleep(sleep)
            return inner(*args, **kwargs)

    return render, channel


RUNNER = """
import json, os, sys
sys.path.insert(0, {tests!r})
import jax
from lucidax.gallery import GalleryConfig, init_distributed
from lucidax.gallery._build import _build
from test_gallery_support import render_fns, tiny_dataset, tiny_model

cfg = GalleryConfig(**json.loads(sys.argv[1]))
if cfg.distributed:
    init_distributed(cfg)  # before the model touches jax
render, channel = render_fns(sleep=float(sys.argv[2]))
scores = os.environ.get("LUCIDAX_TEST_SCORES") == "1"  # enough images and a tiny observer
r = _build(cfg, progress=False, model=tiny_model(), dataset=tiny_dataset(120 if scores else 40),
           render_fn=render, channel_fn=channel,
           observer=(tiny_model(seed=1), "c2") if scores else None)
print("REPORT", r.process_id, r.units_rendered, r.index)
"""
