"""Accuracy predictors on the arch encoding, in NumPy: OFA's MLP and ridge.

Input: the space's `ArchEncoder` (`search/encoding.py`: OFA's one-hot layout). Two kinds, one class:
- "mlp", OFA's: 3 x 400 ReLU -> 1, plus a constant base accuracy; trained with Adam (lr
  1e-3, L2 weight decay 1e-4 as PyTorch's Adam applies it) on the MSE to measured,
  BN-recalibrated accuracies. OFA trained it on ~16k measured subnets.
- "linear": ridge regression on the same encoding (the MLP with no hidden layer), its L2
  strength picked by the exact leave-one-out error (scikit-learn's `RidgeCV`). With the few
  hundred subnets a small machine can measure it ranked better than the MLP by cross-validated
  Spearman (docs/results.md).
`fit_predictor(kind="auto")` picks between them by K-fold CV Spearman on the training archs
alone, so a held-out figure stays honest. Predictors rank subnets; they are not calibrated.
The statistics are scipy's (Spearman, Kendall's tau-b) and scikit-learn's (K-fold, ridge),
imported when first used: both take seconds to import, and `ofa-search --help` must not.
`quality_warnings` says when a predictor's figures do not support searching with it.

Why NumPy and not Keras: search calls it on batches of 100 archs 500 times per target, and
a Keras call costs more in dispatch than the three matrix products it does; NumPy also
keeps search free of TensorFlow start-up. Training a net this small on a few hundred
samples takes seconds in NumPy too.

Saved as `<dir>/predictor.npz` (the weights and a JSON header with the space's config and
fingerprint, so loading it for another space fails with one line) plus a readable
`<dir>/predictor.json` report (settings, cross-validated and held-out Spearman and Kendall
tau, the warnings).
"""

from __future__ import annotations

import json
import os
import zipfile
import zlib
from typing import Any, Sequence

import numpy as np

from ofa_tf.errors import OfaError
from ofa_tf.io import atomic_write, isfile, local_copy, makedirs, write_json
from ofa_tf.search.encoding import arch_encoder, space_fingerprint
from ofa_tf.spaces import Arch, SearchSpace
from ofa_tf.values import is_finite_number

PREDICTOR_DIR = "predictor"
WEIGHTS_FILE = "predictor.npz"
REPORT_FILE = "predictor.json"


