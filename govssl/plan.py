"""The audit plan: what to load, how to train, which checks to run, which policy decides.

A plan is YAML validated by :class:`AuditPlan` (extra keys forbidden). :func:`load_plan` collects
every problem of a plan (schema, unknown checks or check parameters, missing files) and raises one
:class:`~govssl.errors.ConfigError` listing them all.
"""

from __future__ import annotations

import hashlib
from datetime import date as date_type
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from govssl._yaml import pydantic_problems, read_yaml, read_yaml_mapping
from govssl.errors import ConfigError

__all__ = [
    "AuditPlan",
    "DatasetSpec",
    "TrainingSpec",
    "ModelCardSpec",
    "load_plan",
    "BUILTIN_DATASETS",
]

BUILTIN_DATASETS = ("adult", "digits")

MAX_SEED = 2**32 - 1  # numpy's legacy and pandas' RandomState seeds stop here; torch and default_rng go further
MAX_WIDTH = 65_536  # one hidden layer, or a projection (the model's total size is bounded once the data is known)
MAX_CHANNELS = 4_096
MAX_LAYERS = 32
MAX_EPSILON = 100.0


class _Strict(BaseModel):
    # infinity and NaN are no setting of anything in a plan (an infinite epsilon, learning rate, ...)
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class DatasetSpec(_Strict):
    """Either a built-in dataset or a file: CSV / Parquet (with an optional separate test file),
    NPZ images (arrays x, y) or a folder of PNG/JPEG images with one sub-folder per class."""

    builtin: Literal["adult", "digits"] | None = None
    path: Path | None = None
    test_path: Path | None = None
    test_fraction: float = Field(0.25, gt=0, lt=1)
    target: str | None = None
    positive_label: str | int | float | bool | None = None
    sensitive: list[str] | None = None
    drop: list[str] = []
    categorical: list[str] = []
    name: str | None = None
    source: str | None = None
    license: str | None = None
    citation: str | None = None
    manifest: Path | None = None  # data manifest verified before training (built-in data ships one)
    datasheet: Path | None = None  # YAML answers to datasheet questions the data cannot answer
    personal_data: list[str] = []  # columns declared to hold personal identifiers (the PII scan accepts them)
    # declared personal-data columns the model may still read; every other one is not a model input
    personal_data_as_input: list[str] = []
    sensitive_as_input: bool = True  # false: sensitive columns are audited but not model inputs
    levels: dict[str, list[str]] = {}  # declared category levels by column (private under DP)
    # read in chunks, encoded features in a cached memory-mapped file (docs/scale.md); auto: when
    # the table would take more than half the machine's memory in memory
    out_of_core: Literal["auto", "always", "never"] = "auto"

    @model_validator(mode="after")
    def _inputs_declared(self):
        undeclared = [c for c in self.personal_data_as_input if c not in self.personal_data]
        if undeclared:
            raise ValueError(f"personal_data_as_input: {', '.join(undeclared)} not declared under personal_data")
        return self

    @model_validator(mode="after")
    def _one_source(self):
        if (self.builtin is None) == (self.path is None):
            raise ValueError("give exactly one of 'builtin' (e.g. adult) or 'path' (a CSV or Parquet file)")
        # A table file has a suffix; an image folder usually has none. (The folder itself cannot be
        # looked at here: a relative path is relative to the plan file, unknown to this validator.)
        table_like = self.path is not None and self.path.suffix.lower() not in ("", ".npz")
        if table_like and not self.target and not self.is_images():
            raise ValueError("'target' is required with 'path': name the label column")
        if self.test_path is not None and self.path is None:
            raise ValueError("'test_path' needs 'path'")
        return self

    def is_images(self, plan: "AuditPlan | None" = None) -> bool:
        """Images: built-in digits, an .npz file, or a folder (a path without a table suffix)."""
        if self.builtin is not None:
            return self.builtin == "digits"
        if self.path is None:
            return False
        if self.path.suffix.lower() == ".npz":
            return True
        return (plan.resolve(self.path) if plan is not None else self.path).is_dir()


