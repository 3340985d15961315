"""The one policy for compiled programs bound to a model (``Model.program``)."""

from __future__ import annotations

import gc
import weakref

import jax
import jax.numpy as jnp
import numpy as np

import lucidax.models as lm


def _tiny():
    def fn(params, images, layers):
        h = jnp.tanh(images @ params["w"])
        return {k: v for k, v in {"h": h, "out": h.sum(-1)}.items() if k in layers}

    return lm.wrap(fn, {"w": np.ones((3, 4), np.float32)}, layer_names=("h", "out"),
                   input_spec=lm.InputSpec(side=4, channels=3))


def test_program_is_built_once_and_shared_by_param_copies():
    model = _tiny()
    builds = []

    def build(shell):
        builds.append(shell)
        assert shell.params is None  # parameters are arguments, never captured

        def f(params, x):
            return shell.apply(params, x, ("out",))["out"]

        return f

    x = np.ones((2, 4, 4, 3), np.float32)
    f1 = model.program(("out",), build)
    copy = model.with_params({"w": np.zeros((3, 4), np.float32)})
    f2 = copy.program(("out",), build)
    assert f1 is f2 and len(builds) == 1
    np.testing.assert_allclose(f2(copy.params, x), 0.0)
    assert float(f1(model.params, x).sum()) > 0
    assert model.program(("h",), build) is not f1 and len(builds) == 2


def test_programs_are_freed_with_the_last_copy():
    model = _tiny()
    f = model.program("k", lambda shell: (lambda p, x: shell.apply(p, x, ("h",))["h"]))
    f(model.params, np.ones((1, 4, 4, 3), np.float32))
    ref = weakref.ref(model)
    fref = weakref.ref(f)
    del model, f
    gc.collect()
    assert ref() is None and fref() is None


def test_program_is_jitted():
    model = _tiny()
    f = model.program("jit", lambda shell: (lambda p, x: shell.apply(p, x, ("h",))["h"]))
    assert hasattr(f, "lower")  # a jax.jit-wrapped function
    jax.block_until_ready(f(model.params, np.ones((1, 4, 4, 3), np.float32)))


def test_layer_shape_is_traced_once_per_layer_and_side():
    traces = []

    def fn(params, images, layers):
        traces.append(images.shape)
        h = jnp.tanh(images @ params["w"])
        return {k: v for k, v in {"h": h, "out": h.sum(-1)}.items() if k in layers}

    model = lm.wrap(fn, {"w": np.ones((3, 4), np.float32)}, layer_names=("h", "out"),
                    input_spec=lm.InputSpec(side=4, channels=3))
    n0 = len(traces)  # wrap may trace to learn the layers
    assert model.layer_shape("h") == (4, 4, 4)
    assert len(traces) == n0 + 1
    copy = model.with_params({"w": np.zeros((3, 4), np.float32)})
    assert model.layer_shape("h") == copy.layer_shape("h", 4) == (4, 4, 4)
    assert len(traces) == n0 + 1  # second call and with_params copy: no new trace
    assert copy.layer_shape("h", 8) == (8, 8, 4) and len(traces) == n0 + 2
