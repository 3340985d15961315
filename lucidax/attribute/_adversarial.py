"""Adversarial probes: how little input change flips a class or silences (or excites) a unit.

* :func:`fgsm` (Goodfellow et al. 2015): one signed-gradient (L-inf) or normalized-gradient
  (L2) step of size ``eps``.
* :func:`pgd` (Madry et al. 2018): ``steps`` projected gradient steps inside the L-inf or L2
  ball of radius ``eps`` around each image (and inside the model's value range), from a
  random start. The whole attack is one jitted program; ``eps`` and the step size are traced,
  so sweeping ``eps`` (:func:`eps_needed`) compiles once.

What counts as success:

* class target (int, or one class per image), ``targeted=False``: the prediction is no
  longer that class (the attack lowers the margin ``z_y - max_{j != y} z_j`` below 0);
  ``targeted=True``: the prediction becomes that class.
* any other target (an Objective: a channel, a neuron, ...): ``targeted=False`` lowers the
  score, ``targeted=True`` raises it; success when it moved by ``change * |clean score|``.

Each image keeps its first successful iterate (the smallest number of steps), so the reported
perturbation norms are of the adversarial examples actually found.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lucidax.models import Model, suggest

from ._common import check_images, make_scorer, program
from ._targets import target_classes

__all__ = ["NORMS", "AttackResult", "eps_needed", "fgsm", "pgd"]

#: attack norms of :func:`pgd`, :func:`fgsm` and :func:`eps_needed` (``norm=``)
NORMS = ("linf", "l2")


@dataclasses.dataclass(frozen=True, eq=False)
class AttackResult:
    """What an attack found (arrays are numpy, one row per image).

    Attributes:
      adversarial: ``[N, H, W, C]`` the first successful iterate (the last one on failure).
      success: bool ``[N]``.
      already: bool ``[N]``: the clean image already met the success criterion (e.g. it was
        misclassified); those are not counted in :attr:`success_rate`.
      steps_to_success: int ``[N]``, gradient steps taken before success (-1: never).
      linf, l2: ``[N]`` norms of ``adversarial - images``.
      score_before, score_after: ``[N]`` the target score (the class logit, or the
        objective) on the clean and on the adversarial images.
      pred_before, pred_after: ``[N]`` predicted classes (None without a logits layer).
      eps, norm, steps, targeted: the attack's settings.

    Example:
      >>> from lucidax.attribute import pgd
      >>> import numpy as np
      >>> import lucidax.models as lm
      >>> model = lm.load("starter")
      >>> images = np.random.default_rng(0).random((2, 64, 64, 3), dtype=np.float32)
      >>> result = pgd(model, model.params, images, target="predicted", eps=8 / 255, steps=5)
      >>> result.adversarial.shape, result.success.shape, bool(result.linf.max() <= 8 / 255 + 1e-6)
      ((2, 64, 64, 3), (2,), True)
    """

    adversarial: np.ndarray
    success: np.ndarray
    already: np.ndarray
    steps_to_success: np.ndarray
    linf: np.ndarray
    l2: np.ndarray
    score_before: np.ndarray
    score_after: np.ndarray
    pred_before: np.ndarray | None
    pred_after: np.ndarray | None
    eps: float
    norm: str
    steps: int
    targeted: bool

    @property
    def success_rate(self) -> float:
        """Share of the images not already adversarial that the attack made adversarial."""
        todo = ~self.already
        return float(self.success[todo].mean()) if todo.any() else float("nan")

    def summary(self) -> dict[str, Any]:
        """JSON-ready numbers: success rate, median norms and steps of the successes."""
        ok = self.success & ~self.already
        med = (lambda a: float(np.median(a[ok])) if ok.any() else None)  # noqa: E731
        return {
            "norm": self.norm, "eps": self.eps, "steps": self.steps, "targeted": self.targeted,
            "n": int(len(self.success)), "already": int(self.already.sum()),
            "success_rate": self.success_rate,
            "median_linf": med(self.linf), "median_l2": med(self.l2),
            "median_steps": med(self.steps_to_success.astype(float)),
            "mean_score_change": float(np.mean(self.score_after - self.score_before)),
        }


def _objective(model: Model, target: Any, n: int, targeted: bool, params: Any, images: Any):
    """``(layers, obj(acts, classes) -> [N] to maximize, classes, cache key, is_class)``."""
    classes = target_classes(model, target, n, params=params, images=images)
    if classes is not None:
        layer = model.logits_layer

        def obj(acts, cls):
            z = acts[layer]
            k = z.shape[-1]
            onehot = jax.nn.one_hot(cls, k, dtype=bool)
            zc = jnp.take_along_axis(z, cls[:, None], axis=1)[:, 0]
            other = jnp.max(jnp.where(onehot, -jnp.inf, z), axis=1)
            margin = zc - other
            return margin if targeted else -margin

        return (layer,), obj, classes, ("class", layer, targeted), True

    scorer = make_scorer(model, target, n, batch=n)
    sign = 1.0 if targeted else -1.0

    def obj(acts, cls):
        return sign * scorer.fn(acts, cls)

    return scorer.layers, obj, scorer.classes, ("objective", scorer.key, targeted), False


def _project(delta, eps, norm):
    if norm == "linf":
        return jnp.clip(delta, -eps, eps)
    n = jnp.sqrt(jnp.sum(delta**2, axis=(1, 2, 3), keepdims=True))
    return delta * jnp.minimum(1.0, eps / jnp.maximum(n, 1e-12))


def _check(norm: str, eps: Any, steps: Any) -> None:
    if norm not in NORMS:
        raise ValueError(suggest(norm, NORMS, what="norm"))
    if not np.isscalar(eps) or not np.isfinite(eps) or eps <= 0:
        raise ValueError(f"eps must be a positive number, got {eps!r}")
    if not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")


def pgd(
    model: Model,
    params: Any,
    images: Any,
    target: Any,
    *,
    eps: float,
    norm: str = "linf",
    steps: int = 10,
    step_size: float | None = None,
    targeted: bool = False,
    random_start: bool = True,
    change: float = 0.5,
    key: Any = 0,
) -> AttackResult:
    """Projected gradient descent inside the ``norm`` ball of radius ``eps``.

    Args:
      model, params, images: the model, its parameters and float ``[N, H, W, C]`` images.
      target: a class (int), one class per image (e.g. the true labels), or an Objective.
      eps: radius of the ball (pixel units of the model's value range, e.g. ``8/255``).
      norm: ``"linf"`` or ``"l2"``.
      steps: gradient steps.
      step_size: default ``2.5 * eps / steps``.
      targeted: False: move away from a class / lower the objective; True: move to the
        class / raise the objective.
      random_start: start from a uniform random point of the ball.
      change: for Objective targets, the relative score change that counts as success.
      key: ``jax.random`` key or int seed of the random start.

    Example:
      >>> from lucidax.attribute import pgd
      >>> import numpy as np
      >>> import lucidax.models as lm
      >>> model = lm.load("starter")
      >>> images = np.random.default_rng(0).random((2, 64, 64, 3), dtype=np.float32)
      >>> result = pgd(model, model.params, images, target="predicted", eps=0.03, norm="l2")
      >>> result.adversarial.shape, result.l2.shape
      ((2, 64, 64, 3), (2,))
    """
    _check(norm, eps, steps)
    images = check_images(model, images)
    n = images.shape[0]
    layers, obj, classes, okey, is_class = _objective(model, target, n, targeted, params, images)
    step_size = 2.5 * eps / steps if step_size is None else step_size
    if not np.isscalar(step_size) or step_size <= 0:
        raise ValueError(f"step_size must be a positive number, got {step_size!r}")
    lo, hi = model.input_spec.value_range
    cache_key = ("pgd", okey, images.shape, norm, int(steps), bool(random_start),
                 float(change))

    def build(shell):
        def objective(params, x, cls):
            return obj(shell.apply(params, x, layers), cls)

        def value_and_grad(params, x, cls):
            o, vjp = jax.vjp(lambda xx: objective(params, xx, cls), x)
            return o, vjp(jnp.ones_like(o))[0]

        def succeeded(o, o_clean):
            if is_class:
                return o > 0
            return o - o_clean >= change * jnp.abs(o_clean)

        def run(params, images, cls, eps, step_size, key):
            o_clean = objective(params, images, cls)
            already = succeeded(o_clean, o_clean)
            if random_start:
                if norm == "linf":
                    d0 = jax.random.uniform(key, images.shape, minval=-eps, maxval=eps)
                else:
                    k1, k2 = jax.random.split(key)
                    g = jax.random.normal(k1, images.shape)
                    g = g / jnp.sqrt(jnp.sum(g**2, axis=(1, 2, 3), keepdims=True))
                    r = jax.random.uniform(k2, (images.shape[0], 1, 1, 1))
                    d0 = g * eps * r
            else:
                d0 = jnp.zeros_like(images)
            x0 = jnp.clip(images + d0, lo, hi)
            n = images.shape[0]
            init = (x0, x0, jnp.zeros(n, bool), jnp.full(n, -1, jnp.int32))

            def step(t, state):
                x, best, done, first = state
                o, g = value_and_grad(params, x, cls)
                ok = succeeded(o, o_clean)  # x is the iterate after t steps
                new = ok & ~done
                best = jnp.where(new[:, None, None, None], x, best)
                first = jnp.where(new, t, first)
                done = done | ok
                if norm == "linf":
                    move = jnp.sign(g)
                else:
                    move = g / jnp.maximum(
                        jnp.sqrt(jnp.sum(g**2, axis=(1, 2, 3), keepdims=True)), 1e-12)
                x = jnp.clip(images + _project(x + step_size * move - images, eps, norm), lo, hi)
                return x, best, done, first

            x, best, done, first = jax.lax.fori_loop(0, steps, step, init)
            o = objective(params, x, cls)
            ok = succeeded(o, o_clean) & ~done
            best = jnp.where(ok[:, None, None, None], x, best)
            first = jnp.where(ok, steps, first)
            done = done | ok
            best = jnp.where(done[:, None, None, None], best, x)
            acts = shell.apply(params, jnp.concatenate([images, best]), layers)
            return best, done, already, first, acts

        return run

    fn = program(model, cache_key, build)
    if isinstance(key, (int, np.integer)):
        key = jax.random.key(int(key))
    best, done, already, first, acts = fn(params, images, jnp.asarray(classes, jnp.int32),
                                          jnp.float32(eps), jnp.float32(step_size), key)
    best = np.asarray(best)
    delta = best - np.asarray(images)
    scorer = make_scorer(model, target, 2 * n, batch=2 * n) if not is_class else None
    if is_class:
        z = np.asarray(acts[model.logits_layer])
        sc = z[np.arange(2 * n), np.concatenate([classes, classes])]
        pred = z.argmax(1)
        pred_before, pred_after = pred[:n], pred[n:]
    else:
        sc = np.asarray(scorer.fn(acts, None))
        pred_before = pred_after = None
    return AttackResult(
        adversarial=best,
        success=np.asarray(done),
        already=np.asarray(already),
        steps_to_success=np.asarray(first),
        linf=np.abs(delta).reshape(n, -1).max(1),
        l2=np.sqrt((delta**2).reshape(n, -1).sum(1)),
        score_before=sc[:n], score_after=sc[n:],
        pred_before=pred_before, pred_after=pred_after,
        eps=float(eps), norm=norm, steps=int(steps), targeted=bool(targeted),
    )


def fgsm(
    model: Model, params: Any, images: Any, target: Any, *, eps: float, norm: str = "linf",
    targeted: bool = False, change: float = 0.5,
) -> AttackResult:
    """The fast gradient (sign) method: one step of size ``eps`` (see :func:`pgd`).

    Args:
      model, params: the model and its parameters.
      images: ``[N, H, W, C]`` images in the model's value range.
      target: a class (int), one class per image (e.g. the true labels), or an Objective.
      norm: ``"linf"`` or ``"l2"`` (:data:`NORMS`).
      targeted: push towards ``target`` instead of away from it.
      change: for Objective targets, the relative score change that counts as success.
      eps: the step size (the radius of the ball).

    Example:
      >>> from lucidax.attribute import fgsm
      >>> import numpy as np
      >>> import lucidax.models as lm
      >>> model = lm.load("starter")
      >>> images = np.random.default_rng(0).random((2, 64, 64, 3), dtype=np.float32)
      >>> fgsm(model, model.params, images, target="predicted", eps=4 / 255).adversarial.shape
      (2, 64, 64, 3)
    """
    return pgd(model, params, images, target, eps=eps, norm=norm, steps=1, step_size=eps,
               targeted=targeted, random_start=False, change=change)


def eps_needed(
    model: Model,
    params: Any,
    images: Any,
    target: Any,
    *,
    eps_grid: Any = (0.5 / 255, 1 / 255, 2 / 255, 4 / 255, 8 / 255, 16 / 255, 32 / 255),
    norm: str = "linf",
    steps: int = 10,
    targeted: bool = False,
    change: float = 0.5,
    key: Any = 0,
) -> np.ndarray:
    """Per image, the smallest ``eps`` of ``eps_grid`` at which :func:`pgd` succeeds
    (0 when the clean image already counts as adversarial, ``inf`` when none does).

    Args:
      model, params: the model and its parameters.
      images: ``[N, H, W, C]`` images in the model's value range.
      target: a class (int), one class per image (e.g. the true labels), or an Objective.
      norm: ``"linf"`` or ``"l2"`` (:data:`NORMS`).
      targeted: push towards ``target`` instead of away from it.
      change: for Objective targets, the relative score change that counts as success.
      eps_grid: the radii tried, smallest first.
      steps: PGD steps per radius.
      key: ``jax.random`` key or int seed of the random starts.

    Example:
      >>> from lucidax.attribute import eps_needed
      >>> import numpy as np
      >>> import lucidax.models as lm
      >>> model = lm.load("starter")
      >>> images = np.random.default_rng(0).random((2, 64, 64, 3), dtype=np.float32)
      >>> eps = eps_needed(model, model.params, images, "predicted", eps_grid=(0.01, 0.1), steps=3)
      >>> eps.shape
      (2,)
    """
    grid = sorted(float(e) for e in np.ravel(eps_grid))
    if not grid:
        raise ValueError("eps_grid is empty")
    n = check_images(model, images).shape[0]
    need = np.full(n, np.inf)
    for eps in grid:
        r = pgd(model, params, images, target, eps=eps, norm=norm, steps=steps,
                targeted=targeted, change=change, key=key)
        need[r.already] = 0.0
        need[np.isinf(need) & r.success] = eps
        if np.isfinite(need).all():
            break
    return need
