"""Random image transforms for transformation-robust feature visualization.

Every transform is a callable ``f(key, images) -> images``: pure JAX, jittable, static output
shapes, float NHWC in and out, any number of channels.

Randomness is drawn *per image*: with one key, each transform makes one batched draw with an
independent value per image (identical images in a batch get different shifts, angles, ...),
and image ``i``'s result depends only on image ``i`` and draw ``i``. Instead of one key you may
pass a batch of per-image keys (shape ``[B]`` for typed keys from ``jax.random.key``,
``[B, 2]`` for raw ``PRNGKey`` keys): image ``i``'s draw then comes from ``key[i]`` alone, so a
unit renders the same whatever batch it is in and wherever it sits (the render engine can pass
``fold_in(step_key, unit_id)`` per image). One draw per transform keeps compile time low:
XLA:CPU spends most of a transform's compile time on threefry.

Geometric transforms (pad, jitter, scale, rotate, crops, resize) are affine resamplings.
:func:`compose` fuses a run of consecutive geometric transforms into ONE bilinear gather per
step (the matrices are multiplied, the image is sampled once): Lucid's whole
:data:`standard_transforms` chain costs a single gather (and a single scatter-add in the
backward pass), and the image is interpolated once instead of twice. A run is fused only when
its out-of-bounds fills agree (e.g. constant 0.5 padding followed by scale/rotate that fill with
the same constant 0.5), so fusing gives the result of applying the transforms one by one up to
the (smaller) interpolation blur -- with one difference: where a later transform looks outside
an intermediate image that an earlier one cropped (rotation corners after a zoom-in), the fused
chain shows the content beyond the crop (usually padding) instead of the fill value. Pass
``compose(..., fuse=False)`` for the sequential behaviour.

Out-of-bounds samples (scale < 1, rotation corners) use ``mode``: ``"constant"`` (fill with
``value``, default 0.5 = the padding colour of the standard chain; Lucid's rotate filled with
0), ``"nearest"`` (replicate the edge) or ``"reflect"`` (mirror without repeating the edge, as
``jnp.pad(mode="reflect")``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lucidax.models import suggest

from ._common import draw, is_key_batch

__all__ = [
    "Transform",
    "compose",
    "jitter",
    "pad",
    "per_image_keys",
    "random_crops",
    "random_rotate",
    "random_scale",
    "resize",
    "standard_transforms",
]

Key = Any
TransformFn = Callable[[Key, jax.Array], jax.Array]

_MODES = ("constant", "nearest", "reflect")


# ---------------------------------------------------------------------------------------------
# keys
# ---------------------------------------------------------------------------------------------

def per_image_keys(key: Key, n: int) -> Key:
    """One key per image: ``fold_in(key, i)`` for a single key, or ``key`` itself if it is
    already a batch of ``n`` keys (raises if the batch has another length)."""
    if is_key_batch(key):
        if key.shape[0] != n:
            raise ValueError(
                f"Got a batch of {key.shape[0]} per-image keys for {n} images; pass one key or "
                f"exactly one key per image."
            )
        return key
    return jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(n, dtype=jnp.uint32))


def _split(key: Key, n: int) -> list[Key]:
    """``n`` keys from ``key``; a batch of per-image keys is split per image."""
    if is_key_batch(key):
        ks = jax.vmap(lambda k: jax.random.split(k, n))(key)  # [B, n(, 2)]
        return [ks[:, i] for i in range(n)]
    ks = jax.random.split(key, n)
    return [ks[i] for i in range(n)]


def _expand_keys(key: Key, factor: int) -> Key:
    """Per-image keys for a batch that grew ``factor``-fold (image ``b`` -> ``b*factor + j``)."""
    if factor == 1 or not is_key_batch(key):
        return key
    idx = jnp.arange(factor, dtype=jnp.uint32)
    ks = jax.vmap(lambda k: jax.vmap(lambda j: jax.random.fold_in(k, j))(idx))(key)
    return ks.reshape((-1,) + ks.shape[2:])



def _randint(key: Key, b: int, shape: tuple[int, ...], n: int) -> jax.Array:
    """Uniform integers in ``{0, ..., n-1}``, shape ``(b,) + shape``. Built on one ``uniform``
    draw (``jax.random.randint`` makes two, doubling the compile time of a transform)."""
    u = draw(key, b, shape, lambda k, m: jax.random.uniform(k, (m,)))
    return jnp.minimum(jnp.floor(u * n).astype(jnp.int32), n - 1)


def _choice(key: Key, b: int, values: Sequence[float]) -> jax.Array:
    """One uniform pick from ``values`` per image (``[b]`` float32)."""
    vals = jnp.asarray(np.asarray(values, np.float32))
    return vals[_randint(key, b, (), len(values))]


# ---------------------------------------------------------------------------------------------
# the bilinear sampler: one gather for a batch of affine maps
# ---------------------------------------------------------------------------------------------
def _check_mode(mode: str) -> str:
    if mode not in _MODES:
        raise ValueError(suggest(mode, _MODES, what="mode"))
    return mode


def _map_index(i: jax.Array, n: int, mode: str) -> jax.Array:
    if mode == "reflect" and n > 1:
        period = 2 * (n - 1)
        i = jnp.mod(i, period)
        return jnp.where(i >= n, period - i, i)
    return jnp.clip(i, 0, n - 1)


def _sample(
    images: jax.Array,
    mats: jax.Array,
    src: jax.Array,
    out_hw: tuple[int, int],
    *,
    mode: str = "constant",
    value: float = 0.5,
    supersample: int = 1,
) -> jax.Array:
    """Bilinear resampling of ``images [B, h, w, C]`` into ``[N, oh, ow, C]``.

    ``mats [N, 3, 3]`` maps output pixel centres ``(y, x, 1)`` to input pixel coordinates
    (pixel ``i`` has coordinate ``i``); output ``n`` samples input image ``src[n]``. With
    ``supersample = k`` each output pixel averages ``k x k`` bilinear samples spread over its
    footprint (antialiasing when shrinking). All taps of all images are one gather.
    """
    b, h, w, c = images.shape
    oh, ow = out_hw
    k = int(supersample)
    offs = (np.arange(k, dtype=np.float32) + 0.5) / k - 0.5
    gy = (np.arange(oh, dtype=np.float32)[:, None] + offs[None, :]).reshape(oh, 1, k, 1)
    gx = (np.arange(ow, dtype=np.float32)[:, None] + offs[None, :]).reshape(1, ow, 1, k)
    gy, gx = np.broadcast_arrays(gy, gx)
    grid = np.stack([gy, gx, np.ones_like(gy)], -1).reshape(-1, 3)  # [P, 3]
    coords = jnp.einsum("pq,nrq->npr", jnp.asarray(grid), mats[:, :2, :].astype(jnp.float32))
    cy, cx = coords[..., 0], coords[..., 1]  # [N, P]
    y0, x0 = jnp.floor(cy), jnp.floor(cx)
    fy, fx = cy - y0, cx - x0
    y0, x0 = y0.astype(jnp.int32), x0.astype(jnp.int32)
    ys = jnp.stack([y0, y0, y0 + 1, y0 + 1], -1)  # [N, P, 4]
    xs = jnp.stack([x0, x0 + 1, x0, x0 + 1], -1)
    wts = jnp.stack([(1 - fy) * (1 - fx), (1 - fy) * fx, fy * (1 - fx), fy * fx], -1)
    if mode == "constant":
        inside = (ys >= 0) & (ys < h) & (xs >= 0) & (xs < w)
        wts_in = jnp.where(inside, wts, 0.0)
    yi, xi = _map_index(ys, h, mode), _map_index(xs, w, mode)
    flat = images.reshape(b * h * w, c)
    idx = src.astype(jnp.int32)[:, None, None] * (h * w) + yi * w + xi
    taps = flat[idx]  # [N, P, 4, C] -- the one gather
    if mode == "constant":
        out = jnp.einsum("npt,nptc->npc", wts_in.astype(images.dtype), taps)
        out = out + (value * (1.0 - wts_in.sum(-1)))[..., None].astype(images.dtype)
    else:
        out = jnp.einsum("npt,nptc->npc", wts.astype(images.dtype), taps)
    out = out.reshape(mats.shape[0], oh, ow, k * k, c)
    return out.mean(axis=3) if k > 1 else out[:, :, :, 0]


def _translate(ty: jax.Array | float, tx: jax.Array | float) -> jax.Array:
    """[..., 3, 3] matrices mapping (y, x, 1) -> (y + ty, x + tx, 1)."""
    ty, tx = jnp.broadcast_arrays(jnp.asarray(ty, jnp.float32), jnp.asarray(tx, jnp.float32))
    one, zero = jnp.ones_like(ty), jnp.zeros_like(ty)
    return jnp.stack(
        [jnp.stack([one, zero, ty], -1), jnp.stack([zero, one, tx], -1),
         jnp.stack([zero, zero, one], -1)], -2
    )


def _linear(a, b, c, d) -> jax.Array:
    """[..., 3, 3] matrices with linear part [[a, b], [c, d]] in (y, x) and no translation."""
    a, b, c, d = jnp.broadcast_arrays(*(jnp.asarray(v, jnp.float32) for v in (a, b, c, d)))
    one, zero = jnp.ones_like(a), jnp.zeros_like(a)
    return jnp.stack(
        [jnp.stack([a, b, zero], -1), jnp.stack([c, d, zero], -1),
         jnp.stack([zero, zero, one], -1)], -2
    )


def _about_centre(lin: jax.Array, hw: tuple[int, int]) -> jax.Array:
    """``in = c + lin @ (out - c)`` with ``c`` the image centre (same input and output size)."""
    cy, cx = (hw[0] - 1) / 2.0, (hw[1] - 1) / 2.0
    return _translate(cy, cx) @ lin @ _translate(-cy, -cx)


# ---------------------------------------------------------------------------------------------
# transform objects
# ---------------------------------------------------------------------------------------------
class Transform:
    """Base class of the transforms here: ``t(key, images) -> images``.

    Geometric subclasses also describe themselves as per-image affine maps
    (``_affine``) so that :func:`compose` can fuse consecutive ones into one resampling.

    Example:
      >>> import jax
      >>> import numpy as np
      >>> from lucidax import visualize as viz
      >>> images = np.random.default_rng(0).random((2, 32, 32, 3), dtype=np.float32)
      >>> t = viz.compose(viz.jitter(4), viz.random_scale([0.9, 1.1]))
      >>> isinstance(t, viz.Transform), t(jax.random.key(0), images).shape
      (True, (2, 28, 28, 3))
    """

    #: geometric transforms that compose can fuse
    _fusable: bool = False

    def __call__(self, key: Key, images: jax.Array) -> jax.Array:  # pragma: no cover
        raise NotImplementedError

    # fusion interface -------------------------------------------------------------------
    def _fill(self) -> tuple[str, float] | None:
        """How out-of-bounds samples are filled, or None if never sampled (compatible with
        any fill)."""
        return None

    def _out_hw(self, hw: tuple[int, int]) -> tuple[int, int]:
        return hw

    def _affine(self, key: Key, b: int, hw: tuple[int, int]) -> tuple[jax.Array, jax.Array]:
        """Per-output-image matrices ``[N, 3, 3]`` (output -> input coords) and source
        indices ``[N]`` into the input batch of ``b`` images (``key``: one key or ``b``)."""
        raise NotImplementedError

    def _supersample(self, hw: tuple[int, int]) -> int:
        return 1

    def _post(self, key: Key, images: jax.Array) -> jax.Array:
        """Pixel-wise step after resampling (e.g. noise); identity by default."""
        return images

    _has_post: bool = False


def _check_images(images: jax.Array, what: str) -> jax.Array:
    images = jnp.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"{what}: images must be a batch [B, H, W, C]; got shape {images.shape}")
    if not jnp.issubdtype(images.dtype, jnp.floating):
        raise TypeError(f"{what}: images must be floating point; got dtype {images.dtype} "
                        f"(convert uint8 with images / 255.0)")
    return images


def _resample_alone(t: Transform, key: Key, images: jax.Array, mode: str, value: float):
    b, h, w, _ = images.shape
    mats, src = t._affine(key, b, (h, w))
    out = _sample(images, mats, src, t._out_hw((h, w)), mode=mode, value=value,
                  supersample=t._supersample((h, w)))
    return t._post(key, out)


@dataclasses.dataclass(frozen=True)
class Pad(Transform):
    """Pad ``width`` pixels on every side (see :func:`pad`)."""

    width: int
    mode: str = "constant"
    value: float = 0.5
    _fusable = True

    def __call__(self, key: Key, images: jax.Array) -> jax.Array:
        images = _check_images(images, "pad")
        p = self.width
        if self.mode == "reflect" and p >= min(images.shape[1:3]):
            raise ValueError(
                f"pad: reflect padding of {p}px needs images larger than {p}px; got "
                f"{images.shape[1]}x{images.shape[2]}"
            )
        cfg = ((0, 0), (p, p), (p, p), (0, 0))
        if self.mode == "constant":
            return jnp.pad(images, cfg, mode="constant", constant_values=self.value)
        return jnp.pad(images, cfg, mode="edge" if self.mode == "nearest" else "reflect")

    def _fill(self):
        return (self.mode, self.value if self.mode == "constant" else 0.0)

    def _out_hw(self, hw):
        return (hw[0] + 2 * self.width, hw[1] + 2 * self.width)

    def _affine(self, key, b, hw):
        m = jnp.broadcast_to(_translate(-self.width, -self.width), (b, 3, 3))
        return m, jnp.arange(b)


@dataclasses.dataclass(frozen=True)
class Jitter(Transform):
    """Random crop of size ``(h - d, w - d)`` (see :func:`jitter`)."""

    d: int
    _fusable = True

    def _offsets(self, key, b):
        return _randint(key, b, (2,), self.d + 1)

    def _check(self, hw):
        if self.d >= min(hw):
            raise ValueError(f"jitter({self.d}) needs images larger than {self.d}px; got {hw}")

    def __call__(self, key: Key, images: jax.Array) -> jax.Array:
        images = _check_images(images, "jitter")
        b, h, w, c = images.shape
        self._check((h, w))
        off = self._offsets(key, b)
        size = (h - self.d, w - self.d, c)
        return jax.vmap(
            lambda im, o: jax.lax.dynamic_slice(im, (o[0], o[1], 0), size)
        )(images, off)

    def _out_hw(self, hw):
        self._check(hw)
        return (hw[0] - self.d, hw[1] - self.d)

    def _affine(self, key, b, hw):
        off = self._offsets(key, b).astype(jnp.float32)
        return _translate(off[:, 0], off[:, 1]), jnp.arange(b)


@dataclasses.dataclass(frozen=True)
class RandomScale(Transform):
    """Zoom about the centre by a factor drawn from ``scales`` (see :func:`random_scale`)."""

    scales: tuple[float, ...]
    mode: str = "constant"
    value: float = 0.5
    _fusable = True

    def __call__(self, key, images):
        return _resample_alone(self, key, _check_images(images, "random_scale"),
                               self.mode, self.value)

    def _fill(self):
        return (self.mode, self.value if self.mode == "constant" else 0.0)

    def _affine(self, key, b, hw):
        inv = 1.0 / _choice(key, b, self.scales)
        zero = jnp.zeros_like(inv)
        return _about_centre(_linear(inv, zero, zero, inv), hw), jnp.arange(b)


@dataclasses.dataclass(frozen=True)
class RandomRotate(Transform):
    """Rotate about the centre by an angle drawn from ``angles`` (see :func:`random_rotate`)."""

    angles: tuple[float, ...]
    units: str = "degrees"
    mode: str = "constant"
    value: float = 0.5
    _fusable = True

    def __call__(self, key, images):
        return _resample_alone(self, key, _check_images(images, "random_rotate"),
                               self.mode, self.value)

    def _fill(self):
        return (self.mode, self.value if self.mode == "constant" else 0.0)

    def _affine(self, key, b, hw):
        theta = _choice(key, b, self.angles)
        if self.units == "degrees":
            theta = theta * (math.pi / 180.0)
        cos, sin = jnp.cos(theta), jnp.sin(theta)
        # counter-clockwise on screen (rows grow downwards), like np.rot90 and Lucid's rotate
        return _about_centre(_linear(cos, sin, -sin, cos), hw), jnp.arange(b)


def _as_hw(size: int | Sequence[int], what: str) -> tuple[int, int]:
    hw = (size, size) if isinstance(size, (int, np.integer)) else tuple(size)
    if len(hw) != 2 or any(int(s) != s or s < 1 for s in hw):
        raise ValueError(f"{what}: size must be a positive int or (height, width); got {size!r}")
    return (int(hw[0]), int(hw[1]))


@dataclasses.dataclass(frozen=True)
class Resize(Transform):
    """Bilinear resize to a fixed size (see :func:`resize`)."""

    size: tuple[int, int]
    antialias: bool = True
    _fusable = True

    def __call__(self, key, images):
        return _resample_alone(self, key, _check_images(images, "resize"), "nearest", 0.0)

    def _out_hw(self, hw):
        return self.size

    def _supersample(self, hw):
        if not self.antialias:
            return 1
        return max(1, math.ceil(max(hw[0] / self.size[0], hw[1] / self.size[1]) - 1e-6))

    def _affine(self, key, b, hw):
        sy, sx = hw[0] / self.size[0], hw[1] / self.size[1]
        # pixel-centre convention (align_corners=False): in = (out + 0.5) * s - 0.5
        m = _translate(0.5 * sy - 0.5, 0.5 * sx - 0.5) @ _linear(sy, 0.0, 0.0, sx)
        return jnp.broadcast_to(m, (b, 3, 3)), jnp.arange(b)


@dataclasses.dataclass(frozen=True)
class RandomCrops(Transform):
    """``n`` random crops per image resized to ``out_size`` (see :func:`random_crops`)."""

    n: int
    size_range: tuple[float, float] = (0.25, 1.0)
    out_size: tuple[int, int] | None = None
    noise: float = 0.0
    antialias: bool = True
    _fusable = True

    @property
    def _has_post(self) -> bool:  # type: ignore[override]
        return self.noise > 0

    def __call__(self, key, images):
        return _resample_alone(self, key, _check_images(images, "random_crops"), "nearest", 0.0)

    def _out_hw(self, hw):
        return self.out_size or hw

    def _supersample(self, hw):
        if not self.antialias:
            return 1
        oh, ow = self._out_hw(hw)
        hi = self.size_range[1]
        return max(1, math.ceil(max(hi * hw[0] / oh, hi * hw[1] / ow) - 1e-6))

    def _affine(self, key, b, hw):
        h, w = hw
        oh, ow = self._out_hw(hw)
        lo, hi = self.size_range

        # one draw per call: (fraction, top, left) uniforms for every crop of every image
        u = draw(key, b, (self.n, 3), lambda k, n: jax.random.uniform(k, (n,)))
        u = u.reshape(b * self.n, 3)
        f = lo + (hi - lo) * u[:, 0]
        top, left = u[:, 1] * (1.0 - f) * h, u[:, 2] * (1.0 - f) * w
        sy, sx = f * h / oh, f * w / ow
        zero = jnp.zeros_like(sy)
        m = _translate(top + 0.5 * sy - 0.5, left + 0.5 * sx - 0.5) @ _linear(sy, zero, zero, sx)
        return m, jnp.repeat(jnp.arange(b), self.n)

    def _post(self, key, images):
        if self.noise <= 0:
            return images
        nb, oh, ow, c = images.shape
        b = nb // self.n
        # Horama's noise: noise * (N(0, 1) + U(-0.5, 0.5)); both from one uniform draw, with a
        # key independent of the crop geometry's
        key = jax.vmap(lambda k: jax.random.fold_in(k, 1))(key) if is_key_batch(key) \
            else jax.random.fold_in(key, 1)
        u = draw(key, b, (2, self.n, oh, ow, c),
                  lambda k, n: jax.random.uniform(k, (n,), minval=1e-7, maxval=1.0))
        u = jnp.moveaxis(u, 1, 0).reshape(2, nb, oh, ow, c)
        noise = jax.scipy.special.ndtri(u[0]) + u[1] - 0.5
        return images + (self.noise * noise).astype(images.dtype)


@dataclasses.dataclass(frozen=True)
class Compose(Transform):
    """Apply ``transforms`` in order (see :func:`compose`)."""

    transforms: tuple[Any, ...]
    fuse: bool = True

    def __call__(self, key: Key, images: jax.Array) -> jax.Array:
        ts = self.transforms
        images = _check_images(images, "compose")
        if not ts:
            return images
        keys = _split(key, len(ts))
        b0 = images.shape[0]
        i = 0
        while i < len(ts):
            j = max(self._run_end(i), i + 1) if self.fuse else i + 1
            if j - i >= 2:
                images = self._fused(ts[i:j], keys[i:j], b0, images)
            else:
                factor = images.shape[0] // b0
                images = ts[i](_expand_keys(keys[i], factor), images)
            i = j
        return images

    def _run_end(self, i: int) -> int:
        """End (exclusive) of the fusable run of geometric transforms starting at ``i``."""
        ts, fills, j = self.transforms, set(), i
        while j < len(ts) and getattr(ts[j], "_fusable", False):
            f = ts[j]._fill()
            if f is not None:
                if fills and f not in fills:
                    break
                fills.add(f)
            j += 1
            if ts[j - 1]._has_post:
                break
        return j

    @staticmethod
    def _fused(ts, keys, b0, images):
        b, h, w, _ = images.shape
        mats = jnp.broadcast_to(jnp.eye(3, dtype=jnp.float32), (b, 3, 3))
        src = jnp.arange(b)
        hw, k = (h, w), 1
        fill = next((t._fill() for t in ts if t._fill() is not None), ("nearest", 0.0))
        for t, key in zip(ts, keys, strict=True):
            cur = mats.shape[0]
            kk = _expand_keys(key, cur // b0)
            m, s = t._affine(kk, cur, hw)
            k = max(k, t._supersample(hw))
            hw = t._out_hw(hw)
            mats, src = mats[s] @ m, src[s]
            last_keys = kk
        out = _sample(images, mats, src, hw, mode=fill[0], value=fill[1], supersample=k)
        return ts[-1]._post(last_keys, out)


# ---------------------------------------------------------------------------------------------
# factories
# ---------------------------------------------------------------------------------------------
def pad(w: int, *, mode: str = "constant", value: float = 0.5) -> Transform:
    """Pad ``w`` pixels on each side: ``mode="constant"`` with ``value`` (Lucid's standard chain
    pads 12 px of 0.5), ``"reflect"`` (mirror, Lucid's default mode) or ``"nearest"``.
    Output ``[B, h + 2w, w_ + 2w, C]``.

    Example:
      >>> import jax
      >>> import numpy as np
      >>> from lucidax import visualize as viz
      >>> images = np.random.default_rng(0).random((2, 32, 32, 3), dtype=np.float32)
      >>> viz.pad(6)(jax.random.key(0), images).shape
      (2, 44, 44, 3)
    """
    if int(w) != w or w < 0:
        raise ValueError(f"pad: width must be a non-negative int; got {w!r}")
    return Pad(int(w), _check_mode(mode), float(value))


def jitter(d: int) -> Transform:
    """Lucid's jitter: a random ``(h - d, w - d)`` crop, i.e. a shift by 0..d px on each axis
    (offsets uniform in ``{0, ..., d}``, independent per image). Output ``[B, h-d, w-d, C]``.

    Example:
      >>> import jax
      >>> import numpy as np
      >>> from lucidax import visualize as viz
      >>> images = np.random.default_rng(0).random((2, 32, 32, 3), dtype=np.float32)
      >>> viz.jitter(8)(jax.random.key(0), images).shape
      (2, 24, 24, 3)
    """
    if int(d) != d or d < 0:
        raise ValueError(f"jitter: d must be a non-negative int; got {d!r}")
    return Jitter(int(d))


def random_scale(
    scales: Sequence[float], *, mode: str = "constant", value: float = 0.5
) -> Transform:
    """Zoom each image about its centre by a factor picked uniformly from ``scales``.

    Static-shape version of Lucid's ``random_scale`` (which resized the image to
    ``scale * size``): the output keeps the input size, content is magnified by ``scale``
    about the centre (scale > 1 crops the border, scale < 1 shows ``mode`` fill around it).
    Bilinear.

    Args:
      scales: the scale factors to draw from (one per image and step).
      mode: how pixels outside the image are filled (``"constant"``, ``"edge"``, ...).
      value: the fill value of ``"constant"``.

    Example:
      >>> import jax
      >>> import numpy as np
      >>> from lucidax import visualize as viz
      >>> images = np.random.default_rng(0).random((2, 32, 32, 3), dtype=np.float32)
      >>> viz.random_scale([0.9, 1.0, 1.1])(jax.random.key(0), images).shape
      (2, 32, 32, 3)
    """
    scales = tuple(float(s) for s in scales)
    if not scales or any(not s > 0 for s in scales):
        raise ValueError(f"random_scale: scales must be a non-empty list of positive numbers; "
                         f"got {scales!r}")
    return RandomScale(scales, _check_mode(mode), float(value))


def random_rotate(
    angles: Sequence[float], *, units: str = "degrees", mode: str = "constant",
    value: float = 0.5,
) -> Transform:
    """Rotate each image about its centre, counter-clockwise as displayed (``np.rot90``
    direction), by an angle picked uniformly from ``angles`` (``units`` "degrees" or
    "radians"). Same output size; bilinear; corners filled per ``mode``.

    Args:
      angles: the angles to draw from (one per image and step).
      units: ``"degrees"`` or ``"radians"``.
      mode: how pixels outside the image are filled.
      value: the fill value of ``"constant"``.

    Example:
      >>> import jax
      >>> import numpy as np
      >>> from lucidax import visualize as viz
      >>> images = np.random.default_rng(0).random((2, 32, 32, 3), dtype=np.float32)
      >>> viz.random_rotate(range(-10, 11))(jax.random.key(0), images).shape
      (2, 32, 32, 3)
    """
    angles = tuple(float(a) for a in angles)
    if not angles:
        raise ValueError("random_rotate: angles must be a non-empty list")
    if units not in ("degrees", "radians"):
        raise ValueError(suggest(units, ("degrees", "radians"), what="unit"))
    return RandomRotate(angles, units, _check_mode(mode), float(value))


def random_crops(
    n: int,
    *,
    size_range: tuple[float, float] = (0.25, 1.0),
    out_size: int | Sequence[int] | None = None,
    noise: float = 0.0,
    antialias: bool = True,
) -> Transform:
    """MACO-style crops: ``n`` random crops per image per call, each resized to ``out_size``.

    Each crop spans a fraction ``f ~ U(size_range)`` of the height and of the width and lies
    inside the image (top-left uniform). ``out_size`` defaults to the input size. With
    ``noise > 0``, ``noise * (N(0, 1) + U(-0.5, 0.5))`` is added per pixel (Horama).
    Output batch ``B * n``, ordered image-major: the crops of image ``b`` are rows
    ``b*n ... b*n + n - 1``. ``antialias`` averages ``k x k`` bilinear samples per output pixel
    when crops are shrunk (``k = ceil(largest shrink factor)``).

    Example:
      >>> import jax
      >>> import numpy as np
      >>> from lucidax import visualize as viz
      >>> images = np.random.default_rng(0).random((2, 32, 32, 3), dtype=np.float32)
      >>> viz.random_crops(3, out_size=16)(jax.random.key(0), images).shape
      (6, 16, 16, 3)
    """
    if int(n) != n or n < 1:
        raise ValueError(f"random_crops: n must be a positive int; got {n!r}")
    lo, hi = (float(v) for v in size_range)
    if not 0 < lo <= hi <= 1:
        raise ValueError(f"random_crops: size_range must satisfy 0 < lo <= hi <= 1; got "
                         f"{size_range!r}")
    out = None if out_size is None else _as_hw(out_size, "random_crops")
    if noise < 0:
        raise ValueError(f"random_crops: noise must be >= 0; got {noise!r}")
    return RandomCrops(int(n), (lo, hi), out, float(noise), bool(antialias))


def resize(side: int | Sequence[int], *, antialias: bool = True) -> Transform:
    """Bilinear resize to ``side x side`` (or ``(height, width)``), pixel-centre aligned
    (``align_corners=False``, as ``jax.image.resize``); edges replicate. When shrinking with
    ``antialias``, each output pixel averages ``k x k`` bilinear samples over its footprint.
    Deterministic (the key is ignored).

    Example:
      >>> import jax
      >>> import numpy as np
      >>> from lucidax import visualize as viz
      >>> images = np.random.default_rng(0).random((2, 32, 32, 3), dtype=np.float32)
      >>> viz.resize(64)(jax.random.key(0), images).shape
      (2, 64, 64, 3)
    """
    return Resize(_as_hw(side, "resize"), bool(antialias))


def compose(*fs: TransformFn, fuse: bool = True) -> Transform:
    """Apply ``fs`` in order; the key is split into one key per transform
    (``jax.random.split(key, len(fs))``; a batch of per-image keys is split per image).

    Consecutive geometric transforms with compatible fills run as one fused bilinear
    resampling (see the module docstring); ``fuse=False`` applies them one by one. Plain
    functions ``f(key, images)`` may be mixed in (never fused).

    Args:
      fs: transforms (or plain functions ``f(key, images)``), applied left to right.
      fuse: fuse consecutive geometric transforms into one resampling.

    Example:
      >>> import jax
      >>> import numpy as np
      >>> from lucidax import visualize as viz
      >>> images = np.random.default_rng(0).random((2, 32, 32, 3), dtype=np.float32)
      >>> viz.compose(viz.pad(4), viz.jitter(2))(jax.random.key(0), images).shape
      (2, 38, 38, 3)
    """
    if len(fs) == 1 and isinstance(fs[0], (list, tuple)):
        fs = tuple(fs[0])
    for f in fs:
        if not callable(f):
            raise TypeError(f"compose: every transform must be callable f(key, images); got {f!r}")
    return Compose(tuple(fs), bool(fuse))


#: Lucid's ``standard_transforms`` preset (static-shape version): pad 12 px of 0.5, jitter 8,
#: random scale from ``1 + (i - 5) / 50`` (0.9 .. 1.1), random rotation from -10..10 degrees
#: plus five extra zeros, jitter 4. Output side = input side + 12. Runs as one fused gather.
standard_transforms: Transform = compose(
    pad(12, mode="constant", value=0.5),
    jitter(8),
    random_scale([1 + (i - 5) / 50 for i in range(11)]),
    random_rotate(list(range(-10, 11)) + 5 * [0]),
    jitter(4),
)
