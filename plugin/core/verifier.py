"""Rate candidate cars: a small learned model over the measurements the
candidate finder makes (cars.FEATURES).

The weights are trained on generated scenes by tests/benchmarks/train_verifier.py
and shipped as JSON beside this file; inference is a few numpy lines, so
nothing needs installing. Without weights a transparent hand rule is used.
"""
import json
import os

import numpy as np

from .cars import FEATURES

WEIGHTS = os.path.join(os.path.dirname(__file__), "verifier_weights.json")


def features_matrix(feature_dicts):
    return np.array([[f[name] for name in FEATURES] for f in feature_dicts], np.float64)


class MLPVerifier:
    """One hidden layer (tanh) and a sigmoid output, inputs standardised."""

    def __init__(self, params):
        if tuple(params["features"]) != FEATURES:
            raise ValueError("verifier weights were trained for other features")
        self.mean = np.array(params["mean"])
        self.std = np.array(params["std"])
        self.w1 = np.array(params["w1"])
        self.b1 = np.array(params["b1"])
        self.w2 = np.array(params["w2"])
        self.b2 = float(params["b2"])

    def __call__(self, feature_dicts):
        X = (features_matrix(feature_dicts) - self.mean) / self.std
        h = np.tanh(X @ self.w1 + self.b1)
        z = h @ self.w2 + self.b2
        return 1.0 / (1.0 + np.exp(-np.clip(z, -30, 30)))


def hand_rule(feature_dicts):
    """Contrast against both sides, a plausible length, a clean body."""
    out = []
    for f in feature_dicts:
        z = (f["contrast"] - 0.06) / 0.03 + 2.0 * (f["coverage"] - 0.7) \
            - 4.0 * max(0.0, f["asymmetry"] - 0.05) / 0.05
        out.append(1.0 / (1.0 + np.exp(-z)))
    return np.array(out)


_cached = None


def default_verifier():
    global _cached
    if _cached is None:
        if os.path.exists(WEIGHTS):
            with open(WEIGHTS) as fh:
                _cached = MLPVerifier(json.load(fh))
        else:
            _cached = hand_rule
    return _cached
