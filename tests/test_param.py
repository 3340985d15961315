"""Behaviour of lucidax.visualize.param: ranges, shapes, per-image vmap, Lucid's formulas, MACO.

Each parameterization is compiled once (one program checks every channel count and the vmap
path) to keep the file fast.
"""

from __future__ import annotations

import functools

import imageio.v3 as iio
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lucidax.visualize import _param as P

B, H, W = 2, 12, 11  # odd width on purpose
FAST = settings(max_examples=5, deadline=None, derandomize=True)

FACTORIES = {
    "pixel": P.pixel(),
    "pixel_clip": P.pixel(output="clip", decorrelate=True),
    "fft": P.fft(),
    "maco": P.maco(),
    "cppn": P.cppn(num_layers=2, hidden=6),
}


SHAPES = {c: (B, H, W, c) for c in (1, 3, 4)}


@functools.cache
def _to_images(name):
    """One compiled program per parameterization: to_image for C = 1, 3 and 4."""
    p = FACTORIES[name]
    return jax.jit(lambda params: {c: p.to_image(params[c]) for c in SHAPES})


def _random_params(name, seed, scale):
    """Params of the right structure (from ``init``'s abstract shapes) with random values:
    no JAX randomness, so the property test compiles nothing but ``to_image``."""
    rng = np.random.default_rng(seed)
    out = {}
    for c, shape in SHAPES.items():
        abstract = jax.eval_shape(lambda k: FACTORIES[name].init(k, shape), jax.random.key(0))  # noqa: B023
        out[c] = jax.tree.map(
            lambda a: (scale * rng.normal(size=a.shape)).astype(np.float32), abstract)
        leaves = jax.tree.leaves(abstract)
        assert leaves and all(a.shape[0] == B for a in leaves), name  # leading axis B
    return out


@FAST
@given(st.integers(0, 2**31 - 1), st.floats(0.0, 100.0))
def test_images_are_in_unit_range_for_any_params(seed, scale):
    for name in FACTORIES:
        images = _to_images(name)(_random_params(name, seed, scale))
        for c, shape in SHAPES.items():
            img = np.asarray(images[c])
            assert img.shape == shape and img.dtype == np.float32, name
            assert np.all(np.isfinite(img)) and img.min() >= 0.0 and img.max() <= 1.0, name


@functools.cache
def _vmap_program():
    """The render engine's per-image path for every parameterization, in one program."""

    def run(keys):
        out = {}
        for name, p in FACTORIES.items():
            v = jax.vmap(lambda k, p=p: p.init(k, (1, H, W, 3)))(keys)
            out[name] = (jax.vmap(p.to_image)(v),
                         p.to_image(jax.tree.map(lambda a: a[:, 0], v)))
        pixel = FACTORIES["pixel"]
        out["direct1"] = pixel.to_image(pixel.init(keys[1], (1, H, W, 3)))
        return out

    return jax.jit(run)


def test_vmap_per_image_equals_batched_and_direct():
    keys = jax.random.split(jax.random.key(3), B)
    out = _vmap_program()(keys)
    for name in FACTORIES:
        vmapped, batched = out[name]
        assert vmapped.shape == (B, 1, H, W, 3), name
        np.testing.assert_allclose(vmapped[:, 0], batched, atol=1e-6, err_msg=name)
        assert not np.allclose(batched[0], batched[1]), name  # different draws per image
    np.testing.assert_allclose(out["pixel"][0][1], out["direct1"], atol=1e-7)


def test_factories_are_values():
    assert P.image() == P.fft() and hash(P.image()) == hash(P.fft())
    assert P.image(fft=False) == P.pixel(decorrelate=True)
    assert P.fft(decay_power=0.5) != P.fft()
    spec = np.ones((8, 5, 3), np.float32)
    assert P.maco(spectrum=spec) == P.maco(spectrum=spec.copy())
    assert "fft" in repr(P.image())


def test_decorrelation_matrix_is_lucids_and_normalized():
    lucid = np.array([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])
    m = P.COLOR_CORRELATION
    np.testing.assert_allclose(np.max(np.linalg.norm(m, axis=0)), 1.0, rtol=1e-6)
    np.testing.assert_allclose(m * np.max(np.linalg.norm(lucid, axis=0)), lucid, rtol=1e-5)
    x = np.random.default_rng(0).normal(size=(2, 3, 4, 3)).astype(np.float32)
    np.testing.assert_allclose(P.to_valid_rgb(x), 1 / (1 + np.exp(-(x @ m.T))), atol=1e-6)
    clip = P.to_valid_rgb(x, output="clip")
    np.testing.assert_allclose(clip, np.clip(x @ m.T + P.COLOR_MEAN, 0, 1), atol=1e-6)
    # other channel counts: identity (no decorrelation), any C
    x4 = np.concatenate([x, x[..., :1]], -1)
    np.testing.assert_allclose(P.to_valid_rgb(x4), 1 / (1 + np.exp(-x4)), atol=1e-6)
    np.testing.assert_allclose(P.to_valid_rgb(x[..., :1], output="clip"),
                               np.clip(x[..., :1] + 0.5, 0, 1), atol=1e-6)