# ----------------------------------------------------------------------- rank statistics
def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's rank correlation (`scipy.stats.spearmanr`: Pearson correlation of
    tie-averaged ranks); 0.0 when either sequence is constant (no ranking to compare)."""
    return _rank_statistic("spearmanr", a, b)


def kendall_tau(a: Sequence[float], b: Sequence[float]) -> float:
    """Kendall's tau-b (`scipy.stats.kendalltau`, which accounts for ties in either
    sequence); 0.0 when either sequence is constant."""
    return _rank_statistic("kendalltau", a, b)


def _rank_statistic(name: str, a: Sequence[float], b: Sequence[float]) -> float:
    import scipy.stats  # here: scipy.stats takes seconds to import, and ofa-search --help must not wait

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if len(a) != len(b):
        raise OfaError(f"rank correlation of {len(a)} against {len(b)} values")
    if len(a) < 2 or np.all(a == a[0]) or np.all(b == b[0]):
        return 0.0  # scipy returns NaN (and warns) for a constant input
    return float(getattr(scipy.stats, name)(a, b).statistic)


def cross_validated_spearman(space: SearchSpace, archs: Sequence[Arch], accuracies: Sequence[float],
                             folds: int = 5, seed: int = 0, kind: str = "mlp", **fit_kwargs: Any) -> dict[str, Any]:
    """K-fold cross-validated rank correlation of the predictor on measured archs.

    A single held-out split of a few dozen archs gives a Spearman with a standard error
    near 0.15; predicting every measured arch once from a predictor that did not see it
    uses all of them. Returns {"spearman", "kendall_tau"} over all out-of-fold predictions,
    "fold_spearman" (one per fold) and "predicted" (each arch's out-of-fold prediction, in
    the order given). The folds are scikit-learn's `KFold` (shuffled with `seed`). `kind`
    and `fit_kwargs` go to `fit_predictor`; with "auto" the choice is made afresh inside
    each fold (nested), from that fold's archs only.
    """
    from sklearn.model_selection import KFold  # here: scikit-learn is slow to import (see `_rank_statistic`)

    y = np.asarray(accuracies, np.float64)
    if folds < 2 or len(archs) < 2 * folds:
        raise OfaError(f"cross-validation with {folds} folds needs folds >= 2 and >= {2 * folds} archs, "
                       f"got {len(archs)}")
    predicted = np.zeros(len(archs))
    per_fold = []
    for train, part in KFold(n_splits=folds, shuffle=True, random_state=seed).split(np.zeros((len(archs), 1))):
        model = fit_predictor(space, [archs[i] for i in train], y[train], kind, seed=seed, **fit_kwargs)
        predicted[part] = model.predict([archs[i] for i in part])
        per_fold.append(spearman(predicted[part], y[part]))
    return {"folds": folds, "spearman": spearman(predicted, y), "kendall_tau": kendall_tau(predicted, y),
            "fold_spearman": [round(v, 4) for v in per_fold], "predicted": [float(v) for v in predicted]}


# A predictor whose cross-validated Spearman is at most this ranks subnets too poorly to
# steer a search (`quality_warnings`).
MIN_USEFUL_SPEARMAN = 0.3
# A held-out Spearman on fewer subnets has a standard error above ~0.19 (about 1 / sqrt(n - 3)).
MIN_HELDOUT_ARCHS = 30


def quality_warnings(info: dict[str, Any]) -> list[str]:
    """What a predictor's report (`AccuracyPredictor.info` as ofa-train-predictor fills it:
    "spearman", "spearman_source", "num_heldout") says against trusting it, one sentence each:
    a headline Spearman at or below MIN_USEFUL_SPEARMAN (the search would pick little better
    than at random), and a held-out set under MIN_HELDOUT_ARCHS subnets (its figure is noise)."""
    found = []
    headline, source = info.get("spearman"), info.get("spearman_source", "held-out")
    if is_finite_number(headline) and headline <= MIN_USEFUL_SPEARMAN:
        found.append(f"the predictor ranks subnets poorly ({source} Spearman {headline:.3f} <= "
                     f"{MIN_USEFUL_SPEARMAN}): a search with it picks little better than at random; measure more "
                     "subnets (--num_archs) or search with --fitness=measured")
    heldout = info.get("num_heldout")
    if isinstance(heldout, int) and heldout < MIN_HELDOUT_ARCHS:
        found.append(f"only {heldout} held-out subnets: their Spearman "
                     f"({info.get('heldout_spearman', float('nan')):.3f}) has a standard error near "
                     f"{1 / np.sqrt(max(heldout - 3, 1)):.2f}; trust the cross-validated figure "
                     f"(or hold out >= {MIN_HELDOUT_ARCHS})")
    return found


PREDICTOR_KINDS = ("auto", "mlp", "linear")
L2_GRID = (1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0)  # ridge strengths tried (targets standardised)


def fit_predictor(space: SearchSpace, archs: Sequence[Arch], accuracies: Sequence[float], kind: str = "auto", *,
                  seed: int = 0, folds: int = 5, **mlp_options: Any) -> "AccuracyPredictor":
    """A trained predictor of `kind`: "mlp" (`AccuracyPredictor.fit`, `mlp_options` go there),
    "linear" (`AccuracyPredictor.fit_linear`), or "auto": whichever of the two has the higher
    `folds`-fold CV Spearman on these archs (ties: linear, the cheaper); both figures go to
    `info["selection"]`."""
    if kind == "mlp":
        return AccuracyPredictor.fit(space, archs, accuracies, seed=seed, **mlp_options)
    if kind == "linear":
        return AccuracyPredictor.fit_linear(space, archs, accuracies)
    if kind != "auto":
        raise OfaError(f"kind={kind!r}: expected one of {list(PREDICTOR_KINDS)}")
    folds = min(folds, len(archs) // 2)
    scores = {k: cross_validated_spearman(space, archs, accuracies, folds, seed, k, **mlp_options)["spearman"]
              for k in ("linear", "mlp")}
    chosen = max(scores, key=lambda k: (scores[k], k == "linear"))
    predictor = fit_predictor(space, archs, accuracies, chosen, seed=seed, **mlp_options)
    predictor.info["selection"] = {"folds": folds, "cv_spearman": {k: round(v, 4) for k, v in scores.items()},
                                   "chosen": chosen}
    return predictor


# ----------------------------------------------------------------------------- the model
class AccuracyPredictor:
    """accuracy(arch) ~ base + scale * net(encode(arch)), batched in NumPy; `net` is an MLP,
    or a single linear layer for the "linear" kind (same file format)."""

    def __init__(self, space: SearchSpace, layers: list[tuple[np.ndarray, np.ndarray]], base: float,
                 scale: float, info: dict[str, Any] | None = None):
        self.space = space
        self.encoder = arch_encoder(space)
        if layers[0][0].shape[0] != self.encoder.size:
            raise OfaError(f"predictor input size {layers[0][0].shape[0]} does not match space "
                           f"{space.name!r} (encoding size {self.encoder.size})")
        self.layers = [(np.asarray(w, np.float32), np.asarray(b, np.float32)) for w, b in layers]
        self.base, self.scale = float(base), float(scale)
        self.info = dict(info or {})

    def predict(self, archs: Sequence[Arch]) -> np.ndarray:
        """Predicted accuracy of each arch (float64 vector)."""
        if not len(archs):
            return np.zeros(0)
        return self.base + self.scale * _forward(self.layers, self.encoder.encode(archs))[0][:, 0].astype(np.float64)

    __call__ = predict

    # ------------------------------------------------------------------- training
    @classmethod
    def fit(cls, space: SearchSpace, archs: Sequence[Arch], accuracies: Sequence[float], *, seed: int = 0,
            hidden: Sequence[int] = (400, 400, 400), epochs: int = 300, batch_size: int = 64,
            learning_rate: float = 1e-3, weight_decay: float = 1e-4) -> "AccuracyPredictor":
        """Trains on (arch, measured accuracy) pairs; deterministic for a given seed."""
        if len(archs) != len(accuracies) or len(archs) < 2:
            raise OfaError(f"predictor training needs >= 2 measured archs, got {len(archs)}")
        x = arch_encoder(space).encode(archs)
        y = np.asarray(accuracies, np.float64)
        base, scale = float(y.mean()), float(y.std()) or 1.0
        target = ((y - base) / scale).astype(np.float32)[:, None]
        rng = np.random.default_rng(seed)
        sizes = [x.shape[1], *hidden, 1]
        layers = [(rng.uniform(-1, 1, (n_in, n_out)).astype(np.float32) * np.float32(np.sqrt(6.0 / n_in)),
                   np.zeros(n_out, np.float32)) for n_in, n_out in zip(sizes[:-1], sizes[1:])]
        adam = _Adam(layers, learning_rate)
        for _ in range(epochs):
            order = rng.permutation(len(x))
            for start in range(0, len(x), batch_size):
                batch = order[start:start + batch_size]
                grads = _backward(layers, x[batch], target[batch])
                grads = [(gw + weight_decay * w, gb + weight_decay * b) for (gw, gb), (w, b) in zip(grads, layers)]
                adam.step(layers, grads)
        info = {"kind": "mlp", "hidden": list(hidden), "epochs": epochs, "batch_size": batch_size,
                "learning_rate": learning_rate, "weight_decay": weight_decay, "seed": seed, "num_train": len(archs)}
        return cls(space, layers, base, scale, info)

    @classmethod
    def fit_linear(cls, space: SearchSpace, archs: Sequence[Arch], accuracies: Sequence[float],
                   l2_grid: Sequence[float] = L2_GRID) -> "AccuracyPredictor":
        """Ridge regression on the encoding (scikit-learn's `RidgeCV`): one linear layer, the
        L2 strength from `l2_grid` with the least exact leave-one-out squared error (RidgeCV's
        efficient leave-one-out, so no refits; the intercept is not penalised)."""
        from sklearn.linear_model import RidgeCV  # here: slow to import (see `_rank_statistic`)

        if len(archs) != len(accuracies) or len(archs) < 3:
            raise OfaError(f"linear predictor training needs >= 3 measured archs with one accuracy each, got "
                           f"{len(archs)} archs and {len(accuracies)} accuracies")
        x = arch_encoder(space).encode(archs).astype(np.float64)
        y = np.asarray(accuracies, np.float64)
        base, scale = float(y.mean()), float(y.std()) or 1.0
        target = (y - base) / scale  # standardised, so one grid of strengths fits any accuracy range
        ridge = RidgeCV(alphas=[float(a) for a in l2_grid], fit_intercept=True, store_cv_results=True)
        ridge.fit(x, target)
        l2 = float(ridge.alpha_)
        loo_error = float(ridge.cv_results_[:, list(ridge.alphas).index(ridge.alpha_)].mean())
        layers = [(ridge.coef_[:, None], np.array([ridge.intercept_]))]
        info = {"kind": "linear", "l2": l2, "loo_mse": loo_error * scale ** 2, "num_train": len(archs)}
        return cls(space, layers, base, scale, info)

    # --------------------------------------------------------------- save / load
    def save(self, directory: str) -> None:
        """Writes predictor.npz (weights + header) and predictor.json (readable report)."""
        makedirs(directory)
        header = {"space": self.space.to_config(), "fingerprint": space_fingerprint(self.space),
                  "encoding_size": self.encoder.size, "base": self.base, "scale": self.scale, "info": self.info}
        arrays = {f"w{i}": w for i, (w, _) in enumerate(self.layers)}
        arrays.update({f"b{i}": b for i, (_, b) in enumerate(self.layers)})
        arrays["header"] = np.array(json.dumps(header))
        atomic_write(os.path.join(directory, WEIGHTS_FILE), lambda tmp: np.savez(tmp, **arrays))
        write_json(os.path.join(directory, REPORT_FILE),
                   {k: v for k, v in header.items() if k != "space"} | {"space_name": self.space.name})

    @classmethod
    def load(cls, directory: str, space: SearchSpace) -> "AccuracyPredictor":
        """The predictor saved in `directory`, checked to be trained for `space`.

        Raises:
          OfaError: missing file; a torn or damaged one, naming the file and what is wrong
            (not a .npz, a missing or malformed array or header field); a predictor for
            another space, by its recorded fingerprint or by its first layer's input width
            against `space`'s encoding (checked here, so it never fails later, while predicting).
        """
        path = os.path.join(directory, WEIGHTS_FILE)
        if not isfile(path):
            raise OfaError(f"{directory}: no trained accuracy predictor ({WEIGHTS_FILE}); "
                           "run ofa-train-predictor first or use --fitness=measured")
        try:
            with local_copy(path) as local:
                data = np.load(local, allow_pickle=False)
                if not isinstance(data, np.lib.npyio.NpzFile):
                    raise OfaError(f"{path}: unreadable predictor (a single .npy array, not a .npz archive)")
                with data:
                    count = max(1, sum(1 for k in data.files if k.startswith("w")))
                    expected = ["header"] + [f"{kind}{i}" for i in range(count) for kind in "wb"]
                    missing = [k for k in expected if k not in data.files]
                    if missing:
                        raise OfaError(f"{path}: unreadable predictor (no {missing[0]!r} array)")
                    header = json.loads(str(data["header"]))
                    layers = [(data[f"w{i}"], data[f"b{i}"]) for i in range(count)]
        except OfaError:
            raise
        except (OSError, ValueError, KeyError, EOFError, RecursionError, zipfile.BadZipFile, zlib.error) as e:
            detail = " ".join(str(e).split())[:120]
            raise OfaError(f"{path}: unreadable predictor ({type(e).__name__}: {detail})") from None
        base, scale, info = _check_saved(path, header, layers)
        if header.get("fingerprint") != space_fingerprint(space):
            theirs = header.get("space", {}).get("name", "?") if isinstance(header.get("space"), dict) else "?"
            raise OfaError(f"{path}: predictor was trained for another space ({theirs!r}, fingerprint "
                           f"{header.get('fingerprint')}) than this run's {space.name!r} "
                           f"({space_fingerprint(space)}); retrain it with ofa-train-predictor")
        inputs = layers[0][0].shape[0]
        if inputs != arch_encoder(space).size:
            raise OfaError(f"{path}: unreadable predictor (w0: {inputs} inputs, but space {space.name!r} encodes "
                           f"an arch as {arch_encoder(space).size} numbers); retrain it with ofa-train-predictor")
        return cls(space, layers, base, scale, info)


def _check_saved(path: str, header: Any, layers: list[tuple[np.ndarray, np.ndarray]]
                 ) -> tuple[float, float, dict[str, Any] | None]:
    """(base, scale, info) of a loaded predictor.npz, its header and weight arrays checked: a
    damaged file is one OfaError naming it and the field, never a failure while predicting."""
    def bad(field: str, why: str) -> OfaError:
        return OfaError(f"{path}: unreadable predictor ({field}: {why})")

    if not isinstance(header, dict):
        raise bad("header", "expected a JSON object")
    for key in ("base", "scale"):
        value = header.get(key)
        if not is_finite_number(value):
            raise bad(f"header.{key}", f"expected a finite number, got {str(value)[:40]}")
    if header.get("info") is not None and not isinstance(header["info"], dict):
        raise bad("header.info", "expected a JSON object")
    inputs = None
    for i, (w, b) in enumerate(layers):
        if w.dtype.kind != "f" or b.dtype.kind != "f":
            raise bad(f"w{i}/b{i}", f"expected float arrays, got {w.dtype} and {b.dtype}")
        if w.ndim != 2 or b.shape != (w.shape[1],) or (inputs is not None and w.shape[0] != inputs):
            raise bad(f"w{i}", f"shape {w.shape} (bias {b.shape}) does not follow the previous layer's")
        if not (np.all(np.isfinite(w)) and np.all(np.isfinite(b))):
            raise bad(f"w{i}/b{i}", "holds NaN or infinite weights")
        inputs = w.shape[1]
    if inputs != 1:
        raise bad(f"w{len(layers) - 1}", f"the last layer has {inputs} outputs; expected 1")
    return float(header["base"]), float(header["scale"]), header.get("info")


def _forward(layers, x: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """Output and the activations each layer consumed (for backprop)."""
    inputs = []
    h = x
    for i, (w, b) in enumerate(layers):
        inputs.append(h)
        h = h @ w + b
        if i < len(layers) - 1:
            h = np.maximum(h, 0.0)
    return h, inputs


def _backward(layers, x: np.ndarray, target: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Gradients of the mean squared error w.r.t. every (weight, bias)."""
    out, inputs = _forward(layers, x)
    grad = (2.0 / len(x)) * (out - target)
    grads = []
    for i in range(len(layers) - 1, -1, -1):
        w, _ = layers[i]
        grads.append((inputs[i].T @ grad, grad.sum(0)))
        if i:
            grad = (grad @ w.T) * (inputs[i] > 0)
    return grads[::-1]


class _Adam:
    """Adam (Kingma & Ba), updating the (weight, bias) arrays in place."""

    def __init__(self, layers, learning_rate: float, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8):
        self.lr, self.b1, self.b2, self.eps, self.t = learning_rate, beta1, beta2, eps, 0
        self.m = [np.zeros_like(p) for layer in layers for p in layer]
        self.v = [np.zeros_like(p) for layer in layers for p in layer]

    def step(self, layers, grads) -> None:
        self.t += 1
        params = [p for layer in layers for p in layer]
        flat = [g for pair in grads for g in pair]
        correction = np.sqrt(1 - self.b2 ** self.t) / (1 - self.b1 ** self.t)
        for p, g, m, v in zip(params, flat, self.m, self.v):
            m *= self.b1
            m += (1 - self.b1) * g
            v *= self.b2
            v += (1 - self.b2) * g * g
            p -= (self.lr * correction * m / (np.sqrt(v) + self.eps)).astype(p.dtype)
