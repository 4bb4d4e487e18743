"""Plain records that cross module boundaries: what one audit run is made of.

No heavy imports here: the store, the reports and the CLI read these without loading torch.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from pathlib import Path

from govssl.evidence import CheckResult
from govssl.policy.model import Decision

__all__ = ["Artifact", "DatasetSummary", "TrainRecord", "Waiver", "Attestation", "AuditRun", "sha256_file"]


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class Artifact:
    """A file the run produced or read, by absolute path, with its sha256 and size in bytes."""

    kind: str  # model | model_card | rmf_report | evidence | predictions | chart | data
    path: str
    sha256: str
    size: int

    @classmethod
    def of(cls, kind: str, path: str | Path) -> "Artifact":
        p = Path(path).resolve()
        return cls(kind=kind, path=str(p), sha256=sha256_file(p), size=p.stat().st_size)


@dataclass(frozen=True)
class DatasetSummary:
    """What was audited: enough for the documents without reloading the data."""

    name: str
    source: str
    license: str
    citation: str
    target: str
    positive_label: str
    sensitive: tuple[str, ...]
    numeric_features: tuple[str, ...]
    categorical_features: tuple[str, ...]
    n_train: int
    n_test: int
    positive_rate_train: float
    positive_rate_test: float
    files: tuple[dict, ...] = ()  # [{path, sha256, size}]
    missing: dict = field(default_factory=dict)  # column -> count of missing values (train+test)
    task: str = "tabular-classification"  # or image-classification
    classes: tuple[str, ...] = ()  # class names in label order
    # the data manifest verified before training ({path, sha256, source, license, creator,
    # collection_notes, ...}), whatever checks the plan runs; {} when the plan names none
    manifest: dict = field(default_factory=dict)


@dataclass(frozen=True)
class TrainRecord:
    """What the trainer did, torch-free. ``dp`` is None when no phase was private."""

    method: str  # SSL objective of pretraining, e.g. "scarf"
    finetune_mode: str  # linear_probe | fine_tune
    label_fraction: float
    n_pretrain_rows: int
    n_labelled_rows: int
    pretrain_epochs: int
    finetune_epochs: int
    dp_scope: str  # none | head | finetune | pretrain+head | pretrain+finetune (see train/ docs)
    end_to_end_dp: bool
    dp: dict | None
    model_path: str
    model_sha256: str
    architecture: str
    n_parameters: int
    seed: int
    seconds: float
    history: dict = field(default_factory=dict)
    # what pretraining read: "private training rows", "public: <file>" or "none"
    pretrain_data: str = "private training rows"
    # the supervised-only comparison model (label efficiency): mode, epochs, epsilon, seconds
    baseline: dict | None = None
    # False when the audit ended at preflight: then no model file (model_path and model_sha256 "")
    trained: bool = True
    # where the category levels written into the model file came from: {"columns": {col:
    # "declared" | "training rows"}, "min_rows": k, "private": bool, "note": ...} (tables only)
    category_levels: dict = field(default_factory=dict)
    # torch's intra-op thread count during training (fixed, see train.TRAIN_THREADS); None in
    # records stored before the count was fixed
    torch_threads: int | None = None
    # the calibration of the released probabilities: {"method": "none"}, or {"method":
    # "temperature", "temperature", "rows" (held out from the classifier), "private", "epsilon_share"
    # (under DP) or "source", "ece_before", "ece_after" (test split)}; empty in records stored before
    calibration: dict = field(default_factory=dict)
    # the processes training ran on: {"world_size", "backend", "launcher", "sharding", ...}; world
    # size 1 is the audit's own process; empty in records stored before distributed training
    distributed: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Waiver:
    """An approved exception: turns a rule's blocking failure into an accepted one until it expires.

    Applies to one run (``run_id``) or to every audit of one model (``model_sha256``).
    """

    waiver_id: str
    rule_id: str
    approver: str
    reason: str
    expires: str  # ISO date; the waiver counts through the end of that day (UTC)
    created_at: str  # ISO 8601, UTC
    run_id: str | None = None
    model_sha256: str | None = None

    def active(self, at: datetime) -> bool:
        return at.date() <= date.fromisoformat(self.expires)


@dataclass(frozen=True)
class Attestation:
    """A person's statement for an item of a framework that no check can evidence: a NIST AI RMF
    subcategory ("GOVERN 1.1"), or an EU AI Act article or Annex IV point, stored with its
    framework as "eu-ai-act:Art. 14" (see govssl.formats.annex_iv)."""

    subcategory: str  # e.g. "GOVERN 1.1", "eu-ai-act:Annex IV(8)"
    by: str
    date: str  # ISO date
    statement: str


@dataclass
class AuditRun:
    """One audit: inputs (by hash), what the trainer did, the evidence, the decision, the files."""

    run_id: str
    created_at: str  # ISO 8601, UTC
    govssl_version: str
    plan_name: str
    plan_path: str
    plan_sha256: str
    plan: dict  # the validated plan, as plain data
    policy_name: str
    policy_version: int
    policy_path: str
    policy_sha256: str
    dataset: DatasetSummary
    training: TrainRecord
    results: list[CheckResult]
    decision: Decision
    out_dir: str
    artifacts: list[Artifact] = field(default_factory=list)
    attestations: list[Attestation] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def measurements(self):
        return [m for r in self.results for m in r.measurements]

    def to_dict(self) -> dict:
        """Machine-readable form (evidence.json, ``--json``)."""
        return {
            "run_id": self.run_id,
            "created_at": self.created_at,
            "govssl_version": self.govssl_version,
            "plan": {"name": self.plan_name, "path": self.plan_path, "sha256": self.plan_sha256},
            "policy": {
                "name": self.policy_name,
                "version": self.policy_version,
                "path": self.policy_path,
                "sha256": self.policy_sha256,
            },
            "dataset": asdict(self.dataset),
            "training": asdict(self.training),
            "checks": [r.to_dict() for r in self.results],
            "decision": self.decision.to_dict(),
            "artifacts": [asdict(a) for a in self.artifacts],
            "attestations": [asdict(a) for a in self.attestations],
            "seconds": round(self.seconds, 3),
        }