class EncoderSpec(_Strict):
    """An MLP for tables; for images a small CNN (``channels``, 3x3 convolutions, the second
    and later with stride 2) followed by the ``hidden_dims`` fully connected layers.

    Each width is bounded here; the model's total parameter count, which also depends on the
    data's width, is bounded once the data is loaded (``govssl.train.models.MAX_PARAMETERS``)."""

    hidden_dims: list[int] = Field(default_factory=lambda: [256, 256], min_length=1, max_length=MAX_LAYERS)
    dropout: float = Field(0.0, ge=0, lt=1)
    channels: list[int] = Field(default_factory=lambda: [32, 64], min_length=1, max_length=MAX_LAYERS)

    @field_validator("hidden_dims")
    @classmethod
    def _positive(cls, v):
        if any(d <= 0 or d > MAX_WIDTH for d in v):
            raise ValueError(f"every hidden dimension must be an integer from 1 to {MAX_WIDTH:,}")
        return v

    @field_validator("channels")
    @classmethod
    def _channels(cls, v):
        if any(c <= 0 or c > MAX_CHANNELS for c in v):
            raise ValueError(f"every channel count must be an integer from 1 to {MAX_CHANNELS:,}")
        return v


TABULAR_METHODS = ("scarf", "vime")
IMAGE_METHODS = ("simclr", "rotation")
CONTRASTIVE_METHODS = ("scarf", "simclr")

CONTRASTIVE_UNDER_DP = (
    "training.pretrain.method: '{method}' is contrastive and cannot run under DP on the private "
    "rows: a contrastive loss couples the examples of a batch (each row is a negative for the "
    "others), so clipping per-example gradients does not bound one person's influence on the "
    "update. Use a per-example objective ({alternatives}), or pretrain on a declared public "
    "dataset (training.pretrain.public_data), or set training.dp.enabled: false."
)


class PretrainSpec(_Strict):
    """Self-supervised pretraining of the encoder. Tables: scarf (contrastive) or vime (masked
    feature reconstruction); images: simclr (contrastive) or rotation (rotation prediction)."""

    method: Literal["scarf", "vime", "simclr", "rotation", "none"] = "scarf"
    epochs: int = Field(10, ge=0)
    batch_size: int = Field(256, ge=2)
    lr: float = Field(1e-3, gt=0)
    corruption_rate: float = Field(0.6, gt=0, lt=1)
    temperature: float = Field(1.0, gt=0)
    projection_dim: int = Field(128, ge=1, le=MAX_WIDTH)
    mask_rate: float = Field(0.3, gt=0, lt=1)  # vime
    alpha: float = Field(2.0, ge=0)  # vime: weight of feature reconstruction against mask estimation
    # Data of the same kind (CSV with the same columns, NPZ / image folder) that is public: pretraining
    # then reads no private rows and needs no DP.
    public_data: Path | None = None


class FinetuneSpec(_Strict):
    mode: Literal["linear_probe", "fine_tune"] = "fine_tune"
    label_fraction: float = Field(0.1, gt=0, le=1)
    epochs: int = Field(20, ge=1)
    batch_size: int = Field(256, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)


class DPSpec(_Strict):
    """DP-SGD settings. The noise is calibrated to ``target_epsilon`` unless ``noise_multiplier``
    is given, in which case epsilon is what the accountant reports for it.

    ``target_epsilon`` is at most 100 (``MAX_EPSILON``). Epsilon bounds by e^epsilon how much more
    likely any output becomes because one person's row was used; at 100 that factor is about
    10^43, which promises nothing, while deployed DP models use single digits to a few tens. A
    larger target would still tag the model card "differential privacy" without any guarantee
    behind it, so it is refused rather than reported. Every number here must be finite."""

    enabled: bool = False
    target_epsilon: float = Field(3.0, gt=0, le=MAX_EPSILON)
    noise_multiplier: float | None = Field(None, ge=0)
    delta: float = Field(1e-5, gt=0, lt=1)
    max_grad_norm: float = Field(1.0, gt=0)
    accountant: Literal["rdp", "prv", "gdp"] = "rdp"
    # When pretraining reads the private rows: the pretraining phase is calibrated to reach
    # pretrain_share * target_epsilon alone, then fine-tuning's noise is the smallest that keeps
    # the composed epsilon of both phases within target_epsilon.
    pretrain_share: float = Field(0.5, gt=0, lt=1)
    # When some categorical input's levels are not declared (dataset.levels): their private
    # selection reaches levels_share * target_epsilon alone, and the training phases the rest.
    levels_share: float = Field(0.1, gt=0, lt=1)


