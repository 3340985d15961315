"""Hooks into a model's forward pass, for any :class:`~lucidax.models.Model`.

Attribution and concept tests need more than ``model.apply``: the gradient of a logit with
respect to a *hidden* activation (TCAV, Grad-CAM), or the same network with its ReLUs given
another gradient (Guided Backprop). The architectures only *record* their activations (see
:class:`~lucidax.models.Taps`), so these hooks work on the traced program instead: the forward
pass is traced to a jaxpr once and re-evaluated equation by equation, with a perturbation
added to chosen intermediate values or chosen operations replaced. That makes them work
unchanged for the zoo, the starter model and :func:`~lucidax.models.wrap`-ped functions.

>>> import jax, jax.numpy as jnp
>>> acts = model.apply(params, x, ("conv3",))
>>> def logit(delta):
...     out = apply_perturbed(model, params, x, ("logits",), {"conv3": delta})
...     return out["logits"][:, 3].sum()
>>> d_logit_d_conv3 = jax.grad(logit)(jnp.zeros_like(acts["conv3"]))

:func:`interpret` / :func:`eval_jaxpr` are the one jaxpr interpreter of lucidax -- these hooks,
the fast gradients of :mod:`lucidax.models.fastgrad` and LRP (:func:`lucidax.attribute.lrp`,
whose rules enter custom-derivative calls with :func:`call_body`) are rules on it (a ``rule``
may replace any equation); :func:`relu_input` recognizes the ReLUs of a traced program and
:func:`relu6_input` its capped ReLUs ``min(max(x, 0), cap)`` (ReLU6: ``jax.nn.relu6``,
``jnp.clip(x, 0, 6)``, ``jnp.minimum(jnp.maximum(x, 0), 6)``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax.extend import core as jcore

from ._base import Model, normalize_layers, suggest

__all__ = [
    "Rule",
    "apply_perturbed",
    "apply_with_relu",
    "bind_equation",
    "call_body",
    "clipped_relu",
    "eval_jaxpr",
    "interpret",
    "is_relu",
    "is_relu6",
    "relu6_input",
    "relu_input",
    "scalar_literal",
]

#: ``rule(eqn, invals) -> outputs | None``: return the equation's outputs (a list) to replace
#: it, or None to evaluate it normally. Call-like equations (``pjit``, ``remat``...) are
#: entered unless the rule handles them; custom-derivative calls (``custom_jvp_call``...) are
#: bound as they are (entering them would drop their derivative rule) unless the rule enters
#: them itself (:func:`call_body`, :func:`eval_jaxpr`: LRP does). A rule may be a stateful
#: object (LRP keeps one per evaluated jaxpr).
Rule = Callable[[Any, list], "list | None"]

#: Call-like primitives whose body evaluates to the same values and derivatives: entered.
_CALLS = ("pjit", "jit", "closed_call", "core_call", "remat", "remat2", "checkpoint")
#: Calls with their own derivative rule: their body gives the values, not the derivatives.
_CUSTOM_CALLS = ("custom_jvp_call", "custom_vjp_call", "custom_vjp_call_jaxpr")


# ---------------------------------------------------------------------------------------------
# the evaluator
# ---------------------------------------------------------------------------------------------
def bind_equation(eqn, invals: list) -> list:
    """Evaluate one equation on ``invals`` as JAX would (a list of outputs)."""
    bound = eqn.primitive.get_bind_params(eqn.params)
    if isinstance(bound, tuple):  # older jax: (subfuns, params)
        subfuns, bound = bound
        invals = [*subfuns, *invals]
    ctx = getattr(getattr(eqn, "ctx", None), "manager", None)
    if ctx is not None:
        with ctx:
            outs = eqn.primitive.bind(*invals, **bound)
    else:
        outs = eqn.primitive.bind(*invals, **bound)
    return list(outs) if eqn.primitive.multiple_results else [outs]


def call_body(eqn) -> tuple[jcore.Jaxpr, list, int] | None:
    """``(body, consts, n_skip)`` of a call-like equation -- ``pjit`` / ``jit``,
    ``closed_call``, ``core_call``, ``remat`` (``jax.checkpoint``), ``custom_jvp_call``,
    ``custom_vjp_call`` -- else None: its jaxpr, the jaxpr's constants, and how many leading
    inputs of the equation are not inputs of the body (custom calls may lead with constants).
    Evaluating ``body`` on ``invals[n_skip:]`` gives the equation's values."""
    name = eqn.primitive.name
    if name not in _CALLS and name not in _CUSTOM_CALLS:
        return None
    for key in ("jaxpr", "call_jaxpr", "fun_jaxpr"):
        inner = eqn.params.get(key)
        if isinstance(inner, jcore.ClosedJaxpr):
            return inner.jaxpr, list(inner.consts), len(eqn.invars) - len(inner.jaxpr.invars)
        if isinstance(inner, jcore.Jaxpr):
            return inner, [], len(eqn.invars) - len(inner.invars)
    return None


