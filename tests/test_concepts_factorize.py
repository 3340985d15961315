"""Concept factorizations (lucidax.concepts: nmf, topk_sae, pca, stability): behaviour on
a planted dictionary, streaming, determinism, errors, save/load, matching."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lucidax.concepts import (
    Factorization,
    codes,
    factorize,
    match_concepts,
    nmf,
    pca,
    stability,
    topk_sae,
)
from lucidax.concepts import _nmf as nmf_mod

K, C, N = 8, 48, 4000


@pytest.fixture(scope="module")
def planted():
    """Sparse non-negative codes (1-2 atoms per row) x 8 known non-negative unit directions
    + small non-negative noise."""
    rng = np.random.default_rng(0)
    W = np.abs(rng.normal(size=(K, C))) * (rng.random((K, C)) < 0.4)
    W /= np.linalg.norm(W, axis=1, keepdims=True)
    Z = np.zeros((N, K))
    for i in range(N):
        a = rng.choice(K, rng.integers(1, 3), replace=False)
        Z[i, a] = rng.exponential(size=len(a)) + 0.2
    A = (Z @ W + 0.01 * np.abs(rng.normal(size=(N, C)))).astype(np.float32)
    return A, W


@pytest.fixture(scope="module")
def fit(planted):
    return nmf(planted[0], K, key=0, progress=False)


def test_nmf_recovers_planted_dictionary(planted, fit):
    A, W = planted
    _, sim = match_concepts(W, fit.W)
    assert sim.min() >= 0.95, sim
    assert fit.error < 0.05 and fit.history[-1] == fit.error
    assert (fit.W >= 0).all() and fit.W.dtype == np.float32 and fit.W.shape == (K, C)
    U = fit.extra["U"]
    direct = np.linalg.norm(A - U @ fit.W) / np.linalg.norm(A)
    assert direct == pytest.approx(fit.error, rel=1e-3, abs=1e-4)  # error from the statistics
    assert fit.sparsity == pytest.approx(1 - fit.l0 / K)
    assert all(np.diff(fit.history) <= 1e-6)


def test_sae_recovers_planted_dictionary(planted):
    A, W = planted
    s = topk_sae(A, 2 * K, topk=2, key=0, epochs=60, batch_size=128, lr=3e-3,
                 progress=False)
    _, sim = match_concepts(W, s.W)
    assert sim.min() >= 0.95, sim
    assert np.allclose(np.linalg.norm(s.W, axis=1), 1, atol=1e-5)
    assert s.l0 <= 2 + 1e-9 and s.error < 0.2 and s.extra["rows_per_second"] > 0
    z = np.asarray(s.encode(A[:50]))
    assert ((z > 0).sum(1) <= 2).all()
    rec = np.asarray(s.decode(z))
    assert np.linalg.norm(rec - A[:50]) / np.linalg.norm(A[:50]) < 0.3


def test_error_falls_with_k(planted):
    A, _ = planted
    for method in ("nmf", "pca"):
        errs = [factorize(A, k, method=method, key=0, progress=False).error for k in (2, 4, 8)]
        assert errs[0] > errs[1] > errs[2], (method, errs)


def test_streaming_matches_whole_matrix(planted, fit):
    A, _ = planted
    # same number of passes (tol=0): the stopping rule could flip on a summation-order ulp
    whole = nmf(A, K, key=0, iterations=15, tol=0, progress=False)
    streamed = nmf(A, K, key=0, iterations=15, tol=0, batch_rows=1000 - 7,
                   progress=False)  # 5 chunks, the last one ragged (padded + masked)
    assert whole.config["batch_rows"] > N and streamed.iterations == 15
    assert np.allclose(streamed.W, whole.W, rtol=1e-3, atol=1e-4)
    assert streamed.error == pytest.approx(whole.error, rel=1e-3)  # float32 sums
    assert np.allclose(streamed.extra["U"], whole.extra["U"], rtol=1e-3, atol=1e-4)
    p1, p2 = pca(A, 4), pca(A, 4, batch_rows=999)
    assert np.allclose(p1.W, p2.W, atol=1e-4) and p1.error == pytest.approx(p2.error, rel=1e-5)


def test_memmap_and_maps_input(planted, fit, tmp_path):
    A, _ = planted
    path = tmp_path / "acts.npy"
    np.save(path, A.reshape(N // 40, 5, 8, C))
    mm = np.load(path, mmap_mode="r")
    f = nmf(mm, K, key=0, batch_rows=1024, iterations=5, tol=0, progress=False)
    g = nmf(A, K, key=0, iterations=5, tol=0, progress=False)
    assert np.allclose(f.W, g.W, rtol=1e-3, atol=1e-4)


def test_deterministic_from_key(planted, fit):
    A, _ = planted
    again = nmf(A, K, key=0, progress=False)
    assert np.array_equal(again.W, fit.W) and again.history == fit.history
    other = nmf(A, K, key=1, init="random", iterations=5, progress=False)
    other2 = nmf(A, K, key=1, init="random", iterations=5, progress=False)
    third = nmf(A, K, key=2, init="random", iterations=5, progress=False)
    assert np.array_equal(other.W, other2.W) and not np.array_equal(other.W, third.W)
    s1 = topk_sae(A[:1000], 4, topk=2, key=3, epochs=2, batch_size=250, progress=False)
    s2 = topk_sae(A[:1000], 4, topk=2, key=3, epochs=2, batch_size=250, progress=False)
    assert np.array_equal(s1.W, s2.W)


def test_encode_reproduces_training_codes(planted, fit):
    A, _ = planted
    U = fit.extra["U"]
    enc = np.asarray(fit.encode(A))
    assert np.linalg.norm(enc - U) / np.linalg.norm(U) < 1e-2
    streamed = codes(fit, A, batch_rows=777)
    assert np.allclose(streamed, enc, rtol=1e-4, atol=1e-4)
    assert np.asarray(fit.encode(A.reshape(40, 100, C))).shape == (40, 100, K)
    p = pca(A, 3)
    assert np.allclose(np.asarray(p.decode(p.encode(A[:5]))),
                       (A[:5] - p.extra["mean"]) @ p.W.T @ p.W + p.extra["mean"], atol=1e-4)
    assert np.allclose(p.W @ p.W.T, np.eye(3), atol=1e-5)


def test_second_call_does_not_recompile(planted):
    A, _ = planted
    nmf(A[:1200], 3, key=0, iterations=3, batch_rows=500, progress=False)
    before = dict(nmf_mod.TRACES)
    nmf(A[1200:2400] + 1.0, 3, key=5, iterations=4, batch_rows=500, progress=False)
    assert nmf_mod.TRACES == before


def test_bad_input(planted):
    A, _ = planted
    with pytest.raises(ValueError, match=r"non-negative.*smallest value is -1.*post-ReLU"):
        nmf(A - 1.0, 3, progress=False)
    bad = A.copy()
    bad[3, 4] = np.nan
    with pytest.raises(ValueError, match="1 non-finite"):
        nmf(bad, 3, progress=False)
    with pytest.raises(ValueError, match="k must be an integer >= 1"):
        nmf(A, 0, progress=False)
    with pytest.raises(ValueError, match="k must be <= the number of channels C=48"):
        pca(A, 49)
    with pytest.raises(ValueError, match=r"Unknown method 'nfm'.*'nmf'.*Valid methods: nmf, "
                                         r"sae, pca"):
        factorize(A, 3, method="nfm")
    with pytest.raises(ValueError, match="Unknown init 'svd'.*nndsvda, random"):
        nmf(A, 3, init="svd", progress=False)
    with pytest.raises(ValueError, match="topk must be <= k=3"):
        topk_sae(A, 3, topk=4, progress=False)
    with pytest.raises(ValueError, match=r"\[n, C\] rows or \[N, h, w, C\]"):
        nmf(A[0], 3, progress=False)
    with pytest.raises(ValueError, match="empty"):
        pca(A[:0], 1)
    with pytest.raises(ValueError, match="Unknown method"):
        stability(A, 3, method="ica")
    with pytest.raises(ValueError, match="devices: empty list"):
        pca(A, 2, devices=[])
    with pytest.raises(ValueError, match="devices must be jax devices"):
        nmf(A, 2, devices=["cpu"], progress=False)


def test_save_load_round_trip(planted, fit, tmp_path):
    A, _ = planted
    for f in (fit, pca(A, 3), topk_sae(A[:500], 4, topk=2, epochs=1, batch_size=100,
                                       progress=False)):
        path = tmp_path / f"{f.method}.npz"
        f.save(path)
        g = Factorization.load(path)
        assert g.method == f.method and np.array_equal(g.W, f.W)
        assert g.error == f.error and g.history == f.history and g.config == f.to_dict()["config"]
        assert np.allclose(np.asarray(g.encode(A[:20])), np.asarray(f.encode(A[:20])), atol=1e-5)
        assert "U" not in g.extra
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left


@settings(max_examples=25, deadline=None)
@given(st.permutations(list(range(6))), st.integers(0, 2**31 - 1))
def test_matching_recovers_permutation(perm, seed):
    rng = np.random.default_rng(seed)
    W = rng.normal(size=(6, 10))
    perm = np.array(perm)
    W2 = W[perm] * rng.uniform(0.5, 2, size=(6, 1))  # rescaled: cosine ignores the norm
    order, sim = match_concepts(W, W2)
    assert np.array_equal(perm[order], np.arange(6))
    assert np.allclose(sim, 1)
    signs = rng.choice([-1.0, 1.0], size=(6, 1))
    order_abs, sim_abs = match_concepts(W, W2 * signs, absolute=True)
    assert np.array_equal(order_abs, order) and np.allclose(sim_abs, 1)


def test_stability_of_planted_dictionary(planted):
    A, _ = planted
    st_ = stability(A, K, method="nmf", seeds=(0, 1, 2), resample=0.8, init="random",
                    iterations=100)
    assert st_.mean > 0.97 and st_.per_concept.min() > 0.95 and len(st_.pairs) == 3
    assert st_.to_dict()["k"] == K
    p = stability(A, 3, method="pca", seeds=(0, 1))
    assert p.mean == pytest.approx(1.0)


_MULTI_DEVICE = textwrap.dedent(
    """
    import json
    import jax, numpy as np
    from lucidax.concepts import codes, nmf, pca, topk_sae
    rng = np.random.default_rng(0)
    K, C, N = 8, 48, 3001  # 3001 rows: not a multiple of 4 -- the padding is exercised
    W = np.abs(rng.normal(size=(K, C))) * (rng.random((K, C)) < 0.4)
    Z = rng.exponential(size=(N, K)) * (rng.random((N, K)) < 0.25)
    A = (Z @ W + 0.01 * np.abs(rng.normal(size=(N, C)))).astype(np.float32)
    one = [jax.devices()[0]]
    fits = {{
        "nmf": lambda d: nmf(A, K, init="random", iterations=12, tol=0, batch_rows=1000,
                             devices=d, progress=False),
        "pca": lambda d: pca(A, 5, batch_rows=999, devices=d),
        "sae": lambda d: topk_sae(A, 2 * K, topk=2, key=1, epochs=3, batch_size=128,
                                  batch_rows=1000, dead_rows=300, devices=d, progress=False),
    }}
    out = {{"devices": len(jax.devices())}}
    for name, fit in fits.items():
        multi, single = fit(None), fit(one)
        out[name] = {{
            "devices": [multi.config["devices"], single.config["devices"]],
            "w": float(np.abs(multi.W - single.W).max()),
            "error": [multi.error, single.error],
            "history": float(np.abs(np.subtract(multi.history, single.history)).max()),
            "resampled": [multi.extra.get("resampled"), single.extra.get("resampled")],
        }}
        if name == "pca":  # codes() sharded (777-row chunks, padded to 780) == one device
            out[name]["codes"] = float(np.abs(codes(multi, A, batch_rows=777)
                                              - codes(multi, A, batch_rows=777,
                                                      devices=one)).max())
        if name == "nmf":
            out[name]["u"] = float(np.abs(multi.extra["U"] - single.extra["U"]).max())
            out[name]["direct"] = [float(np.linalg.norm(A - f.extra["U"] @ f.W)
                                         / np.linalg.norm(A)) for f in (multi, single)]
    print(json.dumps(out))
    """
)


def test_sharded_over_four_devices_matches_one_device():
    """NMF, PCA and the SAE on 4 forced host devices (rows sharded, chunks padded to a
    multiple of 4, streamed in several chunks) equal the one-device fits."""
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4",
               JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", _MULTI_DEVICE.format()], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["devices"] == 4
    for name in ("nmf", "pca", "sae"):
        r = out[name]
        assert r["devices"] == [4, 1], (name, r)
        assert r["w"] < 1e-4, (name, r)
        # NMF's error comes from float32 statistics whose terms nearly cancel: its square
        # is only known to ~1e-6 of ||A||^2 (the summation order differs); the error computed
        # directly from U and W agrees far better (below)
        assert abs(r["error"][0] ** 2 - r["error"][1] ** 2) < 2e-6, (name, r)
        assert r["history"] < 1e-4, (name, r)
    assert out["pca"]["codes"] < 1e-5
    assert out["pca"]["error"][0] == pytest.approx(out["pca"]["error"][1], rel=1e-6)
    assert out["sae"]["error"][0] == pytest.approx(out["sae"]["error"][1], rel=1e-5)
    assert out["nmf"]["u"] < 1e-4
    assert out["nmf"]["direct"][0] == pytest.approx(out["nmf"]["direct"][1], rel=1e-4)
    assert out["sae"]["resampled"][0] == out["sae"]["resampled"][1] > 0  # resampling sharded
