"""Bring your own model: expose any Flax linen module or pure apply function by layer name."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from ._base import InputSpec, LayerInfo, Model

__all__ = ["wrap"]


def _layer_infos(shapes: dict[str, Any]) -> list[LayerInfo]:
    infos = []
    for name, s in shapes.items():
        shape = tuple(s.shape)
        kind = "conv" if len(shape) == 4 else "dense"
        infos.append(LayerInfo(name, kind, int(shape[-1]) if shape else 1))
    return infos


def _intermediate_name(path: tuple[str, ...]) -> str:
    parts = [p for p in path if p != "__call__"]
    return ".".join(parts) if parts else "output"


def _flatten_intermediates(tree: Any, prefix: tuple[str, ...] = ()) -> dict[str, Any]:
    """{'block': {'conv': {'__call__': (y,)}}} -> {'block.conv': y}; sown tuples -> last."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        path = (*prefix, str(key))
        if isinstance(value, dict):
            out.update(_flatten_intermediates(value, path))
        else:
            value = value[-1] if isinstance(value, tuple) else value
            out[_intermediate_name(path)] = value
    return out


def _module_apply_fn(module: nn.Module, variables_are_full: bool) -> Callable:
    def apply_fn(params, images, layers):
        variables = params if variables_are_full else {"params": params}
        wanted = set(layers)

        def keep(mdl, method_name):
            path = (*mdl.scope.path, method_name) if mdl.scope else (method_name,)
            return _intermediate_name(tuple(path)) in wanted

        out, state = module.apply(
            variables, images, capture_intermediates=keep, mutable=["intermediates"]
        )
        acts = _flatten_intermediates(state.get("intermediates", {}))
        if "output" in wanted:
            acts["output"] = out
        return {k: acts[k] for k in layers}

    return apply_fn


def wrap(
    model: nn.Module | Callable[[Any, jax.Array, tuple[str, ...]], dict[str, jax.Array]],
    params: Any,
    *,
    input_spec: InputSpec,
    layer_names: Sequence[str] | None = None,
    name: str = "custom",
    logits_layer: str | None = None,
    labels: Sequence[str] | None = None,
) -> Model:
    """Expose a user model through the lucidax :class:`Model` API.

    Args:
      model: a Flax linen module (``module.apply({"params": params}, images)``), whose
        submodule outputs become layers named by their dotted module path (``"block1.conv"``;
        values stored with ``self.sow("intermediates", name, x)`` are layers too, and the
        module's return value is ``"output"``); or a pure function
        ``fn(params, images, layers) -> {name: activations}``.
      params: the parameters: for a module either its ``"params"`` collection or the whole
        variables dict (``{"params": ..., "batch_stats": ...}``).
      input_spec: what the model takes (side, number of channels -- any number, 1 for
        grayscale -- value range, description of its own preprocessing).
      layer_names: which layers to expose, in forward order. For a module it defaults to every
        captured submodule output; for a function it is required.
      name: shown in reprs, manifests and galleries.
      logits_layer: the class-logit layer, if any (for class objectives).
      labels: class names, if any.

    Returns:
      A :class:`Model` (``weights_source="user"``) whose ``apply`` returns the exposed layers.

    Raises:
      ValueError: a name in ``layer_names`` that the module does not produce, or a function
        without ``layer_names``.
      TypeError: ``model`` is neither a Flax module nor a function.

    Note: wrapped modules run to the end on every call (early stopping needs the module's
    cooperation, which the zoo models have).

    Example:
      >>> import flax.linen as nn
      >>> import jax, jax.numpy as jnp
      >>> import lucidax.models as lm
      >>> class Net(nn.Module):
      ...     @nn.compact
      ...     def __call__(self, x):
      ...         x = nn.relu(nn.Conv(8, (3, 3), name="conv")(x))
      ...         return nn.Dense(4, name="head")(x.mean(axis=(1, 2)))
      >>> net = Net()
      >>> params = net.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))["params"]
      >>> model = lm.wrap(net, params, input_spec=lm.InputSpec(side=32), name="net")
      >>> model.layer_names
      ('conv', 'head', 'output')
      >>> model.apply(model.params, jnp.zeros((2, 32, 32, 3)), "conv")["conv"].shape
      (2, 32, 32, 8)
    """
    side = input_spec.side or 64
    probe = jax.ShapeDtypeStruct((1, side, side, input_spec.channels), jnp.float32)
    if isinstance(model, nn.Module):
        full = isinstance(params, dict) and "params" in params
        apply_fn = _module_apply_fn(model, full)
        variables = params if full else {"params": params}

        def all_shapes(v, x):
            out, state = model.apply(v, x, capture_intermediates=True, mutable=["intermediates"])
            acts = _flatten_intermediates(state.get("intermediates", {}))
            acts["output"] = out
            return acts

        shapes = jax.eval_shape(all_shapes, variables, probe)
        if layer_names is None:
            layer_names = list(shapes)
        infos_all = {i.name: i for i in _layer_infos(shapes)}
        missing = [n for n in layer_names if n not in infos_all]
        if missing:
            raise ValueError(
                f"Layers {missing} are not produced by the module; it produces: "
                f"{', '.join(infos_all)}"
            )
        infos = [infos_all[n] for n in layer_names]
        early_stop = False
    elif callable(model):
        if not layer_names:
            raise ValueError("wrap(fn, ...) needs layer_names=[...] for a pure apply function")
        apply_fn = model
        shapes = jax.eval_shape(lambda p, x: model(p, x, tuple(layer_names)), params, probe)
        infos = _layer_infos({n: shapes[n] for n in layer_names})
        early_stop = False
    else:
        raise TypeError(f"wrap() takes a flax.linen.Module or a function, got {type(model)}")
    return Model(
        name=name,
        apply_fn=apply_fn,
        params=params,
        layers=infos,
        input_spec=input_spec,
        logits_layer=logits_layer,
        labels=labels,
        weights_source="user",
        early_stop=early_stop,
    )
