"""lucidax.models.hooks: perturbing hidden activations and replacing ReLUs of any Model."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lucidax.models as lm
from lucidax.models.hooks import apply_perturbed, apply_with_relu


@pytest.fixture(scope="module")
def starter():
    return lm.load("starter")


@pytest.fixture(scope="module")
def images():
    return jax.random.uniform(jax.random.key(0), (3, 32, 32, 3))


def _tiny():
    """relu(x @ w1) @ w2, exposed as layers hidden_pre_relu, hidden, out."""

    def fn(p, x, layers):
        flat = x.reshape(x.shape[0], -1)
        pre = flat @ p["w1"]
        hid = jax.nn.relu(pre)
        return {"hidden_pre_relu": pre, "hidden": hid, "out": hid @ p["w2"]}

    k1, k2 = jax.random.split(jax.random.key(1))
    params = {"w1": jax.random.normal(k1, (4 * 4 * 3, 8)), "w2": jax.random.normal(k2, (8, 2))}
    spec = lm.InputSpec(side=4, channels=3, min_side=4)
    return lm.wrap(fn, params, input_spec=spec, layer_names=("hidden_pre_relu", "hidden", "out"))


def test_zero_perturbation_is_identity(starter, images):
    ref = starter.apply(starter.params, images, ("conv3", "logits"))
    zero = jnp.zeros(ref["conv3"].shape)
    out = apply_perturbed(starter, starter.params, images, ("conv3", "logits"), {"conv3": zero})
    for name in ref:
        np.testing.assert_allclose(out[name], ref[name], rtol=1e-5, atol=1e-5)


def test_gradient_wrt_hidden_activation_matches_finite_difference(starter, images):
    """d logit / d conv4 by the hook == finite differences along a random direction."""
    p = starter.params
    shape = starter.apply(p, images, ("conv4",))["conv4"].shape

    def logit(delta):
        return apply_perturbed(starter, p, images, ("logits",), {"conv4": delta})["logits"][:, 3]

    grad = jax.grad(lambda d: logit(d).sum())(jnp.zeros(shape))
    assert grad.shape == shape and float(jnp.abs(grad).max()) > 0
    # constant over each 2x2 max-pool window: ReLU zeros tie inside windows, and max() is
    # only differentiable along directions that keep the tie
    n, h, w, c = shape
    v = jax.random.normal(jax.random.key(2), (n, h // 2, w // 2, c))
    v = jnp.repeat(jnp.repeat(v, 2, axis=1), 2, axis=2)
    eps = 1e-3  # small: downstream ReLUs must not flip
    fd = (logit(eps * v) - logit(-eps * v)) / (2 * eps)
    analytic = jnp.sum((grad * v).reshape(shape[0], -1), axis=1)
    np.testing.assert_allclose(fd, analytic, rtol=1e-2, atol=1e-2)


def test_perturbation_flows_downstream_only():
    model = _tiny()
    x = jax.random.uniform(jax.random.key(3), (2, 4, 4, 3))
    delta = jnp.ones((8,)) * 0.5  # broadcasts over the batch
    out = apply_perturbed(model, model.params, x, ("hidden_pre_relu", "out"),
                          {"hidden_pre_relu": delta})
    ref = model.apply(model.params, x, ("hidden_pre_relu",))["hidden_pre_relu"]
    np.testing.assert_allclose(out["hidden_pre_relu"], ref + 0.5, rtol=1e-6)
    expect = jax.nn.relu(ref + 0.5) @ model.params["w2"]
    np.testing.assert_allclose(out["out"], expect, rtol=1e-5, atol=1e-6)
    # jit + grad work through the hook
    g = jax.jit(jax.grad(lambda d: apply_perturbed(
        model, model.params, x, "out", {"hidden": d})["out"].sum()))(jnp.zeros((2, 8)))
    np.testing.assert_allclose(g, np.broadcast_to(model.params["w2"].sum(1), (2, 8)), rtol=1e-6)


def test_perturb_errors_name_the_problem(starter, images):
    with pytest.raises(ValueError, match="conv3"):
        apply_perturbed(starter, starter.params, images, "logits", {"conv33": 0.0})
    with pytest.raises(ValueError, match="broadcast"):
        apply_perturbed(starter, starter.params, images, "logits", {"conv3": jnp.zeros(5)})
    with pytest.raises(ValueError, match="non-empty"):
        apply_perturbed(starter, starter.params, images, "logits", {})


def test_apply_with_relu_replaces_every_relu(starter, images):
    calls = []

    def leaky(x):
        calls.append(x.shape)
        return jnp.where(x > 0, x, 0.1 * x)

    ref = starter.apply(starter.params, images, ("conv2",))["conv2"]
    out = apply_with_relu(starter, starter.params, images, ("conv2",), leaky)["conv2"]
    assert len(calls) == 2  # conv1 and conv2 ReLUs (stops at conv2)
    assert float(jnp.min(out)) < 0 <= float(jnp.min(ref))
    same = apply_with_relu(starter, starter.params, images, ("conv2",), jax.nn.relu)["conv2"]
    np.testing.assert_allclose(same, ref, rtol=1e-5, atol=1e-6)


def test_perturbation_inside_a_jitted_block_reaches_its_consumers():
    """The tapped activation is produced inside a nested jit (a pjit equation): the
    perturbation is placed inside it, and both the block's other outputs and later layers see
    it."""

    @jax.jit
    def block(w, x):
        h = jnp.tanh(x @ w)
        return h, h * 2.0

    def fn(p, x, layers):
        flat = x.reshape(x.shape[0], -1)
        h, h2 = block(p["w1"], flat)
        return {"h": h, "h2": h2, "out": h2 @ p["w2"]}

    k1, k2 = jax.random.split(jax.random.key(4))
    params = {"w1": jax.random.normal(k1, (48, 5)), "w2": jax.random.normal(k2, (5, 1))}
    model = lm.wrap(fn, params, input_spec=lm.InputSpec(side=4, channels=3, min_side=4),
                    layer_names=("h", "h2", "out"))
    x = jax.random.uniform(jax.random.key(5), (2, 4, 4, 3))
    ref = model.apply(params, x, ("h",))["h"]
    out = apply_perturbed(model, params, x, ("h", "h2", "out"), {"h": 1.0})
    np.testing.assert_allclose(out["h"], ref + 1.0, rtol=1e-6)
    # h2 is computed from h inside the same jitted block, after the tap: it sees the change
    np.testing.assert_allclose(out["h2"], 2.0 * (ref + 1.0), rtol=1e-6)
    np.testing.assert_allclose(out["out"], (2.0 * (ref + 1.0)) @ params["w2"], rtol=1e-5)


# ---------------------------------------------------------------------------------------------
# the one interpreter: every call primitive
# ---------------------------------------------------------------------------------------------
def test_rules_reach_inside_checkpoint_and_jit():
    """``jax.checkpoint`` (remat) and ``jit`` bodies are entered: a rule sees their ReLUs, and
    values and gradients are those of the function."""
    from lucidax.models.hooks import clipped_relu, interpret

    seen = []

    def rule(eqn, invals):
        if (found := clipped_relu(eqn, invals)) is not None:
            seen.append(found[1])
            return [found[0] * 0 + 5]
        return None

    f = jax.checkpoint(lambda x: jax.nn.relu(x) * 2)
    g = jax.jit(lambda x: f(x) + 1)
    x = jnp.array([1.0, -1.0])
    np.testing.assert_array_equal(interpret(g, x, rule=rule), [11.0, 11.0])
    assert seen == [None]
    np.testing.assert_array_equal(jax.grad(lambda v: interpret(g, v).sum())(x), [2.0, 0.0])


def test_call_body_of_every_call_primitive():
    """``call_body`` finds the body of plain and custom-derivative calls; ``eval_jaxpr`` binds
    custom-derivative calls (keeping their derivative rule) unless a rule enters them."""
    from lucidax.attribute import guided_relu
    from lucidax.models.hooks import call_body, eval_jaxpr

    fns = {"remat": jax.checkpoint(jnp.sin), "jit": jax.jit(jnp.sin),
           "custom_jvp": jax.nn.relu, "custom_vjp": guided_relu}
    x = jnp.array([0.5, -2.0])
    for what, fn in fns.items():
        closed = jax.make_jaxpr(fn)(x)
        (eqn,) = closed.jaxpr.eqns
        body, consts, n_skip = call_body(eqn)
        out = eval_jaxpr(body, consts, [*eqn.invars[:n_skip], x][n_skip:])
        np.testing.assert_allclose(out[0], fn(x), err_msg=what)
    # not entered by eval_jaxpr: the guided ReLU keeps its backward (negative gradients cut)
    closed = jax.make_jaxpr(guided_relu)(x)
    x = jnp.array([0.5, 2.0])

    def loss(v):
        return -eval_jaxpr(closed.jaxpr, closed.consts, [v])[0].sum()

    np.testing.assert_array_equal(jax.grad(loss)(x), [0.0, 0.0])
