"""Layer-wise Relevance Propagation (Bach et al. 2015) for any traced lucidax model.

The target's value ``f(x)`` is the relevance at the output; it is propagated back to the
pixels layer by layer, each layer redistributing the relevance of its outputs over its inputs
in proportion to their contributions. As in Zennit / iNNvestigate this is a *modified
backward pass*: the model's forward program (its jaxpr -- so zoo models, the starter and
:func:`~lucidax.models.wrap`-ped functions all work) is re-evaluated equation by equation with
``jax.custom_vjp`` versions of its operations whose "gradient" maps the relevance of the
outputs to the relevance of the inputs (rules on :func:`lucidax.models.hooks.eval_jaxpr`, the
interpreter of the model hooks). Rules, by operation:

* **linear layers** -- ``conv_general_dilated`` (also grouped / depthwise) and
  ``dot_general`` with one operand depending on the image and a constant one (the weights),
  fused with the element-wise affine steps by constants that follow them (the bias add; an
  inference batch-norm ``(u - mean) * scale + shift``), so the block is ``z = a * (W x) + c``
  -- as if the batch-norm were folded into the layer (tested against the folded layer):

  - ``rule="epsilon"``: ``R_i = sum_j x_i w'_ij R_j / (z_j + eps * sign(z_j))`` with
    ``w'_ij = a_j w_ij`` (``epsilon=0`` is LRP-0 = gradient x input);
  - ``rule="alphabeta"``: ``R_i = sum_j (alpha (x_i w'_ij)+ / z_j+ - beta (x_i w'_ij)- / z_j-)
    R_j`` with ``z_j+- = sum_i (x_i w'_ij)+- + c_j+-``, ``alpha - beta = 1`` (default
    ``alpha=1, beta=0``: the z+ rule). Where ``z_j-`` is 0 (no negative contribution) the
    beta term vanishes and that unit passes on ``alpha R_j``, as in other implementations.

  The bias takes its share ``c_j R_j / z_j`` (epsilon) or ``c_j+- R_j / z_j+-``
  (alpha-beta) of the relevance: with biases, relevance is *absorbed* and the pixels'
  relevance sums to less than ``f(x)`` (:func:`lrp_layer_relevance` shows where); with zero
  biases and ``epsilon -> 0`` it is conserved exactly at every layer (tested).
* **sum and average pooling, means** (``reduce_sum``, ``reduce_window_sum``): the same as a
  linear layer with unit weights under the epsilon rule (relevance in proportion to the
  summands).
* **ReLU, max pooling** (``max``, ``reduce_max``, ``reduce_window_max``), slicing, reshapes,
  transposes, padding, gathers, concatenation: relevance passes through (to the winning
  input for maxima) -- their ordinary gradient does exactly that.
* **ReLU6** (``jax.nn.relu6``, ``jnp.clip(x, 0, 6)``, ``min(relu(x), 6)``; any cap > 0): an
  element-wise activation, relevance passes to its input unchanged (Zennit's ``Pass``; the
  gradient would drop the relevance of units above the cap). Any other ``min`` / ``max``
  with a constant (a clipping) is refused.
* **element-wise affine operations with a constant** (``x - mean``, ``x / std``, ``* c``,
  ``+ c`` not following a linear layer): relevance passes through unchanged (so the
  relevance of the normalized image is the relevance of the raw pixels).
* **the sum of two activations** (residual connections): ``R_a = a R / z``, ``R_b = b R / z``
  (epsilon-stabilized).

The target itself (a class logit, a channel mean... of the activations) is propagated with
LRP-0, so the relevance entering the network is exactly the target's value ``f(x)``.

Any other operation on the path from the image to the target -- e.g. the local response
normalization of InceptionV1 (a product of activations and ``rsqrt``), ``exp``, a softmax --
has no rule here and is refused with an :class:`LRPUnsupportedError` naming the operations.
Checked: the starter, VGG16 and ResNet50 (batch-norm folded as above, residual sums) run;
InceptionV1 is refused (``mul of image-dependent values (x4), rsqrt (x2)``).
"""

from __future__ import annotations

