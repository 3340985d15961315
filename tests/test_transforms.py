"""Behaviour of lucidax.visualize.transforms: shapes, per-image draws, geometry, fusion.

Everything runs jitted (eager op-by-op execution of these transforms is much slower to warm up
than one compile) and test images come from numpy, to keep the file fast.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lucidax.visualize import _transforms as T

B, S = 4, 16
FAST = settings(max_examples=6, deadline=None, derandomize=True)


def _images(seed=0, b=B, s=S, c=3):
    return np.random.default_rng(seed).random((b, s, s, c), dtype=np.float32)


def _smooth(seed=0, b=B, s=S, c=3, border=0):
    """Smooth random images (low-frequency sinusoids); with ``border``, the content fades
    smoothly into a frame of 0.5 that wide."""
    rng = np.random.default_rng(seed)
    n = s - 2 * border
    y, x = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    env = np.outer(np.hanning(n + 2)[1:-1], np.hanning(n + 2)[1:-1]) if border else 1.0
    out = np.full((b, s, s, c), 0.5, np.float32)
    for i in range(b):
        for ch in range(c):
            fy, fx, ph = rng.uniform(0, 2.0 / n, 2).tolist() + [rng.uniform(0, 6.3)]
            inner = 0.5 + 0.4 * env * np.sin(2 * np.pi * (fy * y + fx * x) + ph)
            out[i, border:s - border, border:s - border, ch] = inner
    return out


def _keys(seed):
    return jax.random.split(jax.random.key(seed), B)


RANDOM = {
    "jitter": T.jitter(5),
    "scale": T.random_scale([1 + i / 20 for i in range(-5, 6)]),
    "rotate": T.random_rotate(list(range(-30, 31, 3))),
    "crops": T.random_crops(2, size_range=(0.3, 0.9), out_size=8),
    "standard": T.standard_transforms,
}
SHAPES = {
    "jitter": (B, S - 5, S - 5),
    "scale": (B, S, S),
    "rotate": (B, S, S),
    "crops": (2 * B, 8, 8),
    "standard": (B, S + 12, S + 12),
}
# compiled once each, always called with per-image keys [B] and [B, S, S, 3] images
JIT = {name: jax.jit(f) for name, f in RANDOM.items()}


@pytest.mark.parametrize("name", sorted(RANDOM))
def test_static_shapes(name):
    out = JIT[name](_keys(1), _images())
    assert out.shape == SHAPES[name] + (3,)
    assert out.dtype == jnp.float32
    assert bool(jnp.all(jnp.isfinite(out)))


def test_any_number_of_channels():
    x3 = _images()
    x4 = np.concatenate([x3, _images(1, c=1)], axis=-1)
    keys = _keys(0)
    out = JIT["standard"](keys, x4)
    assert out.shape == (B, S + 12, S + 12, 4)
    # channels are resampled independently with the same geometry
    np.testing.assert_allclose(out[..., :3], JIT["standard"](keys, x3), atol=1e-6)


def test_pad_and_jitter_values():
    x = _images()
    d = 4
    p, r, j = jax.jit(lambda k, im: (T.pad(3)(k, im), T.pad(2, mode="reflect")(k, im),
                                     T.jitter(d)(k, im)))(jax.random.key(3), x)
    assert p.shape == (B, S + 6, S + 6, 3)
    np.testing.assert_array_equal(p[:, 3:-3, 3:-3], x)
    assert bool(jnp.all(p[:, :3] == 0.5)) and bool(jnp.all(p[:, :, -3:] == 0.5))
    np.testing.assert_array_equal(r, np.pad(x, ((0, 0), (2, 2), (2, 2), (0, 0)), mode="reflect"))
    j = np.asarray(j)
    assert j.shape == (B, S - d, S - d, 3)
    for b in range(B):  # every output is a (S-d)^2 window of its own input
        hits = [(oy, ox) for oy in range(d + 1) for ox in range(d + 1)
                if np.array_equal(j[b], x[b, oy:oy + S - d, ox:ox + S - d])]
        assert hits, f"image {b} is not a crop of its input"


@pytest.mark.parametrize("c", [1, 4])
def test_identity_cases_and_rot90(c):
    x = _images(c=c)
    outs = jax.jit(lambda k, im: [f(k, im) for f in (
        T.random_rotate([0]), T.random_scale([1.0]), T.resize(S),
        T.random_rotate([90]), T.random_rotate([-90]))])(jax.random.key(2), x)
    for out in outs[:3]:
        np.testing.assert_allclose(out, x, atol=1e-6)
    np.testing.assert_allclose(outs[3], np.rot90(x, 1, axes=(1, 2)), atol=1e-5)
    np.testing.assert_allclose(outs[4], np.rot90(x, -1, axes=(1, 2)), atol=1e-5)


_ROT = jax.jit(lambda theta, x: T._sample(
    x, T._about_centre(T._linear(jnp.cos(theta), jnp.sin(theta), -jnp.sin(theta),
                                 jnp.cos(theta))[None], (S, S)), jnp.arange(x.shape[0]), (S, S)))


@FAST
@given(st.floats(-np.pi, np.pi), st.floats(-1, 1), st.floats(-1, 1))
def test_rotation_of_a_ramp_is_exact_inside(theta, a, b):
    # bilinear interpolation reproduces linear functions exactly, so away from the border a
    # rotated ramp equals the ramp evaluated at the rotated coordinates
    y, x = np.meshgrid(np.arange(S), np.arange(S), indexing="ij")
    ramp = (a * y + b * x)[None, :, :, None].astype(np.float32)
    out = np.asarray(_ROT(jnp.float32(theta), ramp))[0, :, :, 0]
    c = (S - 1) / 2
    yi = c + np.cos(theta) * (y - c) + np.sin(theta) * (x - c)
    xi = c - np.sin(theta) * (y - c) + np.cos(theta) * (x - c)
    inside = (yi >= 0) & (yi <= S - 1) & (xi >= 0) & (xi <= S - 1)
    np.testing.assert_allclose(out[inside], (a * yi + b * xi)[inside], atol=1e-4)
    outside = ~((yi > -1) & (yi < S) & (xi > -1) & (xi < S))
    np.testing.assert_allclose(out[outside], 0.5, atol=1e-6)


def test_scale_magnifies_about_the_centre():
    y, x = np.meshgrid(np.arange(S), np.arange(S), indexing="ij")
    ramp = (0.1 * x + 0.05 * y)[None, :, :, None].astype(np.float32)
    big, small = jax.jit(lambda k, im: (T.random_scale([2.0])(k, im),
                                        T.random_scale([0.5])(k, im)))(jax.random.key(0), ramp)
    c = (S - 1) / 2
    np.testing.assert_allclose(big[0, :, :, 0], 0.1 * (c + (x - c) / 2) + 0.05 * (c + (y - c) / 2),
                               atol=1e-5)
    assert float(small[0, 0, 0, 0]) == pytest.approx(0.5)  # shrunk: fill around the image
    assert float(small[0, -1, -1, 0]) == pytest.approx(0.5)


@FAST
@given(st.integers(0, 2**31 - 1), st.permutations(range(B)))
def test_each_image_depends_only_on_itself_and_its_key(seed, perm):
    perm = np.asarray(perm)
    keys = _keys(seed)
    x = _images(seed % 7)
    for name, f in JIT.items():
        out = np.asarray(f(keys, x))
        outp = np.asarray(f(keys[perm], x[perm]))
        n = out.shape[0] // B
        rows = (perm[:, None] * n + np.arange(n)[None]).reshape(-1)
        np.testing.assert_allclose(outp, out[rows], atol=1e-6, err_msg=name)


_SINGLE = jax.jit(lambda key, x: {name: f(key, x) for name, f in RANDOM.items()})


def test_one_key_gives_each_identical_image_its_own_draw():
    x = np.broadcast_to(_smooth(3, b=1), (B, S, S, 3))
    outs = _SINGLE(jax.random.key(5), x)
    for name, out in outs.items():
        out = np.asarray(out)
        assert out.shape == SHAPES[name] + (3,)
        distinct = {tuple(np.round(r, 5)) for r in out.reshape(out.shape[0], -1)}
        assert len(distinct) >= out.shape[0] - 1, name  # one coincidence is allowed
        assert len(distinct) > 1, name


def test_per_image_keys_make_images_independent_of_the_batch():
    x = _images(2)
    keys = _keys(8)
    sub = np.array([2, 0])
    for name, f in JIT.items():
        full = np.asarray(f(keys, x))
        part = np.asarray(f(jnp.concatenate([keys[sub], keys[sub]]),
                            np.concatenate([x[sub], x[sub]])))
        n = full.shape[0] // B
        rows = (sub[:, None] * n + np.arange(n)[None]).reshape(-1)
        np.testing.assert_allclose(part[: 2 * n], full[rows], atol=1e-6, err_msg=name)
    with pytest.raises(ValueError, match="per-image keys"):
        T.jitter(2)(jax.random.split(jax.random.key(0), B + 1), x)
    raw = jax.random.PRNGKey(3)  # raw uint32 keys work too, single or batched
    assert T.per_image_keys(raw, B).shape == (B, 2)
    f = jax.jit(T.jitter(3))
    assert f(jax.random.split(raw, B), x).shape == (B, S - 3, S - 3, 3)
    assert f(raw, x).shape == (B, S - 3, S - 3, 3)


def test_compose_order_and_key_splitting():
    x = _images()
    key = jax.random.key(4)
    f, g = T.jitter(3), T.random_rotate([10, 20, 30])
    add = T.compose([lambda k, im: im + 1.0, T.pad(1)])  # plain functions and a list work too

    def run(k, im):
        k1, k2 = jax.random.split(k)
        return (T.compose(f, g, fuse=False)(k, im), g(k2, f(k1, im)), f(k1, g(k2, im)),
                add(k, im))

    seq, manual, reversed_, added = jax.jit(run)(key, x)
    np.testing.assert_allclose(seq, manual, atol=1e-6)
    assert not np.allclose(seq, reversed_, atol=1e-3)
    np.testing.assert_allclose(added[:, 1:-1, 1:-1], x + 1.0)


def test_fused_equals_sequential():
    key = jax.random.key(6)
    chain = (T.pad(4), T.jitter(5), T.jitter(2))  # integer translations: exact
    std = T.standard_transforms.transforms

    def run(k, im, img):
        return (T.compose(*chain)(k, im), T.compose(*chain, fuse=False)(k, im),
                T.standard_transforms(k, img), T.compose(*std, fuse=False)(k, img))

    a, b, fused, seq = jax.jit(run)(key, _images(), _smooth(7, s=32, border=8))
    np.testing.assert_array_equal(a, b)
    # the standard chain: one resampling instead of two -> equal up to interpolation blur
    assert fused.shape == seq.shape == (B, 44, 44, 3)
    assert float(jnp.abs(fused - seq).mean()) < 0.01
    assert float(jnp.abs(fused - seq).max()) < 0.1


def test_standard_transforms_is_lucids_preset():
    p, j8, sc, rot, j4 = T.standard_transforms.transforms
    assert (p.width, p.mode, p.value) == (12, "constant", 0.5)
    assert j8.d == 8 and j4.d == 4
    assert sc.scales == tuple(1 + (i - 5) / 50 for i in range(11))
    assert rot.angles == tuple(float(a) for a in list(range(-10, 11)) + 5 * [0])
    assert rot.units == "degrees"


def test_random_crops_order_noise_and_full_crop():
    x = np.broadcast_to(np.arange(B, dtype=np.float32)[:, None, None, None], (B, S, S, 2))
    keys = _keys(0)

    def run(k, im, img):
        return (T.random_crops(3, out_size=(6, 5))(k, im),
                T.random_crops(3, out_size=(6, 5), noise=0.1)(k, im),
                T.random_crops(2, size_range=(1.0, 1.0))(k, img))

    out, noisy, whole = jax.jit(run)(keys, x, _images(c=2))
    assert out.shape == (3 * B, 6, 5, 2)
    # image-major order: rows b*n .. b*n+n-1 are crops of image b
    expect = np.repeat(np.arange(B, dtype=np.float32), 3)[:, None, None, None]
    np.testing.assert_allclose(out, np.broadcast_to(expect, out.shape), atol=1e-6)
    diff = np.asarray(noisy - out)
    assert diff.std() > 0.05 and abs(diff.mean()) < 0.02
    np.testing.assert_allclose(whole, np.repeat(_images(c=2), 2, axis=0), atol=1e-5)


def test_resize_matches_jax_upsampling_and_antialiases_down():
    x = _images()
    checker = (np.indices((S, S)).sum(0) % 2).astype(np.float32)[None, :, :, None]

    def run(k, im, chk):
        return (T.resize(24)(k, im), jax.image.resize(im, (B, 24, 24, 3), "linear"),
                T.resize(S // 2)(k, chk), T.resize((8, 12))(k, im))

    up, ref, down, rect = jax.jit(run)(jax.random.key(0), x, checker)
    np.testing.assert_allclose(up, ref, atol=1e-5)
    np.testing.assert_allclose(down, 0.5, atol=1e-6)  # 2x2 box: no aliasing of the checker
    assert rect.shape == (B, 8, 12, 3)


def test_gradients_flow_through_the_fused_chain():
    x = _smooth(1, s=20)
    w = np.random.default_rng(9).normal(size=(B, 32, 32, 3)).astype(np.float32)
    g = jax.jit(jax.grad(lambda im: jnp.sum(T.standard_transforms(jax.random.key(1), im) * w)))
    grad = g(x)
    assert grad.shape == x.shape
    assert bool(jnp.all(jnp.isfinite(grad))) and float(jnp.abs(grad).sum()) > 0


def test_bad_arguments_raise_helpful_errors():
    with pytest.raises(ValueError, match="constant"):
        T.pad(2, mode="mirror")
    with pytest.raises(ValueError, match="larger than"):
        jax.eval_shape(T.jitter(16), jax.random.key(0), jax.ShapeDtypeStruct((B, S, S, 3),
                                                                              jnp.float32))
    with pytest.raises(ValueError, match="scales"):
        T.random_scale([])
    with pytest.raises(ValueError, match="degrees"):
        T.random_rotate([1], units="degree")
    with pytest.raises(ValueError, match="size_range"):
        T.random_crops(2, size_range=(0.5, 1.5))
    with pytest.raises(TypeError, match="callable"):
        T.compose(T.pad(1), 3)