class CalibrationSpec(_Strict):
    """Calibration of the released model's probabilities by temperature scaling (Guo et al. 2017,
    "On Calibration of Modern Neural Networks"): one temperature divides the logits, fitted on
    ``holdout_fraction`` of the labelled rows, which the classifier is then not trained on.

    Under DP the temperature is fitted by DP-SGD on the held-out rows and its privacy cost is
    composed with the other phases in one accountant: the calibration phase alone reaches
    ``epsilon_share * target_epsilon``, and fine-tuning's noise keeps the composition within the
    target. ``none`` releases the classifier's own probabilities."""

    method: Literal["temperature", "none"] = "temperature"
    holdout_fraction: float = Field(0.2, gt=0, lt=1)
    epsilon_share: float = Field(0.1, gt=0, lt=1)


MAX_NPROC = 1_024


class DistributedSpec(_Strict):
    """Training on ``nproc`` processes of this machine under ``torch.distributed`` (gloo on CPU),
    started by torch's elastic launcher as ``torchrun`` starts them. 1 trains in the audit's own
    process. Each process trains on its shard of the rows; under DP the shards are Poisson-sampled
    at the one-process rate and Opacus adds the noise once, so epsilon is the one-process figure."""

    nproc: int = Field(1, ge=1, le=MAX_NPROC)


class TrainingSpec(_Strict):
    encoder: EncoderSpec = EncoderSpec()
    pretrain: PretrainSpec = PretrainSpec()
    finetune: FinetuneSpec = FinetuneSpec()
    dp: DPSpec = DPSpec()
    calibration: CalibrationSpec = CalibrationSpec()
    distributed: DistributedSpec = DistributedSpec()
    # Also train a supervised-only model (same architecture, labelled rows and budget, no
    # pretraining) as evidence for the label_efficiency check. Not released.
    baseline: bool = True

    @model_validator(mode="after")
    def _no_contrastive_under_dp(self):
        p = self.pretrain
        if self.dp.enabled and p.method in CONTRASTIVE_METHODS and p.epochs > 0 and p.public_data is None:
            alternatives = "vime, masked feature reconstruction" if p.method == "scarf" else "rotation prediction"
            raise ValueError(CONTRASTIVE_UNDER_DP.format(method=p.method, alternatives=alternatives))
        return self


class OwnerSpec(_Strict):
    name: str
    contact: str = ""


class ConsiderationSpec(_Strict):
    name: str
    mitigation: str = ""


class ModelCardSpec(_Strict):
    """Human statements for the model card; rendered as data, never as template code."""

    name: str | None = None
    version: str = "0.1.0"
    overview: str = ""
    owners: list[OwnerSpec] = []
    license: str | None = None  # the model's licence; unset means "not stated", never a default
    intended_use: str = ""
    intended_users: list[str] = []
    out_of_scope_uses: list[str] = []
    limitations: list[str] = []
    ethical_considerations: list[ConsiderationSpec] = []
    references: list[str] = []


class ProvenanceSpec(_Strict):
    """Keys: ``signing_key`` (a private key file, or env GOVSSL_SIGNING_KEY) signs the audit's
    evidence; ``trusted_keys`` (public key files) are signers whose data manifests are trusted."""

    signing_key: Path | None = None
    trusted_keys: list[Path] = []


class OutputSpec(_Strict):
    dir: Path = Path("govssl-out")