import collections
import dataclasses
import numbers
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.extend import core as jcore

from lucidax.models import Model, suggest
from lucidax.models.hooks import (
    bind_equation,
    call_body,
    clipped_relu,
    eval_jaxpr,
    scalar_literal,
)

from ._common import (
    REDUCTIONS,
    TRACE_COUNT,
    Attribution,
    check_reduce,
    finish,
    prepare,
    program,
    score,
)

__all__ = ["LRP_RULES", "LRPUnsupportedError", "lrp", "lrp_layer_relevance"]

#: rules of :func:`lrp` for convolutional and dense layers (``rule=``)
LRP_RULES = ("epsilon", "alphabeta")

_LINEAR = ("conv_general_dilated", "dot_general")
_NORM = ("reduce_sum", "reduce_window_sum")
# ops whose ordinary gradient routes relevance correctly (selection / rearrangement)
_STRUCTURAL = frozenset({
    "slice", "reshape", "transpose", "squeeze", "expand_dims", "broadcast_in_dim",
    "concatenate", "pad", "rev", "gather", "dynamic_slice", "select_n", "reduce_max",
    "reduce_window_max", "convert_element_type", "copy", "copy_p", "reduce_precision",
    "optimization_barrier", "max",
})
# ops whose result carries no relevance (booleans, integers, gradients that are zero)
_NO_RELEVANCE = frozenset({
    "eq", "ne", "gt", "ge", "lt", "le", "and", "or", "not", "argmax", "argmin", "sign",
    "is_finite", "floor", "ceil", "round", "stop_gradient", "iota",
})
_PASS = frozenset({"neg"})  # element-wise, relevance unchanged


class LRPUnsupportedError(NotImplementedError, ValueError):
    """The model contains operations that have no LRP rule (the message lists them).

    Example:
      >>> import jax.numpy as jnp
      >>> import lucidax.models as lm
      >>> from lucidax.attribute import LRPUnsupportedError, lrp
      >>> model = lm.wrap(lambda p, x, layers: {"logits": jnp.sin(x).mean(axis=(1, 2))}, {},
      ...                 input_spec=lm.InputSpec(side=8), layer_names=("logits",),
      ...                 logits_layer="logits")
      >>> try:
      ...     lrp(model, model.params, jnp.ones((1, 8, 8, 3)), target=0)
      ... except LRPUnsupportedError as e:
      ...     print("refused:", "sin" in str(e))
      refused: True
    """


@dataclasses.dataclass(frozen=True)
class _Rule:
    name: str
    epsilon: float
    alpha: float
    beta: float


# ---------------------------------------------------------------------------------------------
# rules as custom_vjp functions: the cotangent is the relevance
# ---------------------------------------------------------------------------------------------
def _safe_div(a, b):
    ok = b != 0
    return jnp.where(ok, a / jnp.where(ok, b, jnp.ones_like(b)), jnp.zeros_like(a))


def _stab(z, eps: float):
    return z + jnp.where(z >= 0, eps, -eps).astype(z.dtype)


