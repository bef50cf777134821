"""Train the candidate verifier on generated scenes (``make train``).

Every candidate the finder proposes on the tuning scenes (and reseeded
variants of them) is labelled by whether it lands on a true car, and a
small MLP learns to tell them apart. The weights go to
plugin/core/verifier_weights.json, which the plugin ships; inference needs
numpy alone. Held-out scenes (bench_accuracy.py) are never used here.
"""
import argparse
import dataclasses
import hashlib
import json
import os
import sys
import tempfile
import time

import numpy as np
from shapely.geometry import Point, Polygon

from railcar_counter.plugin.core import synthetic
from railcar_counter.plugin.core.cars import FEATURES
from railcar_counter.plugin.core.detector import count_railcars
from railcar_counter.plugin.core.verifier import WEIGHTS, features_matrix


def keep_all(feature_dicts):
    return np.ones(len(feature_dicts))


def scene_path(cache, spec):
    key = hashlib.sha1(repr(spec).encode()).hexdigest()[:12]
    return os.path.join(cache, "%s_%s.tif" % (spec.name, key))


def labelled_candidates(spec, cache):
    path = scene_path(cache, spec)
    if os.path.exists(path + ".truth.json"):
        with open(path + ".truth.json") as fh:
            truth = json.load(fh)
    else:
        cars = synthetic.generate_scene(spec, path)
        truth = [[list(map(list, c.corners)), c.type] for c in cars]
        with open(path + ".truth.json", "w") as fh:
            json.dump(truth, fh)
    polys = [Polygon(c).buffer(0.0) for c, _ in truth]
    dets = count_railcars(path, verifier=keep_all).detections
    used = set()
    X, y = [], []
    for d in dets:
        p = Point(d.cx, d.cy)
        hit = None
        for i, poly in enumerate(polys):
            if i not in used and poly.contains(p):
                hit = i
                break
        if hit is not None:
            used.add(hit)
        X.append(d.features)
        y.append(1.0 if hit is not None else 0.0)
    return X, y, len(polys)


def train_mlp(X, y, hidden=12, epochs=3000, lr=0.01, l2=1e-3, seed=0):
    rng = np.random.default_rng(seed)
    mean, std = X.mean(0), X.std(0) + 1e-6
    Z = (X - mean) / std
    n, d = Z.shape
    w1 = rng.normal(0, 1 / np.sqrt(d), (d, hidden))
    b1 = np.zeros(hidden)
    w2 = rng.normal(0, 1 / np.sqrt(hidden), hidden)
    b2 = 0.0
    params = [w1, b1, w2, np.array([b2])]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    pos = max(1.0, y.sum())
    wts = np.where(y > 0, n / (2 * pos), n / (2 * max(1.0, n - pos)))
    for t in range(1, epochs + 1):
        w1, b1, w2, b2 = params
        h = np.tanh(Z @ w1 + b1)
        p = 1 / (1 + np.exp(-(h @ w2 + b2[0])))
        g = (p - y) * wts / n
        gw2 = h.T @ g + l2 * w2
        gb2 = np.array([g.sum()])
        gh = np.outer(g, w2) * (1 - h ** 2)
        gw1 = Z.T @ gh + l2 * w1
        gb1 = gh.sum(0)
        for i, gr in enumerate((gw1, gb1, gw2, gb2)):
            m[i] = 0.9 * m[i] + 0.1 * gr
            v[i] = 0.999 * v[i] + 0.001 * gr ** 2
            params[i] = params[i] - lr * (m[i] / (1 - 0.9 ** t)) / (np.sqrt(v[i] / (1 - 0.999 ** t)) + 1e-8)
    w1, b1, w2, b2 = params
    return {"features": list(FEATURES), "mean": mean.tolist(), "std": std.tolist(),
            "w1": w1.tolist(), "b1": b1.tolist(), "w2": w2.tolist(), "b2": float(b2[0])}


def predict(params, X):
    Z = (X - np.array(params["mean"])) / np.array(params["std"])
    h = np.tanh(Z @ np.array(params["w1"]) + np.array(params["b1"]))
    return 1 / (1 + np.exp(-(h @ np.array(params["w2"]) + params["b2"])))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", type=int, default=2,
                    help="reseeded copies of each tuning scene (default 2)")
    ap.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "railcar_train"))
    ap.add_argument("--out", default=WEIGHTS)
    args = ap.parse_args(argv)
    os.makedirs(args.cache, exist_ok=True)
    specs = []
    for spec in synthetic.tuning_suite():
        specs.append(spec)
        for k in range(args.variants):
            specs.append(dataclasses.replace(spec, seed=spec.seed * 1000 + 17 + k,
                                             name=spec.name + "_v%d" % k))
    rows = []
    t0 = time.time()
    for spec in specs:
        X, y, n_true = labelled_candidates(spec, args.cache)
        rows.append((spec.name, X, y, n_true))
        print("%-28s candidates %4d  on cars %4d  true cars %4d" % (spec.name, len(y), int(sum(y)), n_true))
    print("scenes ready in %.0f s" % (time.time() - t0))
    # leave-scene-group-out check: train on 4/5 of the scenes, test on 1/5
    groups = np.arange(len(rows)) % 5
    accs = []
    for k in range(5):
        tr = [r for r, gk in zip(rows, groups) if gk != k]
        te = [r for r, gk in zip(rows, groups) if gk == k]
        Xtr = features_matrix([f for r in tr for f in r[1]])
        ytr = np.array([v for r in tr for v in r[2]])
        Xte = features_matrix([f for r in te for f in r[1]])
        yte = np.array([v for r in te for v in r[2]])
        if len(yte) == 0 or len(ytr) == 0:
            continue
        prm = train_mlp(Xtr, ytr)
        p = predict(prm, Xte) >= 0.5
        tp = int((p & (yte > 0)).sum())
        fp = int((p & (yte == 0)).sum())
        fn_c = int(((~p) & (yte > 0)).sum())
        accs.append((tp, fp, fn_c))
    tp, fp, fn_c = np.sum(accs, axis=0)
    print("cross-validated on candidates: precision %.3f recall %.3f (of candidates on cars)"
          % (tp / max(1, tp + fp), tp / max(1, tp + fn_c)))
    X = features_matrix([f for r in rows for f in r[1]])
    y = np.array([v for r in rows for v in r[2]])
    params = train_mlp(X, y)
    params["trained_on"] = "%d generated scenes, %d candidates (%d on cars)" % (
        len(rows), len(y), int(y.sum()))
    with open(args.out, "w") as fh:
        json.dump(params, fh, indent=0)
    print("wrote", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