def eval_jaxpr(
    jaxpr: jcore.Jaxpr,
    consts: Sequence[Any],
    args: Sequence[Any],
    *,
    rule: Rule | None = None,
    add: Mapping[Any, Any] | None = None,
) -> list:
    """Evaluate ``jaxpr`` on ``args``, entering call-like equations: the one interpreter of
    lucidax (hooks, fast gradients, Guided Backprop, LRP).

    ``rule`` may replace equations (see :data:`Rule`); with a rule, a capped ReLU written as
    two equations ``min(relu(x), cap)`` is presented to it as one (see :func:`relu6_input`).
    ``add`` maps variables of ``jaxpr`` to values added to them right where they are produced
    (so every consumer sees the sum).
    """
    env: dict[Any, Any] = {}
    add = dict(add or {})

    def read(v):
        return v.val if isinstance(v, jcore.Literal) else env[v]

    def write(v, value):
        if isinstance(v, jcore.DropVar):
            return
        env[v] = value + add.pop(v) if v in add else value

    for v, a in zip(jaxpr.constvars, consts, strict=True):
        write(v, a)
    for v, a in zip(jaxpr.invars, args, strict=True):
        write(v, a)
    eqns = jaxpr.eqns if rule is None else _fuse_relu6(jaxpr, add)
    for eqn in eqns:
        invals = [read(v) for v in eqn.invars]
        outs = rule(eqn, invals) if rule is not None else None
        if outs is None:
            body = call_body(eqn) if eqn.primitive.name in _CALLS else None
            if body is not None:
                inner, inner_consts, n_skip = body
                # perturbations of this call's outputs are applied inside it, where produced
                inner_add = {inner.outvars[i]: add.pop(v) for i, v in enumerate(eqn.outvars)
                             if v in add and not isinstance(inner.outvars[i], jcore.Literal)}
                outs = eval_jaxpr(inner, inner_consts, invals[n_skip:], rule=rule,
                                  add=inner_add)
            else:
                outs = bind_equation(eqn, invals)
        for v, o in zip(eqn.outvars, outs, strict=True):
            write(v, o)
    if add:
        raise ValueError("apply_perturbed: could not place a perturbation (the activation is "
                         "a constant of the traced program)")
    return [read(v) for v in jaxpr.outvars]


def _abstract(tree: Any) -> Any:
    return jax.tree.map(lambda a: jax.ShapeDtypeStruct(jnp.shape(a), jnp.result_type(a)), tree)


def interpret(fn: Callable, *args: Any, rule: Rule | None = None) -> Any:
    """``fn(*args)``, evaluated equation by equation with ``rule`` replacing equations.

    Differentiable and jittable like ``fn`` (the program is traced from the shapes of
    ``args``; ``args`` may themselves be tracers).
    """
    closed, out_shape = jax.make_jaxpr(fn, return_shape=True)(*_abstract(args))
    outs = eval_jaxpr(closed.jaxpr, closed.consts, jax.tree.leaves(args), rule=rule)
    return jax.tree.unflatten(jax.tree.structure(out_shape), outs)