def _linear_rule(bind: Callable, rule: _Rule) -> Callable:
    """``f(x, w, a, c) = a * bind(x, w) + c`` (``bind`` linear in ``x``; ``a``, ``c`` the
    element-wise scale and shift that follow the layer: its bias, a batch-norm...) whose
    backward maps the relevance of the outputs to the relevance of ``x``."""

    @jax.custom_vjp
    def f(x, w, a, c):
        return a * bind(x, w) + c

    def fwd(x, w, a, c):
        z = a * bind(x, w) + c
        return z, (x, w, a, c, z)

    def transpose(w, x, s):  # (d bind(., w) / dx)^T s -- bind is linear in x
        return jax.vjp(lambda xx: bind(xx, w), x)[1](s)[0]

    def bwd(res, r):
        x, w, a, c, z = res
        if rule.name == "epsilon":
            rx = x * transpose(w, x, a * _safe_div(r, _stab(z, rule.epsilon)))
        else:
            zero = jnp.zeros((), x.dtype)
            xp, xn = jnp.maximum(x, zero), jnp.minimum(x, zero)
            wp, wn = jnp.maximum(w, zero), jnp.minimum(w, zero)
            ap, an = jnp.maximum(a, zero), jnp.minimum(a, zero)
            pos = bind(xp, wp) + bind(xn, wn)  # sum of the positive products x_i w_ij
            neg = bind(xp, wn) + bind(xn, wp)  # ... and of the negative ones
            zp = ap * pos + an * neg + jnp.maximum(c, zero)  # z_j+ (scale a_j may flip signs)
            zn = ap * neg + an * pos + jnp.minimum(c, zero)  # z_j-
            sp = rule.alpha * _safe_div(r, zp)
            sn = rule.beta * _safe_div(r, zn)
            t1 = ap * sp - an * sn  # for positive products x_i w_ij
            t2 = an * sp - ap * sn  # for negative ones
            rx = (xp * (transpose(wp, x, t1) + transpose(wn, x, t2))
                  + xn * (transpose(wn, x, t1) + transpose(wp, x, t2)))
        return rx.astype(x.dtype), jnp.zeros_like(w), jnp.zeros_like(a), jnp.zeros_like(c)

    f.defvjp(fwd, bwd)
    return f


@jax.custom_vjp
def _sum_rule(a, b, eps):
    return a + b


def _sum_fwd(a, b, eps):
    z = a + b
    return z, (a, b, z, eps)


def _sum_bwd(res, r):
    a, b, z, eps = res
    s = _safe_div(r, z + jnp.where(z >= 0, eps, -eps))
    ra, rb = a * s, b * s
    # undo broadcasting (an operand may have size-1 axes)
    ra = jnp.sum(ra, axis=[i for i, d in enumerate(a.shape) if d == 1 and ra.shape[i] != 1],
                 keepdims=True).reshape(a.shape)
    rb = jnp.sum(rb, axis=[i for i, d in enumerate(b.shape) if d == 1 and rb.shape[i] != 1],
                 keepdims=True).reshape(b.shape)
    return ra, rb, jnp.zeros_like(eps)


_sum_rule.defvjp(_sum_fwd, _sum_bwd)


def _passthrough(fn: Callable, x, *consts):
    """``fn(x, *consts)`` (element-wise in ``x``, same shape) whose backward passes the
    relevance to ``x`` unchanged."""

    @jax.custom_vjp
    def f(x, *cs):
        return fn(x, *cs)

    def fwd(x, *cs):
        return fn(x, *cs), cs

    def bwd(cs, r):
        return (r, *(jnp.zeros_like(c) for c in cs))

    f.defvjp(fwd, bwd)
    return f(x, *consts)


def _elementwise(eqn, pos: int) -> Callable:
    """``fn(x, c)``: the binary equation with the image-dependent operand at ``pos``."""

    def fn(x, c):
        return bind_equation(eqn, [x, c] if pos == 0 else [c, x])[0]

    return fn


def _clip(x, cap):
    return jnp.clip(x, jnp.zeros((), x.dtype), cap)


# ---------------------------------------------------------------------------------------------
# the rules, on the model-hook interpreter (lucidax.models.hooks.eval_jaxpr)
# ---------------------------------------------------------------------------------------------
class _Ctx:
    def __init__(self, rule: _Rule, probes: list | None):
        self.rule = rule
        self.probes = probes  # zero deltas added to each linear layer's input, or None
        self.shapes: list[tuple[str, Any]] = []  # (label, ShapeDtypeStruct) per linear input
        self.unsupported: collections.Counter[str] = collections.Counter()

    def probe(self, label: str, x):
        k = len(self.shapes)
        self.shapes.append((label, jax.ShapeDtypeStruct(jnp.shape(x), jnp.result_type(x))))
        return x + self.probes[k] if self.probes is not None else x


def _linear_bind(eqn, pos: int) -> Callable:
    """``bind(x, w)`` for a linear equation whose image-dependent operand is at ``pos``."""

    def bind(x, w):
        return bind_equation(eqn, [x, w] if pos == 0 else [w, x])[0]

    return bind


def _norm_bind(eqn) -> Callable:
    def bind(x, _w):
        return bind_equation(eqn, [x])[0]

    return bind


