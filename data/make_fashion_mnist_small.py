"""Makes data/fashion_mnist_small.npz, the demo dataset: a class-balanced subset of
Fashion-MNIST (MIT licence, Copyright 2017 Zalando SE) from the original IDX files.

  python data/make_fashion_mnist_small.py --source=DIR_OF_THE_ORIGINAL_FASHION_MNIST_FILES
"""

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from ofa_tf.data import read_idx_file  # noqa: E402

CLASS_NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
               "Ankle boot"]


def balanced(x, y, per_class, seed):
    rng = np.random.default_rng(seed)
    keep = np.concatenate([rng.choice(np.flatnonzero(y == c), per_class, replace=False) for c in range(10)])
    keep = rng.permutation(keep)
    return x[keep], y[keep]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", required=True, help="folder of the original Fashion-MNIST *-ubyte.gz files")
    parser.add_argument("--train_per_class", type=int, default=300)
    parser.add_argument("--test_per_class", type=int, default=100)
    parser.add_argument("--output", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                         "fashion_mnist_small.npz"))
    args = parser.parse_args()
    read = lambda name: read_idx_file(os.path.join(args.source, name))  # noqa: E731
    x_train, y_train = balanced(read("train-images-idx3-ubyte.gz"), read("train-labels-idx1-ubyte.gz"),
                                args.train_per_class, 0)
    x_test, y_test = balanced(read("t10k-images-idx3-ubyte.gz"), read("t10k-labels-idx1-ubyte.gz"),
                              args.test_per_class, 1)
    np.savez_compressed(args.output, x_train=x_train, y_train=y_train.astype(np.int64), x_test=x_test,
                        y_test=y_test.astype(np.int64), class_names=np.array(CLASS_NAMES))
    print(f"wrote {args.output}: {len(x_train)} train / {len(x_test)} test images")


if __name__ == "__main__":
    main()