class AuditPlan(_Strict):
    name: str = Field(min_length=1)
    description: str = ""
    seed: int = Field(0, ge=0, le=MAX_SEED)
    dataset: DatasetSpec
    training: TrainingSpec = TrainingSpec()
    checks: dict[str, dict[str, Any]] = Field(
        default_factory=lambda: {"performance": {}, "fairness": {}}
    )
    policy: str = "default"
    attestations: Path | None = None  # YAML list of {subcategory, by, date, statement}
    model_card: ModelCardSpec = ModelCardSpec()
    output: OutputSpec = OutputSpec()
    provenance: ProvenanceSpec = ProvenanceSpec()

    # filled by load_plan, not by the user
    source_path: Path | None = Field(default=None, exclude=True)
    sha256: str = Field(default="", exclude=True)

    @field_validator("checks", mode="before")
    @classmethod
    def _null_params(cls, v):
        # `fairness:` with nothing after it means "defaults"
        if isinstance(v, dict):
            return {k: ({} if p is None else p) for k, p in v.items()}
        return v

    def resolve(self, p: Path | str) -> Path:
        """A path from the plan, relative to the plan file's folder. A path that cannot be resolved
        (a symlink loop) comes back absolute but unresolved; opening it then names the problem."""
        p = Path(p)
        if p.is_absolute() or self.source_path is None:
            return p
        try:
            return (self.source_path.parent / p).resolve()
        except (RuntimeError, OSError):  # RuntimeError: pathlib's "Symlink loop from ..."
            return self.source_path.parent / p

    def policy_path(self) -> Path:
        from govssl.policy import builtin_policy_path

        if self.policy.endswith((".yaml", ".yml")) or "/" in self.policy:
            return self.resolve(self.policy)
        return builtin_policy_path(self.policy)

    def as_data(self) -> dict:
        return self.model_dump(mode="json", exclude={"source_path", "sha256"})


def _check_problems(path: Path, checks: Any) -> list[str]:
    """Unknown checks, and every parameter a check's schema refuses (type, range, unknown key)."""
    from govssl.checks.base import CheckParamsError, registered_checks

    if not isinstance(checks, dict):
        return []  # the schema reports it
    problems = []
    known = registered_checks()
    for name, params in checks.items():
        if name not in known:
            problems.append(
                f"{path}: checks.{name}: unknown check; available: {', '.join(sorted(known))}"
            )
            continue
        if params is not None and not isinstance(params, dict):
            continue  # the schema reports it
        try:
            known[name].validate_params(params)
        except CheckParamsError as exc:
            problems += [f"{path}: checks.{name}{'.' + key if key else ''}: {msg}" for key, msg in exc.problems]
    return problems


def _file_problems(path: Path, plan: AuditPlan) -> list[str]:
    problems = []
    ds = plan.dataset
    for key in ("path", "test_path"):
        value = getattr(ds, key)
        if value is not None and not plan.resolve(value).exists():
            try:
                plan.resolve(value).lstat()
                why = "cannot open (a symbolic link to nothing, or a loop of links)"
            except OSError:
                why = "file not found"
            problems.append(f"{path}: dataset.{key}: {why}: {plan.resolve(value)}")
    for key in ("manifest", "datasheet"):
        value = getattr(ds, key, None)
        if value is not None and not plan.resolve(value).is_file():
            problems.append(f"{path}: dataset.{key}: file not found: {plan.resolve(value)}")
    keys = getattr(plan, "provenance", None)
    for key, value in ([("signing_key", keys.signing_key)] if keys and keys.signing_key else []) + [
        (f"trusted_keys[{i}]", k) for i, k in enumerate(keys.trusted_keys if keys else [])
    ]:
        if not plan.resolve(value).is_file():
            problems.append(f"{path}: provenance.{key}: file not found: {plan.resolve(value)}")
        elif key.startswith("trusted_keys"):
            from govssl.provenance import load_public_key

            try:  # a key that does not load must stop the plan, not disable the provenance check later
                load_public_key(plan.resolve(value))
            except ConfigError as exc:
                problems.append(f"{path}: provenance.{key}: {exc}")
    if not isinstance(plan.policy, str):
        return problems  # the schema reports it
    if plan.attestations is not None:
        try:
            load_attestations(plan.resolve(plan.attestations))
        except ConfigError as exc:
            problems += [str(exc).splitlines()[0]] + exc.problems
    try:
        pol = plan.policy_path()
        if not pol.is_file():
            problems.append(f"{path}: policy: file not found: {pol}")
    except KeyError as exc:
        problems.append(f"{path}: policy: {exc.args[0]}")
    return problems


def _method_problems(path: Path, plan: AuditPlan) -> list[str]:
    method = plan.training.pretrain.method
    if method == "none" or plan.training.pretrain.epochs == 0:
        return []
    images = plan.dataset.is_images(plan)
    allowed = IMAGE_METHODS if images else TABULAR_METHODS
    if method not in allowed:
        kind = "image" if images else "tabular"
        return [f"{path}: training.pretrain.method: '{method}' does not apply to {kind} data; use one of "
                f"{', '.join(allowed)} (or none)"]
    return []