# ---------------------------------------------------------------------------------------------
# ReLUs and capped ReLUs (ReLU6)
# ---------------------------------------------------------------------------------------------
def _scalar(v, known: Mapping[Any, float] | None = None) -> float | None:
    """The value of ``v`` if it is a scalar literal (or a variable of ``known``), else None."""
    if isinstance(v, jcore.Literal):
        try:
            return float(v.val) if jnp.ndim(v.val) == 0 else None
        except Exception:  # noqa: BLE001 -- exotic literal types are simply not constants
            return None
    return None if known is None else known.get(v)


def scalar_literal(v) -> float | None:
    """The value of the jaxpr atom ``v`` if it is a scalar literal (e.g. a ``min``'s cap),
    else None."""
    return _scalar(v)


def _is_zero_literal(v) -> bool:
    return _scalar(v) == 0


def _relu_operand(eqn) -> int | None:
    """Index of ``x`` if ``eqn`` is ``max(x, 0)`` / ``max(0, x)`` with a literal zero."""
    if eqn.primitive.name != "max" or len(eqn.invars) != 2:
        return None
    a, b = eqn.invars
    if _is_zero_literal(b) and not _is_zero_literal(a):
        return 0
    if _is_zero_literal(a) and not _is_zero_literal(b):
        return 1
    return None


def _body(eqn) -> tuple[jcore.Jaxpr, int] | None:
    """``(body, n_skip)`` of a call-like equation without constants (see :func:`call_body`)."""
    found = call_body(eqn)
    return None if found is None or found[1] else (found[0], found[2])


def _clipped_body(jaxpr: jcore.Jaxpr, known: dict) -> tuple[int, float | None] | None:
    """``(i, cap)`` if ``jaxpr`` computes ``relu(x)`` (cap None) or ``min(relu(x), cap)``
    (``cap > 0``) of its input ``i``, its other inputs being the constants of ``known``."""
    free = [i for i, v in enumerate(jaxpr.invars) if v not in known]
    if len(free) != 1 or len(jaxpr.outvars) != 1:
        return None
    known = dict(known)
    cur, state, cap = jaxpr.invars[free[0]], 0, None  # state: 0 x, 1 relu(x), 2 capped
    for eqn in jaxpr.eqns:
        name, ins = eqn.primitive.name, eqn.invars
        if name == "convert_element_type" and _scalar(ins[0], known) is not None:
            known[eqn.outvars[0]] = _scalar(ins[0], known)
            continue
        if len(eqn.outvars) != 1 or not any(v is cur for v in ins):
            return None
        others = [_scalar(v, known) for v in ins if v is not cur]
        if name == "max" and state == 0 and others == [0.0]:
            state = 1
        elif name == "min" and state == 1 and len(others) == 1 and (others[0] or 0) > 0:
            state, cap = 2, others[0]
        elif state == 0 and (sub := _body(eqn)) is not None:
            body, n_skip = sub
            inner_known = {bv: _scalar(ov, known) for bv, ov in zip(body.invars, ins[n_skip:],
                                                                   strict=True)
                           if ov is not cur and _scalar(ov, known) is not None}
            found = _clipped_body(body, inner_known)
            if found is None or ins[n_skip + found[0]] is not cur:
                return None
            state, cap = (1, None) if found[1] is None else (2, found[1])
        else:
            return None
        cur = eqn.outvars[0]
    return (free[0], cap) if state and jaxpr.outvars[0] is cur else None


def _clipped_index(eqn) -> tuple[int, float | None] | None:
    """``(i, cap)``: ``eqn`` computes ``relu(x)`` (cap None) or ``min(relu(x), cap)`` of its
    input ``i`` (``max(x, 0)``, ``jax.nn.relu``, ``jax.nn.relu6``, ``jnp.clip(x, 0, cap)``, a
    jitted function of these), else None."""
    i = _relu_operand(eqn)
    if i is not None:
        return i, None
    sub = _body(eqn)
    if sub is None:
        return None
    body, n_skip = sub
    known = {bv: _scalar(ov) for bv, ov in zip(body.invars, eqn.invars[n_skip:], strict=True)
             if _scalar(ov) is not None}
    found = _clipped_body(body, known)
    return None if found is None else (n_skip + found[0], found[1])


