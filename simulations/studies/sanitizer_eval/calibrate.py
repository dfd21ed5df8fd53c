"""Fit the gateway's residual-risk model on the development part (never on the test part).

    python -m simulations.studies.sanitizer_eval calibrate

For every development prompt: sanitize it, compute ``client.gateway.risk.features`` of the
sanitized text, and label it 1 when at least one of its direct identifiers leaked (the scorer's
leak rule). A logistic regression (L2, Newton's method; written out here in numpy because the
project has no scikit-learn and the model has a dozen weights) is fitted and written to
``client/gateway/assets/risk_model.json``, which the sanitizer reads.
"""

from __future__ import annotations

import datetime as dt

import numpy as np

from client.gateway.grammar import truecase
from client.gateway.normalize import normalize
from client.gateway.risk import FEATURES, MODEL_PATH, RiskModel, features
from client.gateway.sanitizer import DIRECT_TYPES, PromptSanitizer
from simulations.studies.sanitizer_eval.dataset import load
from simulations.studies.sanitizer_eval.scoring import DIRECT_GOLD, blank_identifiers, leaked

L2 = 1.0


def dev_rows(config_path: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    sanitizer = PromptSanitizer(config_path=config_path)
    xs, ys = [], []
    for p in load("dev"):
        try:
            result = sanitizer.sanitize(p.text)
        except Exception:  # refused outright: nothing to calibrate on
            continue
        norm = normalize(p.text).text
        x = features(result.sanitized, sum(1 for e in result.entities if e.type in DIRECT_TYPES), truecase(norm) != norm)
        blanked = blank_identifiers(p.text, p.spans)
        y = any(s.type in DIRECT_GOLD and leaked(s, blanked, result.sanitized) for s in p.spans)
        xs.append([x[k] for k in FEATURES])
        ys.append(1.0 if y else 0.0)
    return np.array(xs), np.array(ys)


def fit(x: np.ndarray, y: np.ndarray, l2: float = L2, steps: int = 50) -> tuple[np.ndarray, float]:
    """L2-regularized logistic regression by Newton's method (the bias is not penalized)."""
    design = np.hstack([np.ones((len(x), 1)), x])
    w = np.zeros(design.shape[1])
    penalty = np.full(design.shape[1], l2)
    penalty[0] = 0.0
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-design @ w))
        grad = design.T @ (p - y) + penalty * w
        hess = design.T @ (design * (p * (1 - p))[:, None]) + np.diag(penalty)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return w[1:], float(w[0])


def main(threshold: float = 0.2) -> int:
    x, y = dev_rows()
    weights, bias = fit(x, y)
    model = RiskModel({k: round(float(v), 4) for k, v in zip(FEATURES, weights)}, round(bias, 4))
    meta = {"fitted_on": "evaluation development part", "prompts": int(len(y)), "with_leak": int(y.sum()),
            "l2": L2, "command": "python -m simulations.studies.sanitizer_eval calibrate",
            "fitted_at": dt.date.today().isoformat()}
    MODEL_PATH.write_text(model.to_json(meta), encoding="utf-8")
    probs = np.array([model.probability(dict(zip(FEATURES, row))) for row in x])
    refused = probs > threshold
    for name, mask in (("sent", ~refused), ("refused", refused)):
        n = int(mask.sum())
        print(f"{name:8s} {n:5d} prompts, {int(y[mask].sum()):4d} holding a leak ({100 * y[mask].mean() if n else 0:.1f}%)")
    print(f"wrote {MODEL_PATH}: bias {model.bias}, weights {model.weights}")
    return 0
