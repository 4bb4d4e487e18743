"""ART's PGD against a plain PyTorch PGD on the same model, inputs and seed.

Prints the robust accuracy of both and the time ratio (ART / plain torch), measured in one run.
Run from the repository root:  python benchmarks/bench_attacks.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from govssl.checks._art import art_classifier
from govssl.checks.robustness import attack_inputs

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root: the tests' reference
from tests._reference import torch_pgd  # noqa: E402  the same plain PGD the tests compare ART with

SEED, EPS, STEPS, REL_STEP, RESTARTS, ROWS, REPEATS = 0, 0.25, 20, 0.125, 1, 4000, 3


def main() -> None:
    from govssl.data._builtin import load_builtin
    from govssl.data import TableEncoder

    _, train, test, _ = load_builtin("adult")
    numeric = ["age", "education-num", "capital-gain", "capital-loss", "hours-per-week"]
    categorical = ["workclass", "education", "marital-status", "occupation", "relationship", "race", "sex"]
    encoder = TableEncoder(numeric, categorical).fit(train)
    X, y = encoder.transform(train), (train["income"] == ">50K").to_numpy(dtype=np.int64)
    torch.manual_seed(SEED)
    model = nn.Sequential(nn.Linear(X.shape[1], 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 2))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    Xt, yt = torch.as_tensor(X), torch.as_tensor(y)
    for _ in range(3):
        for idx in torch.randperm(len(X)).split(256):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(Xt[idx]), yt[idx]).backward()
            optimizer.step()
    model.eval()
    X_test = encoder.transform(test)[:ROWS]
    y_test = (test["income"] == ">50K").to_numpy(dtype=np.int64)[:ROWS]
    low, high, mask = np.zeros(X.shape[1], np.float32), np.ones(X.shape[1], np.float32), np.zeros(X.shape[1], np.float32)
    for name, (lo, hi) in encoder.numeric_ranges().items():
        block = dict(encoder.groups)[name]
        low[block], high[block], mask[block] = lo, hi, 1.0
    classifier = art_classifier(model, X_test.shape[1:], 2, (low, high))

    def accuracy(x):
        with torch.no_grad():
            return float((model(torch.as_tensor(x)).argmax(1).numpy() == y_test).mean())

    art_times, torch_times = [], []
    for _ in range(REPEATS):  # interleaved, so both see the same machine load
        started = time.perf_counter()
        x_art = attack_inputs(classifier, X_test, y_test, "pgd", EPS, mask=mask, steps=STEPS, rel_step_size=REL_STEP,
                              random_restarts=RESTARTS, batch_size=len(X_test), seed=SEED)
        art_times.append(time.perf_counter() - started)
        started = time.perf_counter()
        x_ref = torch_pgd(model, X_test, y_test, EPS, REL_STEP * EPS, STEPS, RESTARTS, mask, low, high, SEED)
        torch_times.append(time.perf_counter() - started)
    print(f"rows {ROWS}, eps {EPS}, steps {STEPS}, step {REL_STEP * EPS:g}, restarts {RESTARTS}, seed {SEED}")
    print(f"clean accuracy        {accuracy(X_test):.4f}")
    print(f"robust accuracy ART   {accuracy(x_art):.4f}")
    print(f"robust accuracy torch {accuracy(x_ref):.4f}")
    print(f"time ART   {min(art_times):.3f} s (best of {REPEATS})")
    print(f"time torch {min(torch_times):.3f} s (best of {REPEATS})")
    print(f"time ratio ART / torch {min(art_times) / min(torch_times):.2f}")


if __name__ == "__main__":
    main()