def _apply_steps(steps: tuple, u):
    for eqn, pos, const in steps:
        args = [u] if const is None else ([u, const] if pos == 0 else [const, u])
        u = bind_equation(eqn, args)[0]
    return u


def _affine_step(eqn, tin: list[bool]) -> int | None:
    """``pos`` of ``u`` if ``eqn`` is ``u + c``, ``u - c``, ``c - u``, ``u * c``, ``c * u``,
    ``u / c`` or ``-u`` with ``u`` image-dependent, ``c`` not, same shape out; else None."""
    name = eqn.primitive.name
    if name == "neg":
        return 0
    if name not in ("add", "sub", "mul", "div") or all(tin) or not any(tin):
        return None
    pos = tin.index(True)
    if name == "div" and pos == 1:
        return None
    if tuple(eqn.invars[pos].aval.shape) != tuple(eqn.outvars[0].aval.shape):
        return None
    return pos


class _Scope:
    """The LRP rules for one jaxpr (the program, or the body of a call it enters): a rule of
    :func:`lucidax.models.hooks.eval_jaxpr` tracking which values depend on the image."""

    def __init__(self, jaxpr: jcore.Jaxpr, tainted: list[bool], ctx: _Ctx):
        self.ctx = ctx
        self.taint: dict[Any, bool] = dict(zip(jaxpr.invars, tainted, strict=True))
        self.uses: collections.Counter[Any] = collections.Counter(
            v for eqn in jaxpr.eqns for v in eqn.invars if not isinstance(v, jcore.Literal))
        self.uses.update(v for v in jaxpr.outvars if not isinstance(v, jcore.Literal))
        # output var of a linear layer (possibly followed by element-wise affine steps) that
        # is consumed once -> (bind, x, w, shape of bind(x, w), affine steps so far)
        self.pending: dict[Any, tuple] = {}
        self.relu_outs: set[Any] = set()  # outputs of ReLUs

    def tainted(self, v) -> bool:
        return (not isinstance(v, jcore.Literal)) and self.taint.get(v, False)

    def __call__(self, eqn, invals: list) -> list:
        tin = [self.tainted(v) for v in eqn.invars]
        outs, out_t = self._rule(eqn, invals, tin) if any(tin) else (
            bind_equation(eqn, invals), [False] * len(eqn.outvars))
        for v, t in zip(eqn.outvars, out_t, strict=True):
            if not isinstance(v, jcore.DropVar):
                self.taint[v] = t
        return outs

    def _rule(self, eqn, invals: list, tin: list[bool]) -> tuple[list, list[bool]]:
        ctx, name = self.ctx, eqn.primitive.name
        out_t = [True] * len(eqn.outvars)
        pos = _affine_step(eqn, tin)
        src = None if pos is None else eqn.invars[pos]
        if name in _LINEAR:
            if all(tin):
                ctx.unsupported[f"{name} of two image-dependent operands"] += 1
                return bind_equation(eqn, invals), out_t
            pos = tin.index(True)
            bind = _linear_bind(eqn, pos)
            x = ctx.probe(f"{name}:{len(ctx.shapes)}", invals[pos])
            w = invals[1 - pos]
            one = jnp.ones((), jnp.result_type(x))
            out = eqn.outvars[0]
            if self.uses[out] == 1:
                self.pending[out] = (bind, x, w, tuple(out.aval.shape), ())
            return [_linear_rule(bind, ctx.rule)(x, w, one, one * 0)], out_t
        if src is not None and not isinstance(src, jcore.Literal) and src in self.pending:
            # the bias (or batch-norm scale/shift...) of a linear layer: one affine block
            bind, x, w, shape, steps = self.pending[src]
            const = None if name == "neg" else invals[1 - pos]
            steps = (*steps, (eqn, pos, const))
            dtype = jnp.result_type(x)
            zeros = _apply_steps(steps, jnp.zeros(shape, dtype))
            scale = _apply_steps(steps, jnp.ones(shape, dtype)) - zeros
            out = eqn.outvars[0]
            if self.uses[out] == 1:
                self.pending[out] = (bind, x, w, shape, steps)
            return [_linear_rule(bind, ctx.rule)(x, w, scale, zeros)], out_t
        if name in ("add", "sub", "add_any"):
            a, b = invals
            if all(tin):
                if name == "sub":
                    b = _passthrough(jnp.negative, b)
                eps = jnp.asarray(ctx.rule.epsilon, jnp.result_type(a))
                return [_sum_rule(a, b, eps)], out_t
            pos = tin.index(True)
            if jnp.shape(invals[pos]) != tuple(eqn.outvars[0].aval.shape):
                ctx.unsupported[f"{name} broadcasting an activation"] += 1
                return bind_equation(eqn, invals), out_t
            return [_passthrough(_elementwise(eqn, pos), invals[pos], invals[1 - pos])], out_t
        if name in ("mul", "div"):
            pos = tin.index(True)
            if all(tin) or (name == "div" and pos == 1):
                ctx.unsupported[f"{name} of image-dependent values"] += 1
            elif jnp.shape(invals[pos]) != tuple(eqn.outvars[0].aval.shape):
                ctx.unsupported[f"{name} broadcasting an activation"] += 1
            else:
                return [_passthrough(_elementwise(eqn, pos), invals[pos], invals[1 - pos])], out_t
            return bind_equation(eqn, invals), out_t
        if name in _NORM:
            x = invals[0]
            zero = jnp.zeros((), jnp.result_type(x))
            eps_rule = dataclasses.replace(ctx.rule, name="epsilon")
            return [_linear_rule(_norm_bind(eqn), eps_rule)(x, zero, zero + 1, zero)], out_t
        if name in _PASS:
            return [_passthrough(_norm_bind(eqn), invals[0], jnp.zeros((), jnp.float32))], out_t
        if (found := clipped_relu(eqn, invals)) is not None:
            x, cap = found  # max(x, 0), jax.nn.relu, jax.nn.relu6, jnp.clip(x, 0, cap)...
            if cap is None:
                self.relu_outs.add(eqn.outvars[0])  # a following min(., cap) is a ReLU6
                return [jnp.maximum(x, jnp.zeros((), jnp.result_type(x)))], out_t
            # ReLU6: relevance passes to the input unchanged (Zennit's Pass)
            return [_passthrough(_clip, x, jnp.asarray(cap, jnp.result_type(x)))], out_t
        if name == "min" and not all(tin) and eqn.invars[tin.index(True)] in self.relu_outs \
                and (scalar_literal(eqn.invars[1 - tin.index(True)]) or 0) > 0:
            # min(relu(x), cap) with the ReLU's output used elsewhere too: a ReLU6
            pos = tin.index(True)
            return [_passthrough(_elementwise(eqn, pos), invals[pos], invals[1 - pos])], out_t
        if name in ("max", "min") and not all(tin):
            ctx.unsupported["max with a constant other than 0 (clipping)" if name == "max"
                            else "min with a constant (clipping) other than a ReLU6's cap"] += 1
            return bind_equation(eqn, invals), out_t
        if name == "min" or name in _STRUCTURAL or name in _NO_RELEVANCE:
            # min of two image-dependent values: to the smaller, as max
            return bind_equation(eqn, invals), out_t
        if (body := call_body(eqn)) is not None:
            inner, consts, n_skip = body
            scope = _Scope(inner, tin[n_skip:], ctx)
            outs = eval_jaxpr(inner, consts, invals[n_skip:], rule=scope)
            return outs, [scope.tainted(v) for v in inner.outvars]
        ctx.unsupported[name] += 1
        return bind_equation(eqn, invals), out_t