def clipped_relu(eqn, invals: list) -> tuple[Any, float | None] | None:
    """``(x, None)`` if ``eqn`` computes ``relu(x)``, ``(x, cap)`` if it computes the capped
    ReLU ``min(max(x, 0), cap)`` (see :func:`relu6_input`), else None: both recognitions in
    one walk of the equation. For use in a :data:`Rule`."""
    found = _clipped_index(eqn)
    return None if found is None else (invals[found[0]], found[1])


def is_relu(eqn) -> bool:
    """Whether ``eqn`` computes ``relu(x)`` (``max(x, 0)``, ``jax.nn.relu``)."""
    found = _clipped_index(eqn)
    return found is not None and found[1] is None


def relu_input(eqn, invals: list) -> Any | None:
    """The input ``x`` if ``eqn`` computes ``relu(x)`` (``max(x, 0)``, ``jax.nn.relu``), else
    None (also for a ReLU6: see :func:`relu6_input`). For use in a :data:`Rule`."""
    found = _clipped_index(eqn)
    return invals[found[0]] if found is not None and found[1] is None else None


def is_relu6(eqn) -> bool:
    """Whether ``eqn`` computes a capped ReLU ``min(relu(x), cap)`` (see :func:`relu6_input`)."""
    found = _clipped_index(eqn)
    return found is not None and found[1] is not None


def relu6_input(eqn, invals: list) -> tuple[Any, float] | None:
    """``(x, cap)`` if ``eqn`` computes the capped ReLU ``min(max(x, 0), cap)`` -- ReLU6 for
    ``cap = 6``: ``jax.nn.relu6``, ``jnp.clip(x, 0, cap)`` or a jitted function of these --
    else None. For use in a :data:`Rule`.

    The two-equation form ``jnp.minimum(jnp.maximum(x, 0), cap)`` (or ``jax.nn.relu`` then
    ``min``) is presented to rules as one such equation by :func:`eval_jaxpr` (when the ReLU's
    output feeds only the ``min``; else a rule sees the ReLU, then a ``min`` with a literal
    cap: :func:`scalar_literal`)."""
    found = _clipped_index(eqn)
    return (invals[found[0]], found[1]) if found is not None and found[1] is not None else None


_FUSED = "lucidax.models.hooks relu6 fusion"


@functools.cache
def _jit_template(shape: tuple[int, ...], dtype: Any):
    """A traced one-input ``jit`` equation of this shape, whose parameters serve as a
    template (traced once per shape, not once per fused pair and evaluation)."""
    spec = jax.ShapeDtypeStruct(shape, dtype)
    return jax.make_jaxpr(jax.jit(lambda a: -a, inline=False))(spec).jaxpr.eqns[0]


def _fused_relu6(relu_eqn, min_eqn, x, out):
    """A ``jit`` equation ``out = min(relu(x), cap)`` whose body is the two given equations
    (so evaluating it is evaluating them). Its parameters are those of a traced ``jit``
    equation (their set changes between JAX versions) with this body."""
    body = jcore.Jaxpr([], [x], [out], [relu_eqn, min_eqn],
                       debug_info=jcore.DebugInfo(_FUSED, None, None, None))
    template = _jit_template(tuple(x.aval.shape), x.aval.dtype)
    params = dict(template.params, jaxpr=jcore.ClosedJaxpr(body, []), name="relu6")
    return template.replace(invars=[x], outvars=[out], params=params)


