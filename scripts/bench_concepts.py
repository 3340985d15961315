"""Benchmark: lucidax.concepts NMF vs scikit-learn's NMF on real activations; SAE and PCA.

Data: EfficientNet-Lite0 ``head`` activations (1,280 channels, post-ReLU6) of crops of
lucidax's built-in photos (``lucidax.models.photos.photos``), average-pooled to a 7 x 7 grid
(``lucidax.probes.extract(..., reduce=("grid", 7))``) and reshaped to rows ``[N * 49, 1280]``.
They are cached under the system temp dir (``--cache``), so reruns skip the extraction.

NMF protocol: both sides factor the same float32 rows with the same K and init ``nndsvda``.
scikit-learn (``solver="cd"``, ``tol``) runs to its own stopping rule first; lucidax then
runs until its relative error is within 1% of scikit-learn's (``target``), so the times are
at (about) equal reconstruction error. The order is ours / sklearn / ours (the better of
our two runs is reported; the first includes compilation, reported separately), with the
load average before each. Also: TopK SAE training throughput (rows/s) and PCA time.

Prints one JSON line. ``--quick`` uses 20,000 rows::

    python scripts/bench_concepts.py --quick
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import warnings

import numpy as np


def activations(n_images: int, cache: str) -> np.ndarray:
    """``[n_images * 49, 1280]`` float32 rows (a memmap of the cache file)."""
    for have in (4000, n_images):  # the full-size cache serves --quick too
        path = os.path.join(cache, f"lite0_head_grid7_{have}.npy")
        if have >= n_images and os.path.exists(path):
            return np.load(path, mmap_mode="r")
    if not os.path.exists(path):
        import lucidax.models as lm
        from lucidax.models.photos import photos
        from lucidax.probes import extract

        model = lm.load("efficientnet_lite0", seed=0)
        imgs = photos(n_images, side=224).images
        feats = extract(model, model.params, imgs, "head", reduce=("grid", 7),
                        progress=True)
        x = np.asarray(feats.arrays["head"], np.float32).reshape(n_images * 49, -1)
        os.makedirs(cache, exist_ok=True)
        tmp = path + ".tmp.npy"
        np.save(tmp, x)
        os.replace(tmp, path)
    return np.load(path, mmap_mode="r")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=196_000, help="rows (images * 49)")
    ap.add_argument("--k", type=int, default=25)
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--max-iter", type=int, default=400)
    ap.add_argument("--quick", action="store_true", help="20,000 rows")
    ap.add_argument("--cache", default=os.path.join(tempfile.gettempdir(),
                                                     "lucidax_bench_concepts"))
    ap.add_argument("--skip-sklearn", action="store_true")
    ap.add_argument("--sae-epochs", type=int, default=2)
    args = ap.parse_args()
    rows = 20_000 if args.quick else args.rows
    n_images = -(-rows // 49)

    t = time.perf_counter()
    A_all = activations(n_images, args.cache)
    A = np.ascontiguousarray(A_all[:rows], np.float32)
    load_s = time.perf_counter() - t

    import jax

    from lucidax.concepts import nmf, pca, topk_sae

    out: dict = {"benchmark": "concepts", "rows": int(A.shape[0]), "channels": int(A.shape[1]),
                 "k": args.k, "tol": args.tol, "data": "efficientnet_lite0 head, 7x7 grid, "
                 "builtin photos 224px", "load_s": round(load_s, 2),
                 "min_value": float(A.min()), "zero_fraction": float(np.mean(A == 0)),
                 "jax": jax.__version__, "devices": str(jax.devices()[0]),
                 "cpus": os.cpu_count()}

    def ours(target=None, tol=args.tol):
        la = os.getloadavg()[0]
        t = time.perf_counter()
        f = nmf(A, args.k, key=0, init="nndsvda", tol=tol, iterations=args.max_iter,
                target=target, progress=False)
        return {"seconds": round(time.perf_counter() - t, 3), "error": f.error,
                "iterations": f.iterations, "loadavg_before": la}

    out["ours_first"] = first = ours()  # to our own tol; includes compilation
    if not args.skip_sklearn:
        from sklearn.decomposition import NMF

        la = os.getloadavg()[0]
        t = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sk = NMF(args.k, init="nndsvda", solver="cd", tol=args.tol,
                     max_iter=args.max_iter, random_state=0)
            U = sk.fit_transform(A)
        sk_s = time.perf_counter() - t
        Ws = sk.components_
        err = float(np.linalg.norm(A - U @ Ws) / np.linalg.norm(A))
        out["sklearn"] = {"seconds": round(sk_s, 3), "error": err,
                          "iterations": int(sk.n_iter_), "loadavg_before": la,
                          "dtype": str(U.dtype)}
        out["ours_to_sklearn_error"] = second = ours(target=err * 1.01)
        out["ratio_at_equal_error"] = round(sk_s / second["seconds"], 2)
        out["ratio_to_own_tol_first_run"] = round(sk_s / first["seconds"], 2)
    out["ours_to_own_tol"] = ours()
    # our rule (relative improvement of one pass < tol) can stop on a plateau that a
    # smaller tol gets past: report where tol / 10 ends too
    out["ours_tol_div_10"] = ours(tol=args.tol / 10)

    la = os.getloadavg()[0]
    s = topk_sae(A, args.k * 4, topk=8, epochs=args.sae_epochs, key=0, progress=False)
    out["sae"] = {"latents": args.k * 4, "topk": 8, "epochs": s.iterations,
                  "seconds": round(s.seconds, 2), "error": s.error, "l0": s.l0,
                  "train_rows_per_second": round(s.extra["rows_per_second"]),
                  "dead": s.extra["dead"], "loadavg_before": la}
    t = time.perf_counter()
    p = pca(A, args.k)
    out["pca"] = {"seconds": round(time.perf_counter() - t, 3), "error": p.error}
    out["loadavg_end"] = os.getloadavg()[0]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
