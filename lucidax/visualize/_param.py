"""Image parameterizations: how the optimized variables become images.

A :class:`Param` holds two pure, jittable functions:

* ``init(key, shape) -> params`` with ``shape = (B, h, w, C)``: a pytree whose array leaves all
  have leading axis ``B``. One key makes one batched draw (independent values per image); a
  batch of ``B`` keys draws image ``b`` from ``key[b]`` alone. Under
  ``jax.vmap(lambda k: p.init(k, (1, h, w, C)))(keys)`` each image gets exactly what
  ``p.init(keys[b], (1, h, w, C))`` gives (leaves then have shape ``[B, 1, ...]``);
* ``to_image(params) -> images`` float32 ``[B, h, w, C]`` in ``[0, 1]``, image ``b`` depending
  only on ``params[b]`` (so batched and per-image calls agree).

Parameterizations whose array shapes do not determine the image size (Fourier spectra,
CPPN weights) wrap their arrays in :class:`SizedParams`, a pytree node carrying the static
``(h, w)`` as metadata (transparent to ``jax.vmap``/``jit``/optax).

Colour decorrelation (Lucid's ImageNet colour-correlation square root) is applied only when
``C == 3``; for any other channel count the channels are used as they are (identity). All
parameterizations work for any ``C``.

Factories: :func:`pixel`, :func:`fft`, :func:`image` (Lucid's default), :func:`maco`
(Fel et al. 2023, phase-only with a natural-image magnitude spectrum; see
:func:`estimate_spectrum`), :func:`cppn`.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import math
import os
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lucidax._files import IMAGE_EXTENSIONS
from lucidax.models import suggest

from ._common import draw

__all__ = [
    "COLOR_CORRELATION",
    "COLOR_MEAN",
    "Param",
    "SizedParams",
    "cppn",
    "default_spectrum",
    "estimate_spectrum",
    "fft",
    "image",
    "maco",
    "pixel",
    "to_valid_rgb",
]

Key = Any
Shape = tuple[int, int, int, int]

#: Lucid's square root of the ImageNet colour correlation, normalized by its largest column
#: norm; decorrelated colours ``t`` map to RGB as ``t @ COLOR_CORRELATION.T``.
_COLOR_SVD_SQRT = np.asarray(
    [[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]], np.float32
)
COLOR_CORRELATION: np.ndarray = _COLOR_SVD_SQRT / np.max(np.linalg.norm(_COLOR_SVD_SQRT, axis=0))
#: Lucid's ImageNet colour mean (added before clipping for decorrelated ``output="clip"``).
COLOR_MEAN: np.ndarray = np.asarray([0.48, 0.46, 0.41], np.float32)

_OUTPUTS = ("sigmoid", "clip")
_ACTIVATIONS = ("composite", "composite_unbiased", "relu")
#: scikit-image sample photos (shipped in its wheel) averaged for the default MACO spectrum
_SPECTRUM_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "stereo_motorcycle")


# ---------------------------------------------------------------------------------------------
# containers
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Param:
    """An image parameterization: ``init(key, (B, h, w, C)) -> params`` and
    ``to_image(params) -> [B, h, w, C]`` in [0, 1]. Both are pure and jittable; factories
    return value-comparable (hashable) instances, so equal configurations hit the same jit
    cache when a Param is a static argument.

    Attributes:
      init: ``init(key, (B, h, w, C)) -> params`` (a pytree of arrays).
      to_image: ``to_image(params) -> [B, h, w, C]`` in [0, 1].
      name: a readable name (``"image"``, ``"maco"``, ...).

    Example:
      >>> import jax
      >>> from lucidax import visualize as viz
      >>> param = viz.pixel()
      >>> values = param.init(jax.random.key(0), (2, 16, 16, 3))
      >>> param.to_image(values).shape
      (2, 16, 16, 3)
    """

    init: Callable[[Key, Shape], Any]
    to_image: Callable[[Any], jax.Array]
    name: str = "param"

    def __repr__(self) -> str:
        return f"Param({self.name})"


@functools.partial(jax.tree_util.register_dataclass, data_fields=["values"],
                   meta_fields=["size"])
@dataclasses.dataclass(frozen=True)
class SizedParams:
    """Parameters plus the static image size ``(h, w)`` they render to.

    ``values`` is a pytree of arrays with leading axis B (the optimized variables); ``size``
    is pytree metadata, not a leaf, so optimizers and ``jax.vmap`` never see it.

    Example:
      >>> import jax
      >>> from lucidax import visualize as viz
      >>> params = viz.fft().init(jax.random.key(0), (1, 20, 20, 3))
      >>> type(params).__name__, params.size
      ('SizedParams', (20, 20))
    """

    values: Any
    size: tuple[int, int]


@dataclasses.dataclass(frozen=True)
class _Bound:
    """``cfg.<method>`` as a value-comparable callable (bound methods compare by identity)."""

    cfg: Any
    method: str

    def __call__(self, *args):
        return getattr(self.cfg, self.method)(*args)


class _ArrayConst:
    """A numpy array that hashes/compares by content (for frozen, hashable configs)."""

    def __init__(self, array: np.ndarray):
        self.array = np.ascontiguousarray(array, dtype=np.float32)
        self.array.setflags(write=False)
        digest = hashlib.sha1(self.array.tobytes()).hexdigest()
        self._key = (self.array.shape, digest)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _ArrayConst) and self._key == other._key

    def __hash__(self) -> int:
        return hash(self._key)

    def __repr__(self) -> str:
        return f"array{self.array.shape}"


def _make(cfg: Any, name: str) -> Param:
    return Param(init=_Bound(cfg, "init"), to_image=_Bound(cfg, "to_image"), name=name)


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------
def _check_shape(shape: Sequence[int]) -> Shape:
    try:
        shp = tuple(int(s) for s in shape)
    except (TypeError, jax.errors.ConcretizationTypeError) as e:
        raise ValueError(f"shape must be four static ints (B, h, w, C); got {shape!r}") from e
    if len(shp) != 4 or any(s < 1 for s in shp) or shp != tuple(shape):
        raise ValueError(f"shape must be four positive ints (B, h, w, C); got {shape!r}")
    return shp  # type: ignore[return-value]




def _check_output(output: str) -> str:
    if output not in _OUTPUTS:
        raise ValueError(suggest(output, _OUTPUTS, what="output"))
    return output


@jax.custom_vjp
def _clip01(x: jax.Array) -> jax.Array:
    """Clip to [0, 1]; gradients of saturated values pass only when a descent step would
    move them back inside (Lucid's ``constrain_L_inf`` idea, for a minimized loss)."""
    return jnp.clip(x, 0.0, 1.0)


def _clip01_fwd(x):
    return jnp.clip(x, 0.0, 1.0), x


def _clip01_bwd(x, g):
    inside = (x > 0.0) & (x < 1.0)
    inward = (x - 0.5) * g > 0  # descent (x -= lr * g) moves a saturated x towards 0.5
    return (jnp.where(inside | inward, g, jnp.zeros_like(g)),)


_clip01.defvjp(_clip01_fwd, _clip01_bwd)


def to_valid_rgb(x: jax.Array, *, decorrelate: bool = True, output: str = "sigmoid"):
    """Lucid's ``to_valid_rgb``: optional colour decorrelation (``x @ COLOR_CORRELATION.T``,
    only when the last axis has 3 channels; identity otherwise), then ``sigmoid`` or ``clip``.

    ``clip`` adds an offset first -- Lucid's :data:`COLOR_MEAN` when decorrelated, else 0.5
    (Lucid adds nothing there; 0.5 centres a zero-initialized image) -- and clips to [0, 1]
    with an inward-only gradient for saturated values.
    """
    _check_output(output)
    decor = decorrelate and x.shape[-1] == 3
    if decor:
        x = x @ jnp.asarray(COLOR_CORRELATION.T, x.dtype)
    if output == "sigmoid":
        return jax.nn.sigmoid(x)
    offset = jnp.asarray(COLOR_MEAN, x.dtype) if decor else 0.5
    return _clip01(x + offset)


def _rfft_freqs(h: int, w: int) -> np.ndarray:
    """|frequency| (cycles/pixel) of each rfft2 coefficient, shape [h, w // 2 + 1]."""
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    return np.sqrt(fx * fx + fy * fy)


# ---------------------------------------------------------------------------------------------
# pixel / fft / image
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class _Pixel:
    sd: float
    output: str
    decorrelate: bool

    def init(self, key, shape):
        b, h, w, c = _check_shape(shape)
        return self.sd * draw(key, b, (h, w, c), lambda k, n: jax.random.normal(k, (n,)))

    def to_image(self, params):
        return to_valid_rgb(params.astype(jnp.float32), decorrelate=self.decorrelate,
                            output=self.output)


@dataclasses.dataclass(frozen=True)
class _FFT:
    sd: float
    decay_power: float
    decorrelate: bool
    output: str

    def init(self, key, shape):
        b, h, w, c = _check_shape(shape)
        wf = w // 2 + 1
        coeffs = self.sd * draw(key, b, (h, wf, c, 2),
                                 lambda k, n: jax.random.normal(k, (n,)))
        return SizedParams(coeffs, (h, w))

    def spectrum_scale(self, h: int, w: int) -> np.ndarray:
        """Lucid's per-frequency scale ``sqrt(h w) / max(f, 1 / max(h, w)) ** decay``."""
        freqs = _rfft_freqs(h, w)
        scale = 1.0 / np.maximum(freqs, 1.0 / max(w, h)) ** self.decay_power
        return (scale * np.sqrt(w * h)).astype(np.float32)

    def raw(self, params: SizedParams) -> jax.Array:
        """The image before colour decorrelation and squashing, [B, h, w, C]."""
        h, w = params.size
        coeffs = params.values.astype(jnp.float32)
        spec = jax.lax.complex(coeffs[..., 0], coeffs[..., 1])  # [B, h, wf, C]
        spec = spec * jnp.asarray(self.spectrum_scale(h, w))[None, :, :, None]
        return jnp.fft.irfft2(spec, s=(h, w), axes=(1, 2)) / 4.0

    def to_image(self, params):
        return to_valid_rgb(self.raw(params), decorrelate=self.decorrelate, output=self.output)


def pixel(*, sd: float = 0.01, output: str = "sigmoid", decorrelate: bool = False) -> Param:
    """Plain pixels: params ``[B, h, w, C] ~ N(0, sd)``, image ``to_valid_rgb(params)``
    (sigmoid by default, so the start is a flat grey of 0.5).

    Args:
      sd: standard deviation of the random start.
      output: how parameters become pixels in [0, 1] (``"sigmoid"`` or ``"clip"``).
      decorrelate: optimize in a decorrelated colour space.

    Example:
      >>> import lucidax.models as lm
      >>> from lucidax import visualize as viz
      >>> model = lm.load("starter")
      >>> result = viz.render(model, viz.channel("conv4", 0), param=viz.pixel(), size=32,
      ...                     steps=64, progress=False)
      >>> result.images.shape
      (1, 32, 32, 3)
    """
    return _make(_Pixel(float(sd), _check_output(output), bool(decorrelate)),
                 f"pixel(sd={sd}, output={output!r}, decorrelate={decorrelate})")


def fft(
    *, sd: float = 0.01, decay_power: float = 1.0, decorrelate: bool = True,
    output: str = "sigmoid",
) -> Param:
    """Lucid's Fourier parameterization.

    Params: real and imaginary rfft2 coefficients ``[B, h, w//2+1, C, 2] ~ N(0, sd)`` (in a
    :class:`SizedParams`). Image: coefficients scaled by
    ``sqrt(h w) / max(|f|, 1 / max(h, w)) ** decay_power``, inverse real FFT (so the map is
    unitary for decay 0), divided by 4, then ``to_valid_rgb`` (decorrelation for C = 3,
    sigmoid). For odd widths Lucid kept one extra column and cropped a (w+1)-wide image; here
    the ``w // 2 + 1`` coefficients of a width-``w`` image are used directly.

    Args:
      sd: standard deviation of the random start.
      decay_power: the frequency decay of the scaling.
      decorrelate: optimize in a decorrelated colour space (3-channel images).
      output: how parameters become pixels in [0, 1] (``"sigmoid"`` or ``"clip"``).

    Example:
      >>> import lucidax.models as lm
      >>> from lucidax import visualize as viz
      >>> model = lm.load("starter")
      >>> result = viz.render(model, viz.channel("conv4", 0), param=viz.fft(decorrelate=False),
      ...                     size=32, steps=64, progress=False)
      >>> result.images.shape
      (1, 32, 32, 3)
    """
    return _make(_FFT(float(sd), float(decay_power), bool(decorrelate), _check_output(output)),
                 f"fft(sd={sd}, decay_power={decay_power}, decorrelate={decorrelate}, "
                 f"output={output!r})")


_fft_factory = fft


def image(
    *, fft: bool = True, decorrelate: bool = True, sd: float = 0.01, decay_power: float = 1.0,
    output: str = "sigmoid",
) -> Param:
    """Lucid's default ``param.image``: Fourier (``fft=True``) or pixel parameterization with
    colour decorrelation (when C = 3) and a sigmoid.

    Args:
      fft: parameterize in the Fourier basis (:func:`fft`) instead of pixels.
      decorrelate: optimize in a decorrelated colour space (3-channel images).
      sd: standard deviation of the random start.
      decay_power: the Fourier scaling's frequency decay (``fft`` only).
      output: how parameters become pixels in [0, 1] (``"sigmoid"`` or ``"clip"``).

    Example:
      >>> import lucidax.models as lm
      >>> from lucidax import visualize as viz
      >>> model = lm.load("starter")
      >>> result = viz.render(model, viz.channel("conv4", 0), param=viz.image(fft=False), size=32,
      ...                     steps=64, progress=False)
      >>> result.images.shape
      (1, 32, 32, 3)
    """
    if fft:
        return _fft_factory(sd=sd, decay_power=decay_power, decorrelate=decorrelate,
                            output=output)
    return pixel(sd=sd, output=output, decorrelate=decorrelate)


# ---------------------------------------------------------------------------------------------
# MACO
# ---------------------------------------------------------------------------------------------
def _as_float_image(a: Any) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype == np.uint8:
        a = a.astype(np.float32) / 255.0
    elif a.dtype == np.uint16:
        a = a.astype(np.float32) / 65535.0
    else:
        a = a.astype(np.float32)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3:
        raise ValueError(f"Images must be [H, W] or [H, W, C]; got shape {a.shape}")
    return a


def _read_folder(folder: str | os.PathLike) -> list[np.ndarray]:
    import imageio.v3 as iio

    if not os.path.isdir(folder):
        raise FileNotFoundError(f"No such image folder: {folder}")
    names = sorted(n for n in os.listdir(folder) if n.lower().endswith(IMAGE_EXTENSIONS))
    if not names:
        raise ValueError(
            f"No images in {folder}; looked for files ending in {', '.join(IMAGE_EXTENSIONS)}"
        )
    return [iio.imread(os.path.join(folder, n)) for n in names]


def _resize_matrix(n_in: int, n_out: int) -> np.ndarray:
    """[n_out, n_in] linear-interpolation weights, antialiased (triangle kernel stretched by
    the shrink factor) when shrinking; pixel-centre aligned like ``jax.image.resize``."""
    s = n_out / n_in
    k = min(s, 1.0)
    centres = (np.arange(n_out) + 0.5) / s - 0.5
    wts = np.maximum(0.0, 1.0 - np.abs((np.arange(n_in)[None, :] - centres[:, None]) * k))
    return wts / np.maximum(wts.sum(axis=1, keepdims=True), 1e-12)


def _fit(a: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Centre-crop ``a`` to the aspect ratio of ``hw`` and resize (antialiased) to ``hw``."""
    h, w = a.shape[:2]
    th, tw = hw
    if h * tw > w * th:  # too tall
        ch, cw = max(1, round(w * th / tw)), w
    else:
        ch, cw = h, max(1, round(h * tw / th))
    top, left = (h - ch) // 2, (w - cw) // 2
    a = a[top:top + ch, left:left + cw].astype(np.float64)
    if (ch, cw) == (th, tw):
        return a
    return np.einsum("yi,ijc,xj->yxc", _resize_matrix(ch, th), a, _resize_matrix(cw, tw),
                     optimize=True)


def estimate_spectrum(
    images_or_folder: Any, *, size: int | Sequence[int], window: bool = True
) -> np.ndarray:
    """Average Fourier magnitude ``mean |rfft2|`` (orthonormal) of natural images.

    Args:
      images_or_folder: a folder of image files (read with imageio), or an array
        ``[N, H, W(, C)]`` / a sequence of ``[H, W(, C)]`` arrays (uint8 / uint16 are scaled to
        [0, 1]). Grey images are repeated to 3 channels when others are in colour; an alpha
        channel is dropped.
      size: ``side`` or ``(h, w)``: each image is centre-cropped to that aspect ratio and
        resized (bilinear, antialiased) to it.
      window: subtract each image's channel means and apply an energy-preserving Hann
        window before the FFT, so the image borders (not periodic) do not add a spurious
        cross of energy along the frequency axes (which MACO would turn into a plaid texture).
        ``False``: the plain ``mean |rfft2(image)|``.

    Returns:
      float32 ``[h, w // 2 + 1, C]`` magnitude, usable as ``maco(spectrum=...)``.

    Example:
      >>> import numpy as np
      >>> from lucidax import visualize as viz
      >>> photos = np.random.default_rng(0).random((4, 32, 32, 3), dtype=np.float32)
      >>> viz.estimate_spectrum(photos, size=32).shape
      (32, 17, 3)
    """
    hw = (size, size) if isinstance(size, (int, np.integer)) else tuple(int(s) for s in size)
    if len(hw) != 2 or min(hw) < 1:
        raise ValueError(f"size must be a positive int or (h, w); got {size!r}")
    if isinstance(images_or_folder, (str, os.PathLike)):
        raw = _read_folder(images_or_folder)
    elif isinstance(images_or_folder, np.ndarray) and images_or_folder.ndim in (2, 3):
        raw = [images_or_folder]
    else:
        raw = list(images_or_folder)
    if not raw:
        raise ValueError("estimate_spectrum needs at least one image")
    imgs = [_as_float_image(a) for a in raw]
    imgs = [a[..., : a.shape[2] - 1] if a.shape[2] in (2, 4) else a for a in imgs]  # alpha
    if any(a.shape[2] == 3 for a in imgs):
        imgs = [np.repeat(a, 3, axis=2) if a.shape[2] == 1 else a for a in imgs]
    if len({a.shape[2] for a in imgs}) != 1:
        raise ValueError(f"Images have mixed channel counts: {sorted({a.shape[2] for a in imgs})}")
    win = 1.0
    if window:
        win = np.outer(np.hanning(hw[0] + 2)[1:-1], np.hanning(hw[1] + 2)[1:-1])[:, :, None]
        win = win / np.sqrt(np.mean(win**2))
    total = None
    for a in imgs:
        a = _fit(a, hw)
        if window:
            a = (a - a.mean(axis=(0, 1))) * win
        mag = np.abs(np.fft.rfft2(a, axes=(0, 1), norm="ortho"))
        total = mag if total is None else total + mag
    return (total / len(imgs)).astype(np.float32)


@functools.lru_cache(maxsize=16)
def _default_spectrum(hw: tuple[int, int]) -> np.ndarray:
    import skimage.data

    photos = []
    for name in _SPECTRUM_PHOTOS:
        out = getattr(skimage.data, name)()
        photos.extend(out[:2] if name == "stereo_motorcycle" else [out])
    spec = estimate_spectrum(photos, size=hw)
    spec.setflags(write=False)
    return spec


def default_spectrum(size: int | Sequence[int]) -> np.ndarray:
    """The default MACO magnitude ``[h, w // 2 + 1, 3]``: :func:`estimate_spectrum` over the
    colour photos shipped with scikit-image (astronaut, chelsea, coffee, rocket, both
    stereo_motorcycle views). Computed on first use and cached per size."""
    hw = (size, size) if isinstance(size, (int, np.integer)) else tuple(int(s) for s in size)
    return _default_spectrum(hw).copy()


def _resample_spectrum(spec: np.ndarray, h: int, w: int) -> np.ndarray:
    """Bilinear interpolation of a half spectrum [H, W//2+1, C] (W assumed even) at the
    frequencies of an (h, w) image."""
    hs, wfs = spec.shape[:2]
    ws = 2 * (wfs - 1)
    shifted = np.fft.fftshift(spec, axes=0)
    iy = np.fft.fftfreq(h) * hs + hs // 2  # fractional row index in the shifted source
    ix = np.fft.rfftfreq(w) * max(ws, 1)
    iy = np.clip(iy, 0, hs - 1)
    ix = np.clip(ix, 0, wfs - 1)
    y0, x0 = np.floor(iy).astype(int), np.floor(ix).astype(int)
    y1, x1 = np.minimum(y0 + 1, hs - 1), np.minimum(x0 + 1, wfs - 1)
    fy, fx = (iy - y0)[:, None, None], (ix - x0)[None, :, None]
    top = shifted[y0][:, x0] * (1 - fx) + shifted[y0][:, x1] * fx
    bot = shifted[y1][:, x0] * (1 - fx) + shifted[y1][:, x1] * fx
    return (top * (1 - fy) + bot * fy).astype(np.float32)


def _hermitian_phase(phase: jax.Array, w: int) -> jax.Array:
    """Make the phase of a half spectrum [B, h, wf, C] consistent with a real image.

    The columns ``kx = 0`` (and ``kx = w / 2`` for even ``w``) hold both ``ky`` and ``-ky``;
    their phases are made odd (``phi(-ky) = -phi(ky)``, 0 at self-conjugate points) so that
    ``irfft2`` keeps the magnitude exactly."""
    h = phase.shape[1]
    neg = (-np.arange(h)) % h
    odd = 0.5 * (phase - phase[:, neg])
    cols = np.zeros(phase.shape[2], bool)
    cols[0] = True
    if w % 2 == 0:
        cols[-1] = True
    return jnp.where(jnp.asarray(cols)[None, None, :, None], odd, phase)


@dataclasses.dataclass(frozen=True)
class _Maco:
    spectrum: _ArrayConst | None
    sd: float | None
    output: str

    def magnitude(self, h: int, w: int, c: int) -> np.ndarray:
        """The fixed magnitude [h, w // 2 + 1, c] used for an (h, w, c) image."""
        return _maco_magnitude(self.spectrum, h, w, c)

    def init(self, key, shape):
        b, h, w, c = _check_shape(shape)
        shp = (h, w // 2 + 1, c)
        if self.sd is None:
            phase = draw(key, b, shp, lambda k, n: jax.random.uniform(
                k, (n,), minval=-math.pi, maxval=math.pi))
        else:
            phase = self.sd * draw(key, b, shp, lambda k, n: jax.random.normal(k, (n,)))
        return SizedParams(phase, (h, w))

    def field(self, params: SizedParams) -> jax.Array:
        """``irfft2(magnitude * exp(i * phase))`` before normalization, [B, h, w, C]."""
        h, w = params.size
        phase = _hermitian_phase(params.values.astype(jnp.float32), w)
        mag = jnp.asarray(self.magnitude(h, w, phase.shape[-1]))[None]
        spec = jax.lax.complex(mag * jnp.cos(phase), mag * jnp.sin(phase))
        return jnp.fft.irfft2(spec, s=(h, w), axes=(1, 2), norm="ortho")

    def to_image(self, params):
        x = self.field(params)
        x = x - x.mean(axis=(1, 2, 3), keepdims=True)
        x = x / (x.std(axis=(1, 2, 3), keepdims=True) + 1e-4)
        if self.output == "sigmoid":
            return jax.nn.sigmoid(x)
        return _clip01(0.5 + x / 4.0)


@functools.lru_cache(maxsize=32)
def _maco_magnitude(spectrum: _ArrayConst | None, h: int, w: int, c: int) -> np.ndarray:
    spec = _default_spectrum((h, w)) if spectrum is None else spectrum.array
    if spec.shape[:2] != (h, w // 2 + 1):
        spec = _resample_spectrum(spec, h, w)
    if spec.shape[2] != c:
        spec = np.broadcast_to(spec.mean(axis=2, keepdims=True), spec.shape[:2] + (c,))
    return np.ascontiguousarray(spec, np.float32)


def maco(
    *, spectrum: np.ndarray | None = None, sd: float | None = 1.0, output: str = "sigmoid"
) -> Param:
    """MACO (Fel et al. 2023): the Fourier magnitude is fixed, only the phase is optimized.

    Params: phase ``[B, h, w//2+1, C]`` (in a :class:`SizedParams`), initialized
    ``N(0, sd)`` as in Horama (``sd=None``: uniform in [-pi, pi)). Image: the phase is made
    consistent with a real image on the self-conjugate columns, ``irfft2(magnitude *
    exp(i phase))`` (so ``|rfft2|`` of that field equals the magnitude exactly), normalized per
    image to mean 0 / std 1, then ``sigmoid`` (Horama) or ``clip(0.5 + x / 4)``.

    ``spectrum``: magnitude ``[H, W//2+1, C']`` (see :func:`estimate_spectrum`); default: the
    scikit-image photo average at the image's own size (``default_spectrum``). A spectrum
    of another size is resampled in frequency; with ``C' != C`` the channel mean is used.

    Args:
      spectrum: a fixed magnitude spectrum ``[h, w // 2 + 1, C]`` (see :func:`estimate_spectrum`).
      sd: standard deviation of the random phases.
      output: how parameters become pixels in [0, 1].

    Example:
      >>> import lucidax.models as lm
      >>> from lucidax import visualize as viz
      >>> model = lm.load("starter")
      >>> result = viz.render(model, viz.channel("conv4", 0), param=viz.maco(), size=32,
      ...                     steps=64, progress=False)
      >>> result.images.shape
      (1, 32, 32, 3)
    """
    spec = None
    if spectrum is not None:
        arr = np.asarray(spectrum, np.float32)
        if arr.ndim == 2:
            arr = arr[:, :, None]
        if arr.ndim != 3 or (arr < 0).any():
            raise ValueError(
                f"spectrum must be a non-negative magnitude [H, W//2+1, C]; got shape "
                f"{np.shape(spectrum)}"
            )
        spec = _ArrayConst(arr)
    if sd is not None and not sd > 0:
        raise ValueError(f"sd must be positive (or None for uniform phases); got {sd!r}")
    what = "default" if spec is None else f"array{spec.array.shape}"
    return _make(_Maco(spec, None if sd is None else float(sd), _check_output(output)),
                 f"maco(spectrum={what}, sd={sd}, output={output!r})")


# ---------------------------------------------------------------------------------------------
# CPPN
# ---------------------------------------------------------------------------------------------
def _composite(x):
    x = jnp.arctan(x)
    return jnp.concatenate([x / 0.67, (x * x) / 0.6], -1)


def _composite_unbiased(x):
    x = jnp.arctan(x)
    return jnp.concatenate([x / 0.67, (x * x - 0.45) / 0.396], -1)


def _relu_normalized(x):
    return (jax.nn.relu(x) - 0.40) / 0.58


_ACT_FNS = {"composite": _composite, "composite_unbiased": _composite_unbiased,
            "relu": _relu_normalized}
_ACT_WIDTH = {"composite": 2, "composite_unbiased": 2, "relu": 1}


@dataclasses.dataclass(frozen=True)
class _CPPN:
    num_layers: int
    hidden: int
    activation: str
    radial: bool
    normalize: bool

    def coords(self, h: int, w: int) -> np.ndarray:
        """Input grid [h, w, 2 or 3]: (x, y) spaced so the longer side spans [-sqrt 3, sqrt 3]
        (unit std, as Lucid), plus r / sqrt 2 when ``radial``."""
        r = 3.0**0.5
        step = 2 * r / max(max(h, w) - 1, 1)
        ys = (np.arange(h) - (h - 1) / 2) * step
        xs = (np.arange(w) - (w - 1) / 2) * step
        y, x = np.meshgrid(ys, xs, indexing="ij")
        planes = [x, y] + ([np.sqrt(x * x + y * y) / np.sqrt(2.0)] if self.radial else [])
        return np.stack(planes, -1).astype(np.float32)

    def init(self, key, shape):
        b, h, w, c = _check_shape(shape)
        n_in = 3 if self.radial else 2
        width = _ACT_WIDTH[self.activation]
        fans = [n_in] + [self.hidden * width] * (self.num_layers - 1)
        n_w = sum(f * self.hidden for f in fans)
        n_b = self.num_layers * self.hidden + c
        # one draw for the whole network (cheap to compile): truncated normals, scaled to
        # variance-scaling weights (fan in) and 0.1-std biases, as Lucid's slim.conv2d setup
        flat = draw(key, b, (n_w + n_b,),
                     lambda k, n: jax.random.truncated_normal(k, -2.0, 2.0, (n,)))
        wflat, bflat = flat[:, :n_w], 0.1 * flat[:, n_w:]
        layers, wo, bo = [], 0, 0
        for fan_in in fans:
            std = math.sqrt(1.0 / fan_in) / 0.87962566103423978
            wgt = std * wflat[:, wo:wo + fan_in * self.hidden].reshape(b, fan_in, self.hidden)
            layers.append({"w": wgt, "b": bflat[:, bo:bo + self.hidden]})
            wo, bo = wo + fan_in * self.hidden, bo + self.hidden
        # output layer: zero weights (a flat start)
        layers.append({"w": jnp.zeros((b, self.hidden * width, c)), "b": bflat[:, bo:]})
        return SizedParams(layers, (h, w))

    def to_image(self, params):
        h, w = params.size
        act = _ACT_FNS[self.activation]
        net = jnp.asarray(self.coords(h, w))
        layers = params.values
        for i, layer in enumerate(layers):
            eq = "hwi,bio->bhwo" if i == 0 else "bhwi,bio->bhwo"
            net = jnp.einsum(eq, net, layer["w"].astype(jnp.float32))
            net = net + layer["b"].astype(jnp.float32)[:, None, None, :]
            if i < len(layers) - 1:
                if self.normalize:
                    mu = net.mean(axis=(1, 2), keepdims=True)
                    net = (net - mu) / jnp.sqrt(net.var(axis=(1, 2), keepdims=True) + 1e-6)
                net = act(net)
        return jax.nn.sigmoid(net)


def cppn(
    *, num_layers: int = 8, hidden: int = 24, activation: str = "composite",
    radial: bool = False, normalize: bool = False,
) -> Param:
    """Lucid's Compositional Pattern Producing Network parameterization.

    Each image is its own network (params: per-image weights, leading axis B): ``num_layers``
    1x1 "convs" of ``hidden`` channels over a coordinate grid, each followed by
    ``activation`` -- "composite" (Lucid's default: ``[atan(x) / 0.67, atan(x)^2 / 0.6]``,
    doubling the width), "composite_unbiased" or "relu" (normalized ReLU) -- then a
    zero-initialized output layer with a sigmoid (so the start is flat grey-ish, range
    (0, 1)). Lucid feeds (x, y) only; ``radial=True`` adds the radius r as a third input
    (the classic CPPN input). ``normalize`` adds per-image instance normalization.

    Example:
      >>> import lucidax.models as lm
      >>> from lucidax import visualize as viz
      >>> model = lm.load("starter")
      >>> result = viz.render(model, viz.channel("conv4", 0),
      ...                     param=viz.cppn(num_layers=4, hidden=8), size=32, steps=64,
      ...                     progress=False)
      >>> result.images.shape
      (1, 32, 32, 3)
    """
    if activation not in _ACTIVATIONS:
        raise ValueError(suggest(activation, _ACTIVATIONS, what="activation"))
    if int(num_layers) != num_layers or num_layers < 1:
        raise ValueError(f"num_layers must be a positive int; got {num_layers!r}")
    if int(hidden) != hidden or hidden < 1:
        raise ValueError(f"hidden must be a positive int; got {hidden!r}")
    return _make(_CPPN(int(num_layers), int(hidden), activation, bool(radial), bool(normalize)),
                 f"cppn(num_layers={num_layers}, hidden={hidden}, activation={activation!r}, "
                 f"radial={radial}, normalize={normalize})")