def _interpret(fn: Callable, args: tuple, tainted_arg: int, ctx: _Ctx) -> list:
    """``fn(*args)`` (flat outputs) with the LRP rules on values depending on
    ``args[tainted_arg]``."""
    abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(jnp.shape(a), jnp.result_type(a)),
                            args)
    closed = jax.make_jaxpr(fn)(*abstract)
    leaves, tainted = [], []
    for i, a in enumerate(args):
        sub = jax.tree.leaves(a)
        leaves += sub
        tainted += [i == tainted_arg] * len(sub)
    scope = _Scope(closed.jaxpr, tainted, ctx)
    return eval_jaxpr(closed.jaxpr, list(closed.consts), leaves, rule=scope)


def _relevance_fn(model: Model, spec, rule: _Rule, params, tdata, probes: list | None,
                  ctx_out: list):
    """``x -> [N]`` target values whose vjp (at cotangent f(x)) is the relevance.

    The model runs with ``rule``; the target (an objective of the activations: a class logit,
    a channel mean...) with LRP-0, so that the relevance entering the model's layers sums to
    the target's value."""
    layers = spec.layers

    def f(x):
        ctx = _Ctx(rule, probes)
        acts = _interpret(lambda p, im: tuple(model.apply(p, im, layers)[k] for k in layers),
                          (params, x), 1, ctx)
        acts = dict(zip(layers, acts, strict=True))
        ctx_obj = _Ctx(_Rule("epsilon", 0.0, 1.0, 0.0), None)
        (out,) = _interpret(lambda a, td: score(spec, td, a, x), (acts, tdata), 0, ctx_obj)
        unsupported = ctx.unsupported + ctx_obj.unsupported
        if unsupported:
            ops = ", ".join(f"{k} (x{v})" for k, v in sorted(unsupported.items()))
            raise LRPUnsupportedError(
                f"LRP: {model.name} computes operations with no relevance rule on the path "
                f"from the image to the target: {ops}. Supported: linear layers "
                f"({', '.join(_LINEAR)}) with their bias, sum/average pooling, ReLU, ReLU6, "
                f"max pooling, element-wise affine maps with constants, residual sums and "
                f"rearrangements. Use a gradient method (e.g. integrated_gradients) instead.")
        ctx_out.append(ctx)
        return out

    return f


