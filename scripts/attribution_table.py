"""The README's attribution experiment on the starter model (prints JSON lines).

1. Faithfulness: deletion / insertion AUC (class probability; deletion paints removed pixels
   with each image's mean colour, insertion starts from a blurred copy; 32 steps) of every
   available method on ``--n`` starter test images, against a random map (the floor) and the
   digit's own stroke mask (a reference that knows where the digit is). Also the share of each
   map's top-10% pixels that fall on the digit stroke ("on digit").
2. Sanity check (Adebayo et al. 2018): cascading randomization of the layers from the logits
   down to conv1 on ``--n-random`` images; mean Spearman rank correlation (of the maps and of
   their absolute values) and SSIM of each stage's maps with the trained model's maps.
3. Brittleness: PGD (L-inf and L2) success rates and the L-inf eps each image needs.
4. ``--figure``: the overlay grid docs/attribution_grid.png.

    python scripts/attribution_table.py --n 64 --n-random 16 --figure docs/attribution_grid.png
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np


def _line(**kw) -> None:
    print(json.dumps(kw, default=lambda o: o.item() if hasattr(o, "item") else str(o)),
          flush=True)


def _names(spec: str) -> list[str]:
    """``"all"`` or comma-separated method names, checked against the registry."""
    from lucidax.attribute import get_method, method_names

    if spec == "all":
        return list(method_names())
    names = list(dict.fromkeys(m.strip() for m in spec.split(",") if m.strip()))
    for m in names:
        get_method(m)  # raises with the valid names
    return names


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=64, help="images for the AUC table")
    ap.add_argument("--n-random", type=int, default=16, help="images for the sanity check")
    ap.add_argument("--n-adv", type=int, default=64, help="images for the PGD numbers")
    ap.add_argument("--methods", default="all")
    ap.add_argument("--random-methods", default="all",
                    help="methods of the randomization check (default: all)")
    ap.add_argument("--steps", type=int, default=32, help="points of the curves")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--figure", default=None, help="write the overlay grid here")
    ap.add_argument("--skip", default="", help="comma list of parts to skip: auc,random,adv")
    args = ap.parse_args(argv)
    skip = set(filter(None, args.skip.split(",")))

    import jax

    import lucidax.models as lm
    from lucidax.attribute import (
        deletion_curve,
        eps_needed,
        get_method,
        insertion_curve,
        pgd,
        randomization_check,
    )
    from lucidax.models import starter

    model = lm.load("starter")
    p = model.params
    data = starter.dataset(max(args.n, args.n_random, args.n_adv), split="test", seed=args.seed)
    names = [m for m in _names(args.methods) if m != "random"] + ["random"]
    _line(kind="setup", jax=jax.__version__, backend=jax.default_backend(), methods=names,
          n=args.n, n_random=args.n_random, n_adv=args.n_adv)

    if "auc" not in skip or args.figure:
        sub = data.subset(slice(0, args.n))
        x, y, mask = sub.images, sub.labels["digit"], sub.digit_mask
        z = np.asarray(model.apply(p, x, ("logits",))["logits"])
        _line(kind="accuracy", n=args.n, accuracy=float((z.argmax(1) == y).mean()))
        maps = {}
        rows = [*names, "digit_mask"]
        for m in rows:
            t0 = time.perf_counter()
            if m == "digit_mask":
                mp = mask.astype(np.float32)
            else:
                mp = np.asarray(get_method(m)(model, p, x, y), np.float32)
            dt = time.perf_counter() - t0
            maps[m] = mp
            if "auc" in skip:
                continue
            d = deletion_curve(model, p, x, mp, y, steps=args.steps)
            i = insertion_curve(model, p, x, mp, y, steps=args.steps)
            flat = mp.reshape(len(mp), -1)
            k = flat.shape[1] // 10
            top = np.argsort(-flat, axis=1, kind="stable")[:, :k]
            on = np.take_along_axis(mask.reshape(len(mask), -1), top, axis=1).mean()
            sem = (lambda a: float(np.std(a, ddof=1) / np.sqrt(len(a))))  # noqa: E731
            _line(kind="auc", method=m, deletion_auc=d.mean_auc, deletion_sem=sem(d.auc),
                  insertion_auc=i.mean_auc, insertion_sem=sem(i.auc), on_digit_top10=float(on),
                  seconds=dt, seconds_per_image=dt / args.n)
        if args.figure:
            from lucidax.attribute import save_figure

            show = [m for m in rows if m not in ("random", "digit_mask")]
            k = 6
            labels = [f"label {int(a)}" for a in y[:k]]
            save_figure(args.figure, x[:k], {m: maps[m][:k] for m in show}, row_labels=labels)
            _line(kind="figure", path=args.figure, methods=show)

    if "random" not in skip:
        sub = data.subset(slice(0, args.n_random))
        methods = [m for m in _names(args.random_methods)]
        t0 = time.perf_counter()
        r = randomization_check(model, p, sub.images, sub.labels["digit"], methods, key=1)
        for m, row in r.table().items():
            _line(kind="randomization", method=m, stages=list(r.stages), **row)
        _line(kind="randomization_time", seconds=time.perf_counter() - t0)

    if "adv" not in skip:
        sub = data.subset(slice(0, args.n_adv))
        x, y = sub.images, sub.labels["digit"]
        for norm, grid in (("linf", (1 / 255, 2 / 255, 4 / 255, 8 / 255)),
                           ("l2", (0.25, 0.5, 1.0, 2.0))):
            for eps in grid:
                t0 = time.perf_counter()
                res = pgd(model, p, x, y, eps=eps, norm=norm, steps=20, key=args.seed)
                _line(kind="pgd", seconds=time.perf_counter() - t0, **res.summary())
        fg = pgd(model, p, x, y, eps=4 / 255, steps=1, step_size=4 / 255, random_start=False)
        _line(kind="fgsm", **fg.summary())
        need = eps_needed(model, p, x, y, norm="linf", steps=20,
                          eps_grid=[e / 255 for e in (0.5, 1, 2, 3, 4, 6, 8, 12, 16, 32)])
        fin = need[np.isfinite(need) & (need > 0)]
        _line(kind="eps_needed", norm="linf", steps=20, median=float(np.median(fin)) * 255,
              quartiles_x255=(np.percentile(fin, [25, 75]) * 255).tolist(),
              unbroken=int(np.isinf(need).sum()), already=int((need == 0).sum()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