def _fuse_relu6(jaxpr: jcore.Jaxpr, add: Mapping[Any, Any]) -> list:
    """The equations of ``jaxpr`` with each ``relu`` equation whose output feeds only a
    ``min(., cap)`` (a literal ``cap > 0``) replaced by one ``jit`` equation of the two."""
    if getattr(jaxpr.debug_info, "traced_for", None) == _FUSED:
        return list(jaxpr.eqns)  # the body of such a fused equation
    uses: dict[Any, int] = {}
    for eqn in jaxpr.eqns:
        for v in eqn.invars:
            if not isinstance(v, jcore.Literal):
                uses[v] = uses.get(v, 0) + 1
    for v in jaxpr.outvars:
        if not isinstance(v, jcore.Literal):
            uses[v] = uses.get(v, 0) + 2
    relus: dict[Any, tuple[int, Any]] = {}  # relu output -> (its equation's index, x)
    for k, eqn in enumerate(jaxpr.eqns):
        found = _clipped_index(eqn) if len(eqn.outvars) == 1 else None
        if found is not None and found[1] is None and not isinstance(eqn.invars[found[0]],
                                                                      jcore.Literal):
            relus[eqn.outvars[0]] = (k, eqn.invars[found[0]])
    eqns: list = list(jaxpr.eqns)
    for k, eqn in enumerate(jaxpr.eqns):
        if eqn.primitive.name != "min" or len(eqn.invars) != 2:
            continue
        a, b = eqn.invars
        y, cap = (a, _scalar(b)) if not isinstance(a, jcore.Literal) else (b, _scalar(a))
        if (isinstance(y, jcore.Literal) or y not in relus or cap is None or not cap > 0
                or uses.get(y) != 1 or y in add or eqn.outvars[0].aval.shape != y.aval.shape):
            continue
        i, x = relus[y]
        # evaluated where the ReLU was (its inputs are ready there); the min is dropped
        eqns[i] = _fused_relu6(jaxpr.eqns[i], eqn, x, eqn.outvars[0])
        eqns[k] = None
    return [e for e in eqns if e is not None]


# ---------------------------------------------------------------------------------------------
# model hooks
# ---------------------------------------------------------------------------------------------
def _check_model(model: Any) -> None:
    if not isinstance(model, Model):
        raise TypeError(f"model must be a lucidax Model (see lucidax.models.load / wrap); got "
                        f"{type(model).__name__}")


def apply_perturbed(
    model: Model,
    params: Any,
    images: Any,
    layers: str | Sequence[str],
    perturb: Mapping[str, Any],
) -> dict[str, jax.Array]:
    """``model.apply(params, images, layers)`` with ``perturb[name]`` added to the activation
    of layer ``name`` before the rest of the network consumes it.

    Each perturbation must broadcast to its layer's activation. Returned activations of the
    perturbed layers include the perturbation; deeper layers are computed from it. The result
    is differentiable in the perturbations: the gradient at zero is the gradient with respect
    to the activation itself (the network "truncated from" that layer).

    Args:
      model: a lucidax :class:`Model` (zoo, starter or :func:`wrap`-ped).
      params: its parameters (``model.params`` or any pytree of the same structure).
      images: float ``[N, H, W, C]`` in the model's value range.
      layers: the layers to return (a name, a comma-separated string or a sequence).
      perturb: ``{layer: delta}``, each ``delta`` broadcasting to that layer's activation
        (``[N, H, W, C]`` for a conv layer, ``[N, C]`` for a dense one).

    Returns:
      ``{layer: activations}`` for ``layers``, in their order.

    Raises:
      ValueError: an empty ``perturb``, an unknown layer in it, or a ``delta`` that does not
        broadcast to its activation.
      TypeError: ``model`` is not a lucidax :class:`Model`.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import lucidax.models as lm
      >>> model = lm.load("starter")
      >>> x = jnp.zeros((2, 64, 64, 3))
      >>> def logit(delta):  # logit 3 as a function of the conv3 activation
      ...     out = lm.apply_perturbed(model, model.params, x, "logits", {"conv3": delta})
      ...     return out["logits"][:, 3].sum()
      >>> jax.grad(logit)(jnp.zeros((2, 16, 16, 64))).shape
      (2, 16, 16, 64)
    """
    _check_model(model)
    if not isinstance(perturb, Mapping) or not perturb:
        raise ValueError("perturb must be a non-empty {layer: delta} mapping")
    wanted = normalize_layers(layers, model.layer_names)
    for name in perturb:
        if name not in model.layer_names:
            raise ValueError(f"perturb: unknown layer {name!r} of {model.name}. "
                             f"{suggest(name, model.layer_names)}")
    names = tuple(dict.fromkeys((*wanted, *perturb)))

    def forward(p, x):
        return model.apply(p, x, names)

    closed, out_shape = jax.make_jaxpr(forward, return_shape=True)(*_abstract((params, images)))
    index = jax.tree.structure(out_shape).unflatten(range(len(names)))  # name -> outvar index
    outvars = closed.jaxpr.outvars
    add: dict[Any, Any] = {}
    for name, delta in perturb.items():
        var = outvars[index[name]]
        shape = out_shape[name].shape
        delta = jnp.asarray(delta, out_shape[name].dtype)
        try:
            delta = jnp.broadcast_to(delta, shape)
        except ValueError:
            raise ValueError(f"perturb[{name!r}] has shape {delta.shape}; it must broadcast to "
                             f"the activation shape {shape}") from None
        if isinstance(var, jcore.Literal):
            raise ValueError(f"perturb: the activation of {name!r} is a constant")
        add[var] = add[var] + delta if var in add else delta
    leaves = eval_jaxpr(closed.jaxpr, closed.consts, jax.tree.leaves((params, images)), add=add)
    acts = jax.tree.unflatten(jax.tree.structure(out_shape), leaves)
    return {name: acts[name] for name in wanted}


