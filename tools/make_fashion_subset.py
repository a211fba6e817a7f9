"""Writes the embedded proxy dataset: a class-balanced, seeded subset of Fashion-MNIST.

    python tools/make_fashion_subset.py [--source /usr/share/datasets/fashion-mnist] [--train 20000] [--test 5000]

Source: the original idx files (Debian's `dataset-fashion-mnist`, or the Keras cache
~/.keras/datasets/fashion-mnist/). Training images come from Fashion-MNIST's train split,
held-out images from its test split, the same number per class, chosen by a seed-0
permutation; both keep the original 28x28 uint8 grey levels. Output:
ef_keras/datasets/fashion_mnist_subset.npz (np.savez_compressed: x_train, y_train, x_test, y_test).
Fashion-MNIST is (c) Zalando SE, MIT licence (ef_keras/datasets/FASHION_MNIST_LICENSE).
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def balanced_subset(labels: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Indices of `n` examples, n / classes per class, in a seeded random order."""
    classes = np.unique(labels)
    if n % len(classes):
        raise SystemExit(f"subset size {n} is not a multiple of {len(classes)} classes")
    order = np.random.default_rng(seed).permutation(len(labels))
    per_class = n // len(classes)
    picked = np.concatenate([order[labels[order] == c][:per_class] for c in classes])
    return np.sort(picked)


def main():
    from ef_keras.data import read_fashion_mnist_idx

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default="/usr/share/datasets/fashion-mnist")
    parser.add_argument("--train", type=int, default=20000)
    parser.add_argument("--test", type=int, default=5000)
    parser.add_argument("--out", default=os.path.join("ef_keras", "datasets", "fashion_mnist_subset.npz"))
    args = parser.parse_args()
    (x_train, y_train), (x_test, y_test) = read_fashion_mnist_idx(args.source)
    tr, te = balanced_subset(y_train, args.train), balanced_subset(y_test, args.test)
    tmp = args.out + ".tmp.npz"
    np.savez_compressed(tmp, x_train=x_train[tr], y_train=y_train[tr].astype("uint8"),
                        x_test=x_test[te], y_test=y_test[te].astype("uint8"))
    os.replace(tmp, args.out)
    print(f"wrote {args.out}: {len(tr)} train + {len(te)} held-out images, {os.path.getsize(args.out) / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