def _problems_beyond_schema(path: Path, data: dict) -> list[str]:
    """Checks and files of a plan whose schema failed, so that one run lists every problem."""
    dataset = data.get("dataset") if isinstance(data.get("dataset"), dict) else {}
    files = {k: dataset.get(k) for k in ("path", "test_path") if isinstance(dataset.get(k), str)}
    stub = AuditPlan.model_construct(
        dataset=DatasetSpec.model_construct(**files), policy=data.get("policy", "default"),
        source_path=path.resolve(),
    )
    return _check_problems(path, data.get("checks")) + _file_problems(path, stub)


class _AttestationSpec(_Strict):
    framework: Literal["nist-ai-rmf", "eu-ai-act"] = "nist-ai-rmf"
    subcategory: str | None = None  # nist-ai-rmf (the original key)
    item: str | None = None  # either framework: a subcategory, or an EU AI Act article / Annex IV point
    by: str = Field(min_length=1)
    date: date_type
    statement: str = Field(min_length=1)


def load_attestations(path: Path) -> list:
    """An attestations file: a YAML list of {subcategory, by, date, statement} records (NIST AI
    RMF), or {framework: eu-ai-act, item, by, date, statement} (an EU AI Act article "Art. 14" or
    Annex IV point "Annex IV(8)")."""
    from govssl.formats.annex_iv import UNKNOWN_ITEM, is_item, stored_item
    from govssl.records import Attestation
    from govssl.rmf import is_subcategory

    if not path.is_file():
        raise ConfigError(f"{path}: attestations file not found")
    data = read_yaml(path, ConfigError, "attestations")
    if not isinstance(data, list):
        raise ConfigError(f"{path}: an attestations file is a YAML list of {{subcategory, by, date, statement}}")
    problems, out = [], []
    for i, item in enumerate(data):
        try:
            spec = _AttestationSpec.model_validate(item)
        except ValidationError as exc:
            problems += [p.replace(f"{path}: ", f"{path}: [{i}].", 1) for p in pydantic_problems(path, exc)]
            continue
        if (spec.subcategory is None) == (spec.item is None):
            problems.append(f"{path}: [{i}]: give exactly one of subcategory or item")
            continue
        if spec.subcategory is not None and spec.framework != "nist-ai-rmf":
            problems.append(f"{path}: [{i}].subcategory: a subcategory is a NIST AI RMF id; "
                            f"use item for framework {spec.framework}")
            continue
        key, value = ("subcategory", spec.subcategory) if spec.subcategory is not None else ("item", spec.item)
        if spec.framework == "nist-ai-rmf" and not is_subcategory(value):
            problems.append(f"{path}: [{i}].{key}: '{value}' is not a NIST AI RMF 1.0 subcategory")
            continue
        if spec.framework == "eu-ai-act" and not is_item(value):
            problems.append(f"{path}: [{i}].{key}: " + UNKNOWN_ITEM.format(id=value))
            continue
        out.append(Attestation(stored_item(spec.framework, value), spec.by, spec.date.isoformat(), spec.statement))
    if problems:
        raise ConfigError(f"{path}: {len(problems)} problem(s) in the attestations", problems)
    return out


def load_plan(path: str | Path) -> AuditPlan:
    """Read and validate a plan. Raises ConfigError listing every problem found."""
    path = Path(path)
    data = read_yaml_mapping(path, ConfigError, "plan")
    try:
        plan = AuditPlan.model_validate(data)
    except ValidationError as exc:
        problems = pydantic_problems(path, exc) + _problems_beyond_schema(path, data)
        raise ConfigError(f"{path}: the plan has {len(problems)} problem(s)", problems) from None
    plan = plan.model_copy(
        update={
            "source_path": path.resolve(),
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        }
    )
    problems = _check_problems(path, plan.checks) + _file_problems(path, plan) + _method_problems(path, plan)
    public = plan.training.pretrain.public_data
    if public is not None and not plan.resolve(public).exists():
        problems.append(f"{path}: training.pretrain.public_data: file not found: {plan.resolve(public)}")
    if problems:
        raise ConfigError(f"{path}: the plan has {len(problems)} problem(s)", problems)
    return plan
