"""Input gradients that XLA:CPU runs fast inside optimization loops (same values, other programs).

The render loop (and SmoothGrad / Integrated Gradients) differentiate a model with respect to
its *input* inside a ``lax.scan`` / ``lax.map``.
Two standard gradients are slow on XLA:CPU there (measured on InceptionV1, jax 0.10.2):

* convolutions: JAX's transpose rule folds the kernel flip/transposition into the dimension
  numbers of the backward convolution; outside a loop XLA materializes the transposed kernel
  and calls its fast convolution, but inside a while loop it does not and falls back to a
  generic implementation that is ~3x slower (a 3x3 conv: 54 ms -> 165 ms per step).
  Stride-2 input gradients are also lhs-dilated convolutions, slower than the same work done
  as one stride-1 convolution over the four polyphase components.
* max pooling: its gradient is ``select_and_scatter``, 10-20x slower than the forward pool.

:func:`call` evaluates a function's jaxpr with ``conv_general_dilated`` (NHWC/HWIO, no
dilation or grouping, strides 1 or 2) and ``reduce_window_max`` (spatial windows) replaced by
``custom_vjp`` versions: the backward convolution gets an explicitly transposed kernel behind
an ``optimization_barrier`` (stride 2: one stride-1 convolution producing the four phases),
and the max-pool gradient routes each output's cotangent to the first maximal element of its
window with elementwise selects and strided pads (what ``select_and_scatter`` computes).
Forward values are bit-identical; gradients agree to float rounding. Any other primitive is
bound unchanged; nested ``jit`` calls are inlined.

Depthwise convolutions (``feature_group_count`` = channels, kernel ``(k, k, 1, C)``, as in
MobileNet / EfficientNet) are slow on XLA:CPU in *both* directions: its grouped-convolution
kernel runs the forward pass 5-25x slower than the same multiply-adds written as ``k * k``
shifted, strided slices of the padded input times one kernel tap each, which XLA fuses into
one elementwise loop (measured, batch 8, ms: ``[112,112,96]`` k3 s2 131 -> 28, ``[56,56,144]``
k3 s1 113 -> 6, ``[28,28,240]`` k5 s1 70 -> 5.5, ``[14,14,672]`` k5 s2 14 -> 1). :func:`call`
replaces them by a ``custom_vjp`` computed that way: forward the shifted sum, input gradient
the cotangent's shifted sum with the flipped kernel (stride 2: four polyphase shifted sums,
interleaved), kernel gradient JAX's own (dead code when only the input gradient is used).
Values agree with the convolution to float rounding. :func:`apply` runs a model's forward
pass through the same replacement (dataset examples, activation extraction). This one is
applied on the CPU backend only: it was measured there, and GPU libraries have their own
depthwise kernels.

With ``redirect`` (a traced 0/1 scalar), ReLUs (``max(x, 0)``, ``jax.nn.relu``) also get
Lucid's *redirected* gradient while ``redirect`` is 1: for a row (image) whose ReLU gradient
is entirely zero, the gradient passes through the ReLU except where it would push a negative
input further down (``lucid/misc/redirected_relu_grad.py``), so optimization can start from
images that do not activate the unit at all. Capped ReLUs (ReLU6: ``jax.nn.relu6``,
``jnp.clip(x, 0, 6)``, ``min(max(x, 0), 6)``) get Lucid's ``redirected_relu6_grad``: the
ReLU6 gradient (``0 < x < 6``), and for a row where it is entirely zero, the gradient except
where it would push an input below 0 further down or one above 6 further up.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from .hooks import clipped_relu, interpret

__all__ = ["apply", "call"]

_DN = ("NHWC", "HWIO", "NHWC")
_CANONICAL = lax.conv_dimension_numbers((1, 8, 8, 1), (1, 1, 1, 1), _DN)


# ---------------------------------------------------------------------------------------------
# convolution
# ---------------------------------------------------------------------------------------------
def _conv_fwd_impl(x, k, strides, padding, precision):
    return lax.conv_general_dilated(x, k, strides, padding, dimension_numbers=_DN,
                                    precision=precision)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _conv(x, k, strides, padding, precision):
    return _conv_fwd_impl(x, k, strides, padding, precision)


def _conv_fwd(x, k, strides, padding, precision):
    return _conv_fwd_impl(x, k, strides, padding, precision), (x, k)


def _conv_input_grad_s1(g, k, x_shape, padding, precision):
    kh, kw = k.shape[:2]
    (pt, pb), (pl, pr) = padding
    kt = lax.optimization_barrier(jnp.transpose(k[::-1, ::-1], (0, 1, 3, 2)))
    pads = ((kh - 1 - pt, kh - 1 - pb), (kw - 1 - pl, kw - 1 - pr))
    dx = lax.conv_general_dilated(g, kt, (1, 1), pads, dimension_numbers=_DN,
                                  precision=precision)
    return dx[:, : x_shape[1], : x_shape[2]]


def _conv_input_grad_s2(g, k, x_shape, padding, precision):
    """Input gradient of a stride-2 conv as one stride-1 conv giving the 4 polyphase parts."""
    n, h, w, ci = x_shape
    kh, kw, _, co = k.shape
    (pt, pb), (pl, pr) = padding
    hp, wp = h + pt + pb, w + pl + pr
    ph, pw = (kh + 1) // 2, (kw + 1) // 2
    kp = jnp.pad(k, ((0, 2 * ph - kh), (0, 2 * pw - kw), (0, 0), (0, 0)))
    ks = kp.reshape(ph, 2, pw, 2, ci, co)[::-1, :, ::-1]  # [p, r, q, s, ci, co], p/q flipped
    kc = lax.optimization_barrier(ks.transpose(0, 2, 5, 1, 3, 4).reshape(ph, pw, co, 4 * ci))
    out = lax.conv_general_dilated(g, kc, (1, 1), ((ph - 1, ph - 1), (pw - 1, pw - 1)),
                                   dimension_numbers=_DN, precision=precision)
    ha, wa = out.shape[1], out.shape[2]
    out = out.reshape(n, ha, wa, 2, 2, ci).transpose(0, 1, 3, 2, 4, 5)
    out = out.reshape(n, 2 * ha, 2 * wa, ci)
    if 2 * ha < hp or 2 * wa < wp:
        out = jnp.pad(out, ((0, 0), (0, max(0, hp - 2 * ha)), (0, max(0, wp - 2 * wa)), (0, 0)))
    # padding may be negative (a crop): positions before the image are simply not returned
    top, left = pt, pl
    if top < 0 or left < 0:
        out = jnp.pad(out, ((0, 0), (max(0, -top), 0), (max(0, -left), 0), (0, 0)))
        top, left = max(top, 0), max(left, 0)
    return out[:, top : top + h, left : left + w]


def _conv_bwd(strides, padding, precision, res, g):
    x, k = res
    if strides == (1, 1):
        dx = _conv_input_grad_s1(g, k, x.shape, padding, precision)
    else:
        dx = _conv_input_grad_s2(g, k, x.shape, padding, precision)
    _, vjp_k = jax.vjp(lambda kk: _conv_fwd_impl(x, kk, strides, padding, precision), k)
    (dk,) = vjp_k(g)  # dead code (removed by XLA) when only the input gradient is used
    return dx.astype(x.dtype), dk


_conv.defvjp(_conv_fwd, _conv_bwd)


def _conv_supported(params: dict, invals: list) -> bool:
    x, k = invals
    return (
        x.ndim == 4
        and k.ndim == 4
        and params["dimension_numbers"] == _CANONICAL
        and tuple(params["window_strides"]) in ((1, 1), (2, 2))
        and tuple(params["lhs_dilation"]) == (1, 1)
        and tuple(params["rhs_dilation"]) == (1, 1)
        and params["feature_group_count"] == 1
        and params["batch_group_count"] == 1
        and params.get("preferred_element_type") is None
        and x.dtype == k.dtype
        and jnp.issubdtype(x.dtype, jnp.floating)
        and all(p >= 0 for pair in params["padding"] for p in pair)
    )


# ---------------------------------------------------------------------------------------------
# depthwise convolution
# ---------------------------------------------------------------------------------------------
def _shifted_sum(xp, taps, out_hw, stride):
    """``sum_ij xp[:, s*y + i, s*x + j] * taps[i, j]``: a VALID depthwise correlation of the
    (already padded) NHWC ``xp`` with ``taps`` ``[kh, kw, C]``, output ``out_hw``."""
    n, _, _, c = xp.shape
    ho, wo = out_hw
    out = None
    for i in range(taps.shape[0]):
        for j in range(taps.shape[1]):
            part = lax.slice(xp, (0, i, j, 0), (n, i + (ho - 1) * stride + 1,
                                                j + (wo - 1) * stride + 1, c),
                             (1, stride, stride, 1)) * taps[i, j]
            out = part if out is None else out + part
    return out


def _dw_fwd_impl(x, k, stride, padding):
    (pt, pb), (pl, pr) = padding
    kh, kw = k.shape[:2]
    xp = jnp.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    ho = (x.shape[1] + pt + pb - kh) // stride + 1
    wo = (x.shape[2] + pl + pr - kw) // stride + 1
    return _shifted_sum(xp, k[:, :, 0, :], (ho, wo), stride)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _dwconv(x, k, stride, padding):
    return _dw_fwd_impl(x, k, stride, padding)


def _dwconv_fwd(x, k, stride, padding):
    return _dw_fwd_impl(x, k, stride, padding), (x, k)


def _dw_input_grad(g, k, x_shape, stride, padding):
    n, h, w, c = x_shape
    (pt, pb), (pl, pr) = padding
    hp, wp = h + pt + pb, w + pl + pr
    taps = k[:, :, 0, :]
    kh, kw = taps.shape[:2]
    ho, wo = g.shape[1:3]
    if stride == 1:  # the cotangent correlated with the flipped kernel, over the padded input
        gp = jnp.pad(g, ((0, 0), (kh - 1, kh - 1), (kw - 1, kw - 1), (0, 0)))
        dxp = _shifted_sum(gp, taps[::-1, ::-1], (hp, wp), 1)
        return dxp[:, pt : pt + h, pl : pl + w]
    # stride 2: padded position (2q + a, 2r + b) gets taps i = a + 2m, j = b + 2l from output
    # (q - m, r - l): one stride-1 shifted sum per phase (a, b), then interleaved
    qh, qw = -(-hp // 2), -(-wp // 2)
    rows = []
    for a in (0, 1):
        cols = []
        for b in (0, 1):
            sub = taps[a::2, b::2]
            ma, mb = sub.shape[:2]
            if ma == 0 or mb == 0:
                cols.append(jnp.zeros((n, qh, qw, c), g.dtype))
                continue
            gp = jnp.pad(g, ((0, 0), (ma - 1, max(0, qh - ho)), (mb - 1, max(0, qw - wo)),
                             (0, 0)))
            cols.append(_shifted_sum(gp, sub[::-1, ::-1], (qh, qw), 1))
        rows.append(jnp.stack(cols, axis=3))  # [n, qh, qw, 2 (b), c]
    dxp = jnp.stack(rows, axis=2).reshape(n, 2 * qh, 2 * qw, c)  # [n, qh, 2 (a), qw, 2, c]
    return dxp[:, pt : pt + h, pl : pl + w]


def _dwconv_bwd(stride, padding, res, g):
    x, k = res
    dx = _dw_input_grad(g, k, x.shape, stride, padding)
    _, vjp_k = jax.vjp(
        lambda kk: lax.conv_general_dilated(x, kk, (stride, stride), padding,
                                            dimension_numbers=_DN,
                                            feature_group_count=x.shape[-1]), k)
    (dk,) = vjp_k(g)  # dead code (removed by XLA) when only the input gradient is used
    return dx.astype(x.dtype), dk


_dwconv.defvjp(_dwconv_fwd, _dwconv_bwd)


def _dw_supported(params: dict, invals: list) -> bool:
    x, k = invals
    c = x.shape[-1] if x.ndim == 4 else -1
    strides = tuple(params["window_strides"])
    return (
        x.ndim == 4
        and k.ndim == 4
        and params["dimension_numbers"] == _CANONICAL
        and strides in ((1, 1), (2, 2))
        and tuple(params["lhs_dilation"]) == (1, 1)
        and tuple(params["rhs_dilation"]) == (1, 1)
        and params["feature_group_count"] == c > 1
        and params["batch_group_count"] == 1
        and k.shape[2] == 1 and k.shape[3] == c
        and k.shape[0] * k.shape[1] <= 49
        and params.get("preferred_element_type") is None
        and x.dtype == k.dtype
        and jnp.issubdtype(x.dtype, jnp.floating)
        and all(p >= 0 for pair in params["padding"] for p in pair)
    )


# ---------------------------------------------------------------------------------------------
# max pooling
# ---------------------------------------------------------------------------------------------
def _pool_fwd_impl(x, window, strides, padding):
    return lax.reduce_window(x, -jnp.inf, lax.max, window, strides, padding)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def _max_pool(x, window, strides, padding):
    return _pool_fwd_impl(x, window, strides, padding)


def _pool_fwd(x, window, strides, padding):
    y = _pool_fwd_impl(x, window, strides, padding)
    return y, (x, y)


def _pool_bwd(window, strides, padding, res, g):
    x, y = res
    n, h, w, c = x.shape
    _, kh, kw, _ = window
    _, sh, sw, _ = strides
    (pt, pb), (pl, pr) = padding[1], padding[2]
    xp = jnp.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)), constant_values=-jnp.inf)
    hp, wp = h + pt + pb, w + pl + pr
    ho, wo = y.shape[1], y.shape[2]
    span_h, span_w = sh * (ho - 1) + 1, sw * (wo - 1) + 1
    taken = jnp.zeros(y.shape, bool)
    zero = jnp.zeros((), g.dtype)
    dxp = None
    for i in range(kh):
        for j in range(kw):
            window_ij = lax.slice(xp, (0, i, j, 0), (n, i + span_h, j + span_w, c),
                                  (1, sh, sw, 1))
            hit = (window_ij == y) & ~taken  # first maximal element, as select_and_scatter
            taken = taken | hit
            placed = lax.pad(jnp.where(hit, g, zero), zero,
                             ((0, 0, 0), (i, hp - i - span_h, sh - 1),
                              (j, wp - j - span_w, sw - 1), (0, 0, 0)))
            dxp = placed if dxp is None else dxp + placed
    return (dxp[:, pt : pt + h, pl : pl + w],)


_max_pool.defvjp(_pool_fwd, _pool_bwd)


def _pool_supported(params: dict, invals: list) -> bool:
    (x,) = invals
    win, strides, pads = params["window_dimensions"], params["window_strides"], params["padding"]
    return (
        x.ndim == 4
        and jnp.issubdtype(x.dtype, jnp.floating)
        and win[0] == 1 and win[3] == 1
        and strides[0] == 1 and strides[3] == 1
        and tuple(pads[0]) == (0, 0) and tuple(pads[3]) == (0, 0)
        and all(p >= 0 for pair in pads for p in pair)
        and all(d == 1 for d in params["base_dilation"])
        and all(d == 1 for d in params["window_dilation"])
        and all(s <= k for s, k in zip(strides[1:3], win[1:3], strict=True))
    )


# ---------------------------------------------------------------------------------------------
# redirected ReLU
# ---------------------------------------------------------------------------------------------
@jax.custom_vjp
def _redirected_relu(x, active):
    return jnp.maximum(x, jnp.zeros((), x.dtype))


def _rrelu_fwd(x, active):
    return _redirected_relu(x, active), (x, active)


def _unless_blocked(grad, redirected, active):
    """``grad``, except in the rows (images, leading axis) where it is entirely zero while
    ``active`` is on: ``redirected`` there (a scalar input is one row)."""
    rows = grad.reshape(grad.shape[0], -1) if grad.ndim else grad.reshape(1, 1)
    blocked = jnp.all(rows == 0, axis=1) & (active > 0)
    blocked = blocked.reshape((-1,) + (1,) * (grad.ndim - 1)) if grad.ndim else blocked[0]
    return jnp.where(blocked, redirected, grad)


def _rrelu_bwd(res, g):
    x, active = res
    zero = jnp.zeros((), g.dtype)
    relu_grad = jnp.where(x < 0, zero, g)
    # g is d(loss)/d(out) of a minimized loss: g > 0 pushes the input lower
    redirected = jnp.where((x < 0) & (g > 0), zero, g)
    return _unless_blocked(relu_grad, redirected, active), jnp.zeros_like(active)


_redirected_relu.defvjp(_rrelu_fwd, _rrelu_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _redirected_relu6(x, active, cap):
    return jnp.minimum(jnp.maximum(x, jnp.zeros((), x.dtype)), jnp.asarray(cap, x.dtype))


def _rrelu6_fwd(x, active, cap):
    return _redirected_relu6(x, active, cap), (x, active)


def _rrelu6_bwd(cap, res, g):
    """Lucid's ``redirected_relu6_grad``: the ReLU6 gradient (``0 < x < cap``); for a row
    whose ReLU6 gradient is all zero, the gradient passes except where it would push an input
    below 0 further down or one above the cap further up."""
    x, active = res
    zero = jnp.zeros((), g.dtype)
    relu6_grad = jnp.where((x > 0) & (x < cap), g, zero)
    # g is d(loss)/d(out) of a minimized loss: g > 0 pushes the input lower, g < 0 higher
    redirected = jnp.where(((x < 0) & (g > 0)) | ((x > cap) & (g < 0)), zero, g)
    return _unless_blocked(relu6_grad, redirected, active), jnp.zeros_like(active)


_redirected_relu6.defvjp(_rrelu6_fwd, _rrelu6_bwd)


# ---------------------------------------------------------------------------------------------
# the rule given to the model-hook interpreter (lucidax.models.hooks)
# ---------------------------------------------------------------------------------------------
def _rule(redirect: Any, fast: bool):
    def rule(eqn, invals):
        name, params = eqn.primitive.name, eqn.params
        if fast and name == "conv_general_dilated" and _conv_supported(params, invals):
            pads = tuple(tuple(int(p) for p in pair) for pair in params["padding"])
            return [_conv(*invals, tuple(params["window_strides"]), pads, params["precision"])]
        if (fast and name == "conv_general_dilated" and _dw_supported(params, invals)
                and jax.default_backend() == "cpu"):  # measured on XLA:CPU only
            pads = tuple(tuple(int(p) for p in pair) for pair in params["padding"])
            return [_dwconv(*invals, int(params["window_strides"][0]), pads)]
        if fast and name == "reduce_window_max" and _pool_supported(params, invals):
            pads = tuple(tuple(int(p) for p in pair) for pair in params["padding"])
            return [_max_pool(invals[0], tuple(params["window_dimensions"]),
                              tuple(params["window_strides"]), pads)]
        if redirect is not None and (found := clipped_relu(eqn, invals)) is not None:
            x, cap = found
            return [_redirected_relu(x, redirect) if cap is None
                    else _redirected_relu6(x, redirect, cap)]
        return None

    return rule


def call(fn, *args, redirect: Any = None, fast: bool = True):
    """``fn(*args)`` with convolution and max-pool gradients (and depthwise convolutions)
    replaced (``fast``, see the module doc); with ``redirect`` (a float scalar, 1 = on), ReLU
    and ReLU6 gradients are redirected."""
    return interpret(fn, *args, rule=_rule(redirect, fast))


def apply(model, params: Any, images: Any, layers: Any) -> dict:
    """``model.apply(params, images, layers)`` through :func:`call`: the same activations (to
    float rounding), computed with the faster depthwise convolutions. Jittable (``layers``
    static)."""
    return call(lambda p, x: model.apply(p, x, layers), params, images)
