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

:func:`interpret` / :func:`eval_jaxpr` are the evaluator these are built on (a ``rule`` may
replace any equation); :func:`relu_input` recognizes the ReLUs of a traced program.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax.extend import core as jcore

from .base import Model, normalize_layers, suggest

__all__ = [
    "Rule",
    "apply_perturbed",
    "apply_with_relu",
    "bind_equation",
    "eval_jaxpr",
    "interpret",
    "is_relu",
    "relu_input",
]

#: ``rule(eqn, invals) -> outputs | None``: return the equation's outputs (a list) to replace
#: it, or None to evaluate it normally. Call-like equations (``pjit``...) are entered unless
#: the rule handles them.
Rule = Callable[[Any, list], "list | None"]

_CALLS = ("pjit", "jit", "closed_call", "core_call")


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


def _inner(eqn) -> tuple[jcore.Jaxpr, list] | None:
    """The body of a call-like equation (``pjit``...), or None."""
    if eqn.primitive.name not in _CALLS:
        return None
    inner = eqn.params.get("jaxpr")
    if isinstance(inner, jcore.ClosedJaxpr):
        return inner.jaxpr, list(inner.consts)
    if isinstance(inner, jcore.Jaxpr):
        return inner, []
    return None


def eval_jaxpr(
    jaxpr: jcore.Jaxpr,
    consts: Sequence[Any],
    args: Sequence[Any],
    *,
    rule: Rule | None = None,
    add: Mapping[Any, Any] | None = None,
) -> list:
    """Evaluate ``jaxpr`` on ``args``, entering call-like equations.

    ``rule`` may replace equations (see :data:`Rule`); ``add`` maps variables of ``jaxpr`` to
    values added to them right where they are produced (so every consumer sees the sum).
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
    for eqn in jaxpr.eqns:
        invals = [read(v) for v in eqn.invars]
        outs = rule(eqn, invals) if rule is not None else None
        if outs is None:
            body = _inner(eqn)
            if body is not None:
                # perturbations of this call's outputs are applied inside it, where produced
                inner_add = {body[0].outvars[i]: add.pop(v) for i, v in enumerate(eqn.outvars)
                             if v in add and not isinstance(body[0].outvars[i], jcore.Literal)}
                outs = eval_jaxpr(body[0], body[1], invals, rule=rule, add=inner_add)
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
# ReLUs
# ---------------------------------------------------------------------------------------------
def _is_zero_literal(v) -> bool:
    if not isinstance(v, jcore.Literal):
        return False
    try:
        return bool(jnp.ndim(v.val) == 0 and v.val == 0)
    except Exception:  # noqa: BLE001 -- exotic literal types are simply not ReLUs
        return False


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


def _is_relu_jaxpr(jaxpr: jcore.Jaxpr) -> bool:
    if len(jaxpr.eqns) != 1 or len(jaxpr.invars) != 1:
        return False
    eqn = jaxpr.eqns[0]
    body = _inner(eqn)
    if body is not None:
        return _is_relu_jaxpr(body[0])
    return _relu_operand(eqn) is not None


def _relu_index(eqn) -> int | None:
    """Index (among the equation's inputs) of ``x`` if ``eqn`` computes ``relu(x)``."""
    i = _relu_operand(eqn)
    if i is not None:
        return i
    if eqn.primitive.name == "custom_jvp_call":
        call = eqn.params.get("call_jaxpr")
        if isinstance(call, jcore.ClosedJaxpr) and _is_relu_jaxpr(call.jaxpr):
            return len(eqn.invars) - 1
    return None


def is_relu(eqn) -> bool:
    """Whether ``eqn`` computes ``relu(x)`` (``max(x, 0)``, ``jax.nn.relu``)."""
    return _relu_index(eqn) is not None


def relu_input(eqn, invals: list) -> Any | None:
    """The input ``x`` if ``eqn`` computes ``relu(x)`` (``max(x, 0)``, ``jax.nn.relu``), else
    None. For use in a :data:`Rule`."""
    i = _relu_index(eqn)
    return None if i is None else invals[i]


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
    gradient (Guided Backprop)."""
    _check_model(model)
    if not callable(relu):
        raise TypeError(f"relu must be a function x -> relu(x); got {relu!r}")
    wanted = normalize_layers(layers, model.layer_names)

    def rule(eqn, invals):
        x = relu_input(eqn, invals)
        return None if x is None else [relu(x)]

    return interpret(lambda p, x: model.apply(p, x, wanted), params, images, rule=rule)
