"""Benchmark: lucidax.probes.fit_probe vs scikit-learn LogisticRegression, same protocol.

Both sides do the whole job: stratified 5-fold CV over the same lambda grid on the same
folds (each fold standardized with its own training statistics), pick the lambda with the
best pooled CV log-loss (``--scoring``), refit on the whole train split, score the
held-out test split. scikit-learn uses lbfgs (multinomial), ``C = 1 / (lambda * n_fit)``,
the same ``tol`` (gradient infinity-norm) and ``max_iter``, and by default warm-starts along
the lambda path from strong to weak regularization (as LogisticRegressionCV does).

Data: synthetic features with a planted low-rank class signal, correlated noise and
heterogeneous feature scales/offsets (``--n`` samples x ``--d`` features, ``--classes``).

Prints one JSON line. Example (scaled down)::

    python scripts/bench_probe.py --n 4000 --d 512
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings

import numpy as np


def make_data(n: int, d: int, k: int, *, signal: float, seed: int) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    r = min(32, d)
    basis = rng.normal(size=(r, d)) / np.sqrt(r)
    means = rng.normal(size=(k, r)) @ basis * signal  # class signal in an r-dim subspace
    mix = rng.normal(size=(64, d)) / 8.0  # correlated noise (rank 64) + isotropic noise
    x = means[y] + rng.normal(size=(n, 64)) @ mix + rng.normal(size=(n, d))
    scale = np.exp(rng.normal(size=d))  # heterogeneous scales and offsets
    x = x * scale + rng.normal(size=d) * 3.0
    return x.astype(np.float32), y


def sklearn_probe(x, y, lambdas, *, test_size, folds, seed, tol, max_iter, warm_start,
                  scoring):
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from lucidax.probes import stratified_folds, stratified_split

    train_idx, test_idx = stratified_split(y, test_size, seed=seed)
    x_tr, y_tr = x[train_idx].astype(np.float64), y[train_idx]
    x_te, y_te = x[test_idx].astype(np.float64), y[test_idx]
    fold_id = stratified_folds(y_tr, folds, seed=seed + 1)
    order = sorted(range(len(lambdas)), key=lambda i: -lambdas[i])  # strong -> weak
    correct, loss = np.zeros(len(lambdas)), np.zeros(len(lambdas))
    n_iters = []
    for f in range(folds):
        tr, va = fold_id != f, fold_id == f
        sc = StandardScaler().fit(x_tr[tr])
        xa, xv = sc.transform(x_tr[tr]), sc.transform(x_tr[va])
        model = LogisticRegression(tol=tol, max_iter=max_iter, warm_start=warm_start)
        for i in order:
            model.set_params(C=1.0 / (lambdas[i] * tr.sum()))
            model.fit(xa, y_tr[tr])
            n_iters.append(int(model.n_iter_.max()))
            proba = model.predict_proba(xv)
            correct[i] += np.sum(np.argmax(proba, axis=1) == y_tr[va])
            p_true = proba[np.arange(len(proba)), y_tr[va]]
            loss[i] -= np.sum(np.log(np.maximum(p_true, 1e-300)))
    cv, cv_loss = correct / len(y_tr), loss / len(y_tr)
    if scoring == "log_loss":
        best = min(range(len(lambdas)), key=lambda i: (cv_loss[i], -lambdas[i]))
    else:
        best = max(range(len(lambdas)), key=lambda i: (cv[i], lambdas[i]))
    sc = StandardScaler().fit(x_tr)
    model = LogisticRegression(C=1.0 / (lambdas[best] * len(y_tr)), tol=tol, max_iter=max_iter)
    model.fit(sc.transform(x_tr), y_tr)
    n_iters.append(int(model.n_iter_.max()))
    acc = float(np.mean(model.predict(sc.transform(x_te)) == y_te))
    return {"accuracy": acc, "lambda": lambdas[best], "cv_scores": cv.tolist(),
            "n_iter_total": int(sum(n_iters)), "n_iter_max": int(max(n_iters))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--d", type=int, default=2048)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--signal", type=float, default=0.07, help="class-signal strength")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--test-size", type=float, default=0.25)
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--max-iter", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--scoring", choices=("log_loss", "accuracy"), default="log_loss")
    ap.add_argument("--no-warm-start", action="store_true", help="cold-start every sklearn fit")
    ap.add_argument("--skip-sklearn", action="store_true")
    args = ap.parse_args()

    import jax

    from lucidax.probes import DEFAULT_LAMBDAS, fit_probe
    from lucidax.probes._linear import _LAST_STATS  # solver diagnostics of the last fit

    lambdas = list(DEFAULT_LAMBDAS)
    x, y = make_data(args.n, args.d, args.classes, signal=args.signal, seed=args.seed)
    common = dict(test_size=args.test_size, folds=args.folds, seed=args.seed)
    scoring = args.scoring

    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = fit_probe(x, y, lambdas=lambdas, tol=args.tol, max_iter=args.max_iter,
                        scoring=scoring, **common)
    t_cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    fit_probe(x, y, lambdas=lambdas, tol=args.tol, max_iter=args.max_iter, scoring=scoring,
              **common)
    t_warm = time.perf_counter() - t0

    out = {
        "bench": "probe",
        "n": args.n,
        "d": args.d,
        "classes": args.classes,
        "folds": args.folds,
        "n_lambdas": len(lambdas),
        "scoring": scoring,
        "lucidax_s": round(t_cold, 2),
        "lucidax_warm_s": round(t_warm, 2),
        "lucidax_accuracy": res.accuracy,
        "lucidax_lambda": res.lambda_,
        "lucidax_converged": res.converged,
        "lucidax_n_iter_max": res.n_iter,
        "lucidax_warnings": [str(w.message)[:200] for w in caught],
        "lucidax_solver_stats": dict(_LAST_STATS),
        "chance": res.chance,
        "jax_backend": jax.default_backend(),
        "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"),
        "loadavg_before_sklearn": os.getloadavg()[0],
    }
    if not args.skip_sklearn:
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sk = sklearn_probe(
                x, y, lambdas, tol=args.tol, max_iter=args.max_iter,
                warm_start=not args.no_warm_start, scoring=scoring, **common,
            )
        t_sk = time.perf_counter() - t0
        out.update(
            sklearn_s=round(t_sk, 2),
            sklearn_accuracy=sk["accuracy"],
            sklearn_lambda=sk["lambda"],
            sklearn_n_iter_total=sk["n_iter_total"],
            sklearn_n_iter_max=sk["n_iter_max"],
            sklearn_warm_start=not args.no_warm_start,
            speedup=round(t_sk / t_cold, 2),
            speedup_warm=round(t_sk / t_warm, 2),
            accuracy_diff_points=round(100 * (res.accuracy - sk["accuracy"]), 3),
        )
    out["loadavg_end"] = os.getloadavg()[0]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