def test_clip_gradient_only_points_inward():
    x = jnp.array([-0.5, -0.5, 0.3, 1.5, 1.5])
    g = jnp.array([1.0, -1.0, 2.0, 1.0, -1.0])
    _, vjp = jax.vjp(P._clip01, x)
    # below 0: keep only gradients whose descent step increases x (g < 0); above 1: g > 0
    np.testing.assert_allclose(vjp(g)[0], [0.0, -1.0, 2.0, 1.0, 0.0])


@functools.cache
def _fft_program():
    f0, f1 = P.fft(decay_power=0.0), P.fft()
    return jax.jit(lambda p: (f0.to_image.cfg.raw(p), f1.to_image.cfg.raw(p), f1.to_image(p)))


def _lucid_fft_reference(coeffs, h, w, decay=1.0):
    """Lucid's fft_image + to_valid_rgb, written out in numpy (even w)."""
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.fftfreq(w)[: w // 2 + 1]
    freqs = np.sqrt(fx * fx + fy * fy)
    scale = 1.0 / np.maximum(freqs, 1.0 / max(w, h)) ** decay * np.sqrt(w * h)
    spec = (coeffs[..., 0] + 1j * coeffs[..., 1]) * scale[None, :, :, None]
    img = np.fft.irfft2(spec, s=(h, w), axes=(1, 2)) / 4.0
    return 1 / (1 + np.exp(-(img @ P.COLOR_CORRELATION.T)))


@FAST
@given(st.integers(0, 2**31 - 1))
def test_fft_matches_lucid_and_decay_damps_high_frequencies(seed):
    h, w = 16, 16
    coeffs = np.random.default_rng(seed).normal(size=(B, h, w // 2 + 1, 3, 2)) * 0.01
    params = P.SizedParams(jnp.asarray(coeffs, jnp.float32), (h, w))
    raw0, raw1, img = _fft_program()(params)
    np.testing.assert_allclose(img, _lucid_fft_reference(coeffs, h, w), atol=1e-5)

    def high_fraction(x):
        e = np.abs(np.fft.rfft2(np.asarray(x), axes=(1, 2))) ** 2
        f = np.sqrt(np.fft.fftfreq(h)[:, None] ** 2 + np.fft.rfftfreq(w)[None] ** 2)
        return e[:, f > 0.25].sum() / e.sum()

    assert high_fraction(raw1) < 0.5 * high_fraction(raw0)


def test_maco_keeps_the_magnitude_exactly():
    rng = np.random.default_rng(0)
    for h, w, c in ((12, 12, 3), (12, 11, 1), (9, 10, 4)):
        m = P.maco(sd=None)
        cfg = m.to_image.cfg
        phase = rng.uniform(-np.pi, np.pi, (B, h, w // 2 + 1, c)).astype(np.float32)
        params = P.SizedParams(jnp.asarray(phase), (h, w))
        field, img = jax.jit(lambda p: (cfg.field(p), m.to_image(p)))(params)  # noqa: B023
        mag = np.abs(np.fft.rfft2(np.asarray(field, np.float64), axes=(1, 2), norm="ortho"))
        ref = cfg.magnitude(h, w, c)
        assert ref.shape == (h, w // 2 + 1, c)
        np.testing.assert_allclose(mag, np.broadcast_to(ref, mag.shape), rtol=1e-4,
                                   atol=1e-4 * ref.max())
        f = np.asarray(field)
        z = (f - f.mean(axis=(1, 2, 3), keepdims=True)) / (
            f.std(axis=(1, 2, 3), keepdims=True) + 1e-4)
        np.testing.assert_allclose(img, 1 / (1 + np.exp(-z)), atol=1e-5)


def test_default_spectrum_is_natural_and_cached():
    s = P.default_spectrum(32)
    assert s.shape == (32, 17, 3) and s.dtype == np.float32 and np.all(s >= 0)
    f = np.sqrt(np.fft.fftfreq(32)[:, None] ** 2 + np.fft.rfftfreq(32)[None] ** 2)
    low = s[(f > 0) & (f < 0.1)].mean()
    high = s[f > 0.35].mean()
    assert low > 5 * high  # roughly 1/f: natural images concentrate energy at low frequency
    assert P._default_spectrum((32, 32)) is P._default_spectrum((32, 32))
    s[:] = 0  # default_spectrum hands out a copy; the cache is untouched
    assert P.default_spectrum(32).max() > 0


def test_maco_with_a_custom_spectrum_of_another_size_and_channels():
    spec = P.default_spectrum(32)
    m = P.maco(spectrum=spec)
    cfg = m.to_image.cfg
    mag = cfg.magnitude(16, 16, 1)
    assert mag.shape == (16, 9, 1)
    # resampled in frequency: same frequency -> similar value (channel mean for C=1)
    np.testing.assert_allclose(mag[0, 4, 0], spec[0, 8].mean(), rtol=1e-5)
    img = jax.jit(m.to_image)(m.init(jax.random.key(0), (1, 16, 16, 1)))
    assert img.shape == (1, 16, 16, 1) and 0 <= float(img.min()) <= float(img.max()) <= 1


def test_estimate_spectrum_from_a_folder_of_pngs(tmp_path):
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 256, (40, 30, 3), dtype=np.uint8),
              rng.integers(0, 256, (30, 50, 3), dtype=np.uint8),
              rng.integers(0, 256, (24, 24), dtype=np.uint8)]  # grey: repeated to RGB
    for i, a in enumerate(arrays):
        iio.imwrite(tmp_path / f"img{i}.png", a)
    (tmp_path / "notes.txt").write_text("not an image")
    from_folder = P.estimate_spectrum(tmp_path, size=16)
    from_arrays = P.estimate_spectrum(arrays, size=16)
    assert from_folder.shape == (16, 9, 3) and from_folder.dtype == np.float32
    np.testing.assert_allclose(from_folder, from_arrays, rtol=1e-6)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=".png"):
        P.estimate_spectrum(tmp_path / "empty", size=16)


def test_estimate_spectrum_finds_a_sinusoid():
    x = np.arange(32)
    img = 0.5 + 0.4 * np.cos(2 * np.pi * 5 * x / 32)[None, :] * np.ones((32, 1))
    spec = P.estimate_spectrum([img], size=32, window=False)
    assert spec.shape == (32, 17, 1)
    peak = np.unravel_index(np.argmax(spec[..., 0] * (np.arange(17) > 0)), spec.shape[:2])
    assert peak == (0, 5)
    # resized to another size: crop to the aspect ratio, then resample
    assert P.estimate_spectrum(img, size=(8, 16)).shape == (8, 9, 1)


def test_cppn_starts_flat_and_stays_in_range():
    p = P.cppn(num_layers=3, hidden=5, radial=True)
    params = jax.jit(lambda k: p.init(k, (B, 10, 14, 3)))(jax.random.key(0))
    assert params.size == (10, 14)
    assert params.values[0]["w"].shape == (B, 3, 5)  # (x, y, r) inputs
    assert params.values[1]["w"].shape == (B, 10, 5)  # composite activation doubles width
    assert params.values[-1]["w"].shape == (B, 10, 3)

    def run(prm):
        noisy = prm.values[:-1] + [dict(prm.values[-1], w=prm.values[-1]["w"] + 0.3)]
        return p.to_image(prm), p.to_image(P.SizedParams(noisy, prm.size))

    flat, varied = jax.jit(run)(params)
    flat, varied = np.asarray(flat), np.asarray(varied)
    # zero output weights: every pixel of an image is sigmoid(output bias)
    np.testing.assert_allclose(flat, np.broadcast_to(flat[:, :1, :1], flat.shape), atol=1e-6)
    assert 0.3 < flat.min() and flat.max() < 0.7
    assert varied.std(axis=(1, 2)).min() > 1e-3
    assert 0 < varied.min() and varied.max() < 1
    lucid = jax.eval_shape(lambda k: P.cppn().init(k, (1, 4, 4, 3)), jax.random.key(0))
    assert lucid.values[0]["w"].shape == (1, 2, 24) and len(lucid.values) == 9  # 8 + output


def test_bad_arguments_raise_helpful_errors():
    with pytest.raises(ValueError, match="sigmoid"):
        P.pixel(output="tanh")
    with pytest.raises(ValueError, match="composite"):
        P.cppn(activation="sin")
    with pytest.raises(ValueError, match=r"\(B, h, w, C\)"):
        P.fft().init(jax.random.key(0), (8, 8, 3))
    with pytest.raises(ValueError, match="non-negative"):
        P.maco(spectrum=-np.ones((4, 3, 3)))
    with pytest.raises(FileNotFoundError):
        P.estimate_spectrum("/nonexistent/folder", size=8)