def apply_with_relu(
    model: Model,
    params: Any,
    images: Any,
    layers: str | Sequence[str],
    relu: Callable[[jax.Array], jax.Array],
) -> dict[str, jax.Array]:
    """``model.apply(params, images, layers)`` with every ReLU of the model (``max(x, 0)``,
    ``jax.nn.relu``) replaced by ``relu(x)`` — e.g. a ``jax.custom_vjp`` ReLU with another
    gradient (Guided Backprop).

    Capped ReLUs ``min(max(x, 0), cap)`` (ReLU6: ``jax.nn.relu6``, ``jnp.clip(x, 0, 6)``,
    see ``lucidax.models.hooks.relu6_input``) become ``min(relu(x), cap)``: the same values,
    with ``relu``'s gradient below the cap and none above it (where ReLU6 is flat).

    Args:
      model: a lucidax :class:`Model` (zoo, starter or :func:`wrap`-ped).
      params: its parameters (``model.params`` or any pytree of the same structure).
      images: float ``[N, H, W, C]`` in the model's value range.
      layers: the layers to return (a name, a comma-separated string or a sequence).
      relu: the replacement, ``relu(x) -> array`` of ``x``'s shape (its values should be
        ReLU's; its gradient is what changes).

    Returns:
      ``{layer: activations}`` for ``layers``, in their order.

    Raises:
      TypeError: ``model`` is not a lucidax :class:`Model`, or ``relu`` is not callable.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import lucidax.models as lm
      >>> model = lm.load("starter")
      >>> x = jnp.full((1, 64, 64, 3), 0.5)
      >>> acts = lm.apply_with_relu(model, model.params, x, "logits", jax.nn.relu)
      >>> bool(jnp.allclose(acts["logits"], model.apply(model.params, x, "logits")["logits"]))
      True
    """
    _check_model(model)
    if not callable(relu):
        raise TypeError(f"relu must be a function x -> relu(x); got {relu!r}")
    wanted = normalize_layers(layers, model.layer_names)

    def rule(eqn, invals):
        found = clipped_relu(eqn, invals)
        if found is None:
            return None
        x, cap = found
        if cap is None:
            return [relu(x)]
        return [jnp.minimum(relu(x), jnp.asarray(cap, jnp.result_type(x)))]

    return interpret(lambda p, x: model.apply(p, x, wanted), params, images, rule=rule)
