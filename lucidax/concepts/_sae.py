"""TopK sparse autoencoder on activation rows (private; Gao et al. 2024, "Scaling and
evaluating sparse autoencoders").

``z = TopK(ReLU((x - b_dec) W_enc + b_enc))``, ``x_hat = z W_dec + b_dec``; MSE loss, Adam
(optax), decoder rows renormalized to unit norm after every step. The decoder starts from
random data rows (normalized), the encoder as its transpose. Dead latents (no activation in
the last ``dead_rows`` rows) are revived by the auxiliary TopK loss of the paper: the dead
latents' own top ``2 * topk`` pre-activations reconstruct the residual ``x - x_hat``.
Training runs one jitted ``lax.scan`` over the mini-batches of each host chunk (rows shuffled
within the chunk, chunk order shuffled, both from the key).

With several devices (``devices``; default all local ones) training is data parallel: the
mini-batch size and the chunk are rounded up to multiples of the device count (extra rows
are masked padding), each chunk is row-sharded over a 1-D mesh and the parameters, Adam
state and dead-latent counters are replicated. At the start of a chunk its shuffled rows are
laid out (one gather across the devices) so that device ``d`` holds the ``d``-th slice of every
mini-batch; each Adam step then computes the loss and gradients of its own slice and XLA
all-reduces them -- the mini-batches (and so the fit) are the same as on one device, up to
float summation order.
"""

from __future__ import annotations

import functools
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from .._files import check_int
from ._factorization import Factorization, key_config, make_key, sae_encode
from ._rows import as_rows, check_k, row_devices

__all__ = ["topk_sae"]

_DEVICE_CACHE_BYTES = 2 << 30
TRACES = {"train": 0}