def _check_rule(rule: str, epsilon: float, alpha: float, beta: float) -> _Rule:
    if rule not in LRP_RULES:
        raise ValueError(suggest(rule, LRP_RULES, what="LRP rule"))
    for nm, v in (("epsilon", epsilon), ("alpha", alpha), ("beta", beta)):
        if not isinstance(v, numbers.Real) or not v >= 0:
            raise ValueError(f"{nm} must be a number >= 0; got {v!r}")
    if rule == "alphabeta" and abs(alpha - beta - 1) > 1e-6:
        raise ValueError(f"the alpha-beta rule needs alpha - beta = 1 (to conserve relevance); "
                         f"got alpha={alpha}, beta={beta}")
    return _Rule(rule, float(epsilon), float(alpha), float(beta))


def _lrp_program(model: Model, spec, rule: _Rule, reduce: str):
    def build(shell):
        def run(params, x, tdata):
            TRACE_COUNT["lrp"] += 1
            f = _relevance_fn(shell, spec, rule, params, tdata, None, [])
            s, vjp = jax.vjp(f, x)
            (raw,) = vjp(s)
            return REDUCTIONS[reduce](raw), raw, s

        return run

    return program(model, ("lrp", spec, rule, reduce), build)


def lrp(
    model: Model, params: Any, images: Any, target: Any, *, rule: str = "epsilon",
    epsilon: float = 1e-6, alpha: float = 1.0, beta: float = 0.0, reduce: str = "sum",
    return_raw: bool = False,
) -> jax.Array | Attribution:
    """LRP relevance maps ``[N, H, W]`` (see the module doc for the rules).

    Args:
      rule: ``"epsilon"`` (LRP-epsilon; ``epsilon=0`` is LRP-0) or ``"alphabeta"`` for the
        convolutional and dense layers (pooling always uses the epsilon rule).
      epsilon: stabilizer of the epsilon rule (also of sums; default 1e-6: numerically
        conservative; 0.25 or so gives the sparser LRP-epsilon maps).
      alpha, beta: the alpha-beta rule's weights, ``alpha - beta = 1`` (default z+ rule).
      reduce: channel reduction (default ``"sum"``: the relevance of the pixel).
      model, params: the model (made of dense / conv / pooling / ReLU layers) and its
        parameters.
      images: ``[N, H, W, C]`` images in the model's value range.
      target: a class index or label, one per image, ``"predicted"`` or an objective.

    The relevance of an image sums to the target's value ``f(x)`` minus what the biases
    absorb (exactly ``f(x)`` for bias-free ReLU networks as ``epsilon -> 0``);
    ``return_raw=True`` gives ``raw`` ``[N, H, W, C]`` and ``scores`` = ``f(x)``.

    Raises:
      LRPUnsupportedError: the model computes operations with no LRP rule (listed).

    Example:
      >>> import numpy as np
      >>> import lucidax.models as lm
      >>> from lucidax.attribute import lrp
      >>> model = lm.load("starter")
      >>> images = np.random.default_rng(0).random((2, 64, 64, 3), dtype=np.float32)
      >>> lrp(model, model.params, images, target=3, rule="epsilon").shape
      (2, 64, 64)
    """
    cfg = _check_rule(rule, epsilon, alpha, beta)
    x, spec, tdata = prepare(model, params, images, target)
    maps, raw, s = _lrp_program(model, spec, cfg, check_reduce(reduce))(params, x, tdata)
    return finish(maps, raw, s, return_raw=return_raw, method="lrp")


