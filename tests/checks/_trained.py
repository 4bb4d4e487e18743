"""Small real models for the security and privacy checks: the govssl trainer on Adult rows."""

from __future__ import annotations

import functools
from pathlib import Path

from govssl.checks.base import CheckContext
from govssl.progress import NullProgress


def train_context(plan_path: Path, out_dir: Path) -> CheckContext:
    """Load, train and wrap one plan as the audit would (no checks run)."""
    from govssl import data, train
    from govssl.plan import load_plan

    plan = load_plan(plan_path)
    dataset = data.load(plan)
    trained = train.fit(plan, dataset, out_dir / "model", NullProgress())
    return CheckContext(dataset=dataset, train=trained, seed=plan.seed, out_dir=out_dir,
                        progress=NullProgress(), plan=plan)


@functools.lru_cache(maxsize=None)
def _cached(key: str, plan_path: str, out_dir: str) -> CheckContext:
    return train_context(Path(plan_path), Path(out_dir))


def cached_context(key: str, plan_path: Path, out_dir: Path) -> CheckContext:
    """One training per key for the whole test session (training dominates these tests)."""
    return _cached(key, str(plan_path), str(out_dir))