@functools.lru_cache(maxsize=16)
def _programs(bs: int, size: int, topk: int, kaux: int, aux_alpha: float, lr: float,
              mesh: Any = None):
    """The jitted chunk trainer and evaluator for one static configuration (``mesh``: the
    1-D row mesh when sharded over several devices, else None)."""
    opt = optax.adam(lr)
    nb = size // bs
    nd = 1 if mesh is None else mesh.devices.size

    def loss_fn(p, x, m, dead):
        pre = jax.nn.relu((x - p["b_dec"]) @ p["W_enc"] + p["b_enc"])
        z = sae_encode(p, x, topk)
        xh = z @ p["W_dec"] + p["b_dec"]
        err = x - xh
        nv = jnp.maximum(m.sum(), 1.0)
        mse = jnp.sum(m[:, None] * err**2) / nv
        # auxiliary TopK loss on the dead latents
        pd = jnp.where(dead, pre, 0.0)
        vals, _ = jax.lax.top_k(pd, kaux)
        za = jnp.where(pd >= vals[:, -1:], pd, 0.0) * (pd > 0)
        eh = za @ p["W_dec"]
        e = jax.lax.stop_gradient(err)
        aux = jnp.sum(m[:, None] * (e - eh) ** 2) / nv
        aux = jnp.where(jnp.any(dead), aux, 0.0)
        return mse + aux_alpha * aux, (mse, jnp.sum(m[:, None] * x**2) / nv, z)

    def update(p, o, since, x, m, dead_rows):
        """One Adam step on the mini-batch ``x`` (mask ``m``)."""
        dead = since > dead_rows
        (_, (mse, sq, z)), g = jax.value_and_grad(loss_fn, has_aux=True)(p, x, m, dead)
        upd, o = opt.update(g, o, p)
        p = optax.apply_updates(p, upd)
        p = dict(p, W_dec=p["W_dec"] / jnp.maximum(
            jnp.linalg.norm(p["W_dec"], axis=1, keepdims=True), 1e-12))
        fired = jnp.any((z > 0) & m[:, None], axis=0)
        since = jnp.where(fired, 0.0, since + m.sum())
        nv = m.sum()
        return p, o, since, (mse * nv, sq * nv)

    def step(carry, idx):
        p, o, since, a, mask, dead_rows = carry
        p, o, since, out = update(p, o, since, a[idx], mask[idx], dead_rows)
        return (p, o, since, a, mask, dead_rows), out

    def train_chunk(p, o, since, a, mask, key, dead_rows):
        TRACES["train"] += 1
        perm = jax.random.permutation(key, size).reshape(nb, bs)
        (p, o, since, _, _, _), (se, sq) = jax.lax.scan(
            step, (p, o, since, a, mask, dead_rows), perm)
        return p, o, since, se.sum(), sq.sum()

    def sharded_step(carry, j):
        p, o, since, a3, m3, dead_rows = carry
        # mini-batch j: the j-th slice of each device's block (local, no communication)
        rows = NamedSharding(mesh, P("rows"))
        x = jax.lax.with_sharding_constraint(a3[:, j].reshape(bs, -1), rows)
        m = jax.lax.with_sharding_constraint(m3[:, j].reshape(bs), rows)
        p, o, since, out = update(p, o, since, x, m, dead_rows)
        return (p, o, since, a3, m3, dead_rows), out

    def train_chunk_sharded(p, o, since, a, mask, key, dead_rows):
        TRACES["train"] += 1
        # the same permutation as on one device, laid out so that device d holds the d-th
        # slice of every mini-batch: row d*size/nd + j*bs/nd + t is perm[j*bs + d*bs/nd + t]
        perm = jax.random.permutation(key, size).reshape(nb, nd, bs // nd)
        perm = perm.transpose(1, 0, 2).reshape(size)
        rows = NamedSharding(mesh, P("rows"))
        a3 = jax.lax.with_sharding_constraint(a[perm], rows).reshape(nd, nb, bs // nd, -1)
        m3 = jax.lax.with_sharding_constraint(mask[perm], rows).reshape(nd, nb, bs // nd)
        (p, o, since, _, _, _), (se, sq) = jax.lax.scan(
            sharded_step, (p, o, since, a3, m3, dead_rows), jnp.arange(nb))
        return p, o, since, se.sum(), sq.sum()

    def evaluate(p, a, mask):
        z = sae_encode(p, a, topk)
        err = (a - (z @ p["W_dec"] + p["b_dec"])) * mask[:, None]
        return jnp.sum(err**2, axis=1), jnp.sum(mask[:, None] * (z > 0), axis=0), err

    train = train_chunk if mesh is None else train_chunk_sharded
    return opt, jax.jit(train, donate_argnums=(0, 1, 2)), jax.jit(evaluate)


def _resample(p, o, since, dead, item, evaluate, key):
    """Dead latents -> unit residuals of rows drawn with probability ~ squared error."""
    a, mask = item
    sq, _, err = evaluate(p, a, mask)
    sq = np.asarray(sq, np.float64)
    idx_dead = np.flatnonzero(dead)
    if sq.sum() <= 0:
        return p, o, since
    pick = np.asarray(jax.random.choice(key, sq.shape[0], (len(idx_dead),),
                                        p=jnp.asarray(sq / sq.sum()),
                                        replace=len(idx_dead) > np.count_nonzero(sq)))
    e = np.asarray(err)[pick]
    e = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
    P = {n: np.array(v) for n, v in p.items()}
    live = ~dead
    enc_norm = (np.linalg.norm(P["W_enc"][:, live], axis=0).mean() if live.any() else 1.0)
    P["W_dec"][idx_dead] = e
    P["W_enc"][:, idx_dead] = e.T * enc_norm * 0.2
    P["b_enc"][idx_dead] = 0.0
    m = np.zeros(len(dead), bool)
    m[idx_dead] = True

    def reset(path, x):
        name = path[-1].key if hasattr(path[-1], "key") else None
        if name == "W_dec":
            return jnp.where(m[:, None], 0.0, x)
        if name == "W_enc":
            return jnp.where(m[None, :], 0.0, x)
        if name == "b_enc":
            return jnp.where(m, 0.0, x)
        return x

    adam = o[0]
    adam = adam._replace(mu=jax.tree_util.tree_map_with_path(reset, adam.mu),
                         nu=jax.tree_util.tree_map_with_path(reset, adam.nu))
    since = jnp.where(m, 0.0, since)
    return {n: jnp.asarray(v) for n, v in P.items()}, (adam, *o[1:]), since


def topk_sae(
    rows: Any,
    k: int,
    *,
    topk: int = 4,
    key: Any = 0,
    epochs: int | None = None,
    batch_size: int = 4096,
    lr: float = 2e-3,
    aux_alpha: float = 1 / 32,
    dead_rows: int | None = None,
    resample: bool = True,
    batch_rows: int = 65536,
    devices: Any = None,
    progress: bool = True,
) -> Factorization:
    """Train a TopK sparse autoencoder with ``k`` latents (``k`` may exceed C: overcomplete).

    Args:
      rows: activations ``[n, C]`` / ``[N, h, w, C]`` (signed values are fine).
      k: number of latents (concepts).
      topk: non-zero codes per row (``1 <= topk <= k``).
      key: int seed or jax key (init, shuffling).
      epochs: passes over the rows; None: enough for at least 1,000 Adam steps.
      batch_size: rows per Adam step (at most n).
      lr: Adam learning rate.
      aux_alpha: weight of the auxiliary loss that revives dead latents.
      dead_rows: a latent is dead after this many rows without firing (default
        ``min(n, 100_000)``).
      resample: at the end of each epoch (but the last), re-initialise the dead latents
        towards the residuals of badly reconstructed rows (drawn with probability
        proportional to their squared error; Bricken et al. 2023), their Adam moments reset.
      batch_rows: rows per host chunk (a multiple of ``batch_size`` is used).
      devices: the devices to shard the rows over (None: all local devices;
        ``[jax.devices()[0]]`` forces one). With several, ``batch_size`` is rounded up to a
        multiple of their number and every mini-batch is split over them (module docstring).
      progress: show a tqdm progress bar over the epochs.

    Returns:
      a :class:`Factorization` (``method="sae"``): ``W`` the unit-norm decoder rows,
      ``extra`` ``W_enc``, ``b_enc``, ``b_dec``, ``rows_per_second`` (training throughput)
      and ``dead`` (latents that never fired in the final evaluation pass); ``error`` and
      ``l0`` are measured by a final pass over all rows with the trained weights, ``history``
      is the running training error of each epoch; ``config["devices"]`` the number of
      devices used.

    Raises:
      ValueError: ``topk > k``, a count that is not a positive integer, or ``lr <= 0``.

    Example:
      >>> import numpy as np
      >>> from lucidax.concepts import topk_sae
      >>> rows = np.random.default_rng(0).normal(size=(256, 16)).astype(np.float32)
      >>> fact = topk_sae(rows, 32, topk=2, epochs=2, batch_size=64, progress=False)
      >>> fact.W.shape, fact.extra["W_enc"].shape, int((fact.encode(rows[:5]) > 0).sum(-1).max())
      ((32, 16), (16, 32), 2)
    """
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    r = as_rows(rows, method="sae")
    check_k(k, r, method="sae", at_most_c=False)
    check_int(topk, "topk")
    if topk > k:
        raise ValueError(f"topk must be <= k={k}; got topk={topk}")
    check_int(epochs, "epochs", optional=True)
    check_int(batch_size, "batch_size")
    check_int(batch_rows, "batch_rows")
    check_int(dead_rows, "dead_rows", optional=True)
    if not (isinstance(lr, (int, float)) and lr > 0):
        raise ValueError(f"lr must be a number > 0; got {lr!r}")
    k, topk = int(k), int(topk)
    place = row_devices(devices)
    nd = place.count
    bs = -(-min(int(batch_size), r.n) // nd) * nd  # each device gets bs / nd rows per step
    size = max(bs, (min(int(batch_rows), r.n) // bs) * bs)
    n_chunks = r.n_chunks(size, nd)
    assert r.chunk_size(size, nd) == size
    steps_per_epoch = n_chunks * (size // bs)
    if epochs is None:
        epochs = max(1, -(-1000 // steps_per_epoch))
    dead_rows = min(r.n, 100_000) if dead_rows is None else dead_rows
    kaux = min(2 * topk, k)
    opt, train_chunk, evaluate = _programs(bs, size, topk, kaux, float(aux_alpha), float(lr),
                                           place.mesh)

    rng_key = make_key(key)
    init_idx = np.asarray(jax.random.choice(jax.random.fold_in(rng_key, 0), r.n, (k,),
                                            replace=k > r.n))
    d = r.take(init_idx)
    d = d + 1e-3 * np.asarray(jax.random.normal(jax.random.fold_in(rng_key, 1), d.shape),
                              np.float32) * (np.abs(d).mean() + 1e-6)
    d = d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-12)
    p = place.replicate({"W_enc": jnp.asarray(d.T), "b_enc": jnp.zeros(k, jnp.float32),
                         "W_dec": jnp.asarray(d), "b_dec": jnp.zeros(r.c, jnp.float32)})
    o = place.replicate(opt.init(p))
    since = place.replicate(jnp.zeros(k, jnp.float32))
    dead_limit = place.replicate(jnp.float32(dead_rows))

    cache = r.n * r.c * 4 <= _DEVICE_CACHE_BYTES
    dev: dict[int, tuple] = {}

    def chunk(i):
        if i in dev:
            return dev[i]
        ch = next(r.chunks(size, order=[i], multiple=nd))
        item = (place.rows(ch.data), place.rows(ch.mask))
        if cache:
            dev[i] = item
        return item

    history: list[float] = []
    train_s = 0.0
    resampled = 0
    bar = tqdm(total=epochs, desc=f"topk sae k={k}", disable=not progress)
    for ep in range(epochs):
        ek = jax.random.fold_in(rng_key, 2 + ep)
        order = np.asarray(jax.random.permutation(jax.random.fold_in(ek, 0), n_chunks))
        se = sq = 0.0
        for j, i in enumerate(order):
            a, mask = chunk(int(i))
            ts = time.perf_counter()
            p, o, since, s1, s2 = train_chunk(p, o, since, a, mask,
                                              jax.random.fold_in(ek, 1 + j), dead_limit)
            s1, s2 = float(s1), float(s2)
            train_s += time.perf_counter() - ts
            se, sq = se + s1, sq + s2
        history.append(float(np.sqrt(se / max(sq, 1e-30))))
        dead = np.asarray(since) > dead_rows
        if resample and dead.any() and ep < epochs - 1:
            p, o, since = place.replicate(_resample(p, o, since, dead, chunk(int(order[0])),
                                                    evaluate, jax.random.fold_in(ek, 10**6)))
            resampled += int(dead.sum())
        bar.update(1)
        bar.set_postfix(error=f"{history[-1]:.4f}")
    bar.close()

    total_se, nnz = 0.0, np.zeros(k)
    fired = np.zeros(k, bool)
    for i in range(n_chunks):
        a, mask = chunk(i)
        s, z, _ = evaluate(p, a, mask)
        total_se += float(s.sum())
        zc = np.asarray(z)
        nnz += zc
        fired |= zc > 0
    p = {n: np.asarray(v, np.float32) for n, v in p.items()}
    error = float(np.sqrt(total_se / r.sq_norm)) if r.sq_norm > 0 else 0.0
    l0 = float(nnz.sum() / r.n)
    return Factorization(
        method="sae", W=p["W_dec"], error=error, l0=l0, sparsity=1.0 - l0 / k,
        iterations=epochs, seconds=time.perf_counter() - t0, history=tuple(history),
        extra={"W_enc": p["W_enc"], "b_enc": p["b_enc"], "b_dec": p["b_dec"],
               "rows_per_second": epochs * r.n / max(train_s, 1e-9),
               "dead": int((~fired).sum()), "resampled": resampled},
        config={"k": k, "topk": topk, "key": key_config(key), "epochs": epochs,
                "batch_size": bs, "lr": lr, "aux_alpha": aux_alpha, "dead_rows": dead_rows,
                "batch_rows": size, "rows": r.n, "channels": r.c, "devices": nd})