def _layers_program(model: Model, spec, rule: _Rule, n_probes: int):
    def build(shell):
        def run(params, x, tdata, probes):
            TRACE_COUNT["lrp_layers"] += 1

            def f(xx, pr):
                return _relevance_fn(shell, spec, rule, params, tdata, list(pr), [])(xx)

            s, vjp = jax.vjp(f, x, probes)
            raw, rprobes = vjp(s)
            n = x.shape[0]
            return s, raw.reshape(n, -1).sum(1), [r.reshape(n, -1).sum(1) for r in rprobes]

        return run

    return program(model, ("lrp_layers", spec, rule, n_probes), build)


def lrp_layer_relevance(
    model: Model, params: Any, images: Any, target: Any, *, rule: str = "epsilon",
    epsilon: float = 1e-6, alpha: float = 1.0, beta: float = 0.0,
) -> dict[str, jax.Array]:
    """Total relevance ``[N]`` entering each linear layer, in forward order, plus
    ``"input"`` (the pixels) and ``"output"`` (``f(x)``): a conservation check.

    Keys are ``"input"``, ``"<primitive>:<k>"`` for the k-th linear layer of the traced
    program (``conv_general_dilated:0``, ..., ``dot_general:5``; the totals at their
    inputs) and ``"output"``. Without biases and with ``epsilon -> 0`` every entry equals
    ``f(x)``; a bias absorbs ``sum_j b_j R_j / z_j`` of the relevance at its layer.

    Args:
      model, params: the model and its parameters.
      images: ``[N, H, W, C]`` images.
      target: a class index or label, one per image, ``"predicted"`` or an objective.
      rule, epsilon, alpha, beta: as in :func:`lrp`.

    Example:
      >>> import numpy as np
      >>> import lucidax.models as lm
      >>> from lucidax.attribute import lrp_layer_relevance
      >>> model = lm.load("starter")
      >>> images = np.random.default_rng(0).random((2, 64, 64, 3), dtype=np.float32)
      >>> rel = lrp_layer_relevance(model, model.params, images, target=3)
      >>> list(rel)[0], list(rel)[-1], rel["input"].shape
      ('input', 'output', (2,))
    """
    cfg = _check_rule(rule, epsilon, alpha, beta)
    x, spec, tdata = prepare(model, params, images, target)
    ctxs: list[_Ctx] = []
    jax.eval_shape(_relevance_fn(model, spec, cfg, params, tdata, None, ctxs), x)
    shapes = ctxs[0].shapes
    probes = [jnp.zeros(sd.shape, sd.dtype) for _, sd in shapes]
    s, r_in, r_layers = _layers_program(model, spec, cfg, len(probes))(params, x, tdata, probes)
    out = {"input": r_in}
    out.update({label: r for (label, _), r in zip(shapes, r_layers, strict=True)})
    out["output"] = s
    return out
