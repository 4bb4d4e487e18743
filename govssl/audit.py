"""run_audit: one audit from plan to stored run (DESIGN.md, "The flow of one audit").

No printing, no exit, no SQL, no Jinja here: the same audit runs from Python and from the CLI.
"""

from __future__ import annotations

import secrets
import signal
import threading
from contextlib import contextmanager
from dataclasses import asdict, replace
import shutil
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path

from govssl import __version__
from govssl.errors import ConfigError
from govssl.plan import AuditPlan, load_attestations, load_plan
from govssl.policy import Policy, apply_waivers, decide, load_policy
from govssl.preflight import not_trained_record, run_preflight, stop_decision
from govssl.progress import NullProgress
from govssl.records import Artifact, AuditRun

__all__ = ["run_audit", "new_run_id", "Terminated", "stop_on_signals"]

# What ends an audit early besides Ctrl-C (SIGINT, which Python turns into KeyboardInterrupt):
# `kill`, a CI runner's timeout or cancel (SIGTERM), a closed terminal (SIGHUP).
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))


class Terminated(BaseException):
    """A stop signal arrived during an audit. A BaseException, like KeyboardInterrupt, so that no
    ``except Exception`` on the way (a check's error handling) takes it for a failure to report:
    it unwinds to :func:`run_audit`, which removes the run folder, and to the caller."""

    def __init__(self, signum: int, run_id: str | None = None):
        self.signum = signum
        self.name = signal.Signals(signum).name
        self.run_id = run_id  # set when the signal arrived while the run was being stored: it was kept
        super().__init__(f"stopped by {self.name}")

    @property
    def exit_code(self) -> int:
        """The shell's convention for a process ended by a signal: 128 + its number."""
        return 128 + self.signum


_held: list[int] | None = None  # signals that arrived while the store was saving the run
_received: list[int] = []  # signals whose exception was raised inside the current stop_on_signals block


def _on_signal(signum, frame):
    if _held is not None:
        _held.append(signum)
        return
    _received.append(signum)
    raise _stop_exception(signum)


def _stop_exception(signum: int, run_id: str | None = None) -> BaseException:
    return KeyboardInterrupt() if signum == signal.SIGINT else Terminated(signum, run_id)


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextmanager
def stop_on_signals(signals=STOP_SIGNALS):
    """For the block, SIGTERM and SIGHUP raise :class:`Terminated` (instead of ending the process
    without any cleanup), so that an audit stopped by either leaves nothing behind, as Ctrl-C
    does. Ctrl-C still raises KeyboardInterrupt, through the same handler if Python's own was in
    place, so that it too waits for a save in progress. The previous handlers come back
    afterwards. Outside the main thread (where Python cannot install handlers) the block runs
    unchanged."""
    if not _in_main_thread():
        yield
        return
    signals = list(signals)
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signals.append(signal.SIGINT)
    previous = {signum: signal.signal(signum, _on_signal) for signum in signals}
    _received.clear()
    try:
        yield
    except (Terminated, KeyboardInterrupt):
        raise
    except BaseException as exc:
        # The handler's exception can reach here wrapped in another: Python itself turns one raised
        # while a class body's descriptors are set up (`__set_name__`, during an import) into a
        # RuntimeError, and libraries wrap what their callbacks raise. The signal still decides.
        if _received:
            raise _stop_exception(_received[0]) from exc
        raise
    finally:
        _received.clear()
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextmanager
def _signals_held():
    """Hold the signals of :func:`stop_on_signals` while the store saves the run: one arriving
    during the commit could otherwise land just after the transaction committed, and the run
    folder of a stored run would be removed. Yields the list of the signals held, for the caller
    to raise once the run is complete."""
    global _held
    if not _in_main_thread():
        yield []
        return
    _held = held = []
    try:
        yield held
    finally:
        _held = None


def new_run_id(now: datetime | None = None) -> str:
    """Sortable and unique: UTC time to the second plus 6 random hex digits."""
    now = now or datetime.now(timezone.utc)
    return now.strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def _write_predictions(path: Path, data, proba, block: int = 200_000) -> Artifact:
    """predictions.csv: per test row, the label, the prediction, its score (and each class's
    probability for more than two classes) and the sensitive attributes. Written in blocks of rows
    by pandas, with the csv module's dialect (CRLF line ends, minimal quoting, floats as repr)."""
    import numpy as np
    import pandas as pd

    sensitive = data.sensitive_frame("test")
    multiclass = proba.shape[1] > 2  # then one probability column per class, named after it
    classes = [f"p_{c}" for c in data.classes] if multiclass else []
    y_test = np.asarray(data.y_test)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        for start in range(0, len(y_test), block) or [0]:
            stop = min(start + block, len(y_test))
            p = np.asarray(proba[start:stop], dtype=np.float64)
            pred = p.argmax(axis=1) if len(p) else np.zeros(0, np.int64)
            score = p[np.arange(len(p)), pred] if multiclass else p[:, 1] if len(p) else np.zeros(0)
            frame = pd.DataFrame({"row": np.arange(start, stop), "y_true": y_test[start:stop].astype(np.int64),
                                  "y_pred": pred.astype(np.int64), "score": score})
            for k, name in enumerate(classes):
                frame[name] = p[:, k]
            for c in data.sensitive:  # as the csv module writes them: None empty, floats by repr
                frame[c] = ["" if v is None else repr(v) if isinstance(v, float) else str(v)
                            for v in sensitive[c].iloc[start:stop].tolist()]
            frame.to_csv(fh, index=False, header=start == 0, lineterminator="\r\n")
    return Artifact.of("predictions", path)


def _write_profile(out_dir: Path, dataset, trained, seed: int) -> Artifact:
    """The reference profile of the run (govssl.monitor._profile), computed from the test split."""
    from govssl.monitor import PROFILE_KIND
    from govssl.monitor._profile import PROFILE_NAME, build_profile, write_profile

    meta, scores, reference = build_profile(dataset, trained.model, seed)
    return Artifact.of(PROFILE_KIND, write_profile(out_dir / PROFILE_NAME, meta, scores, reference))


def _signing_key(plan: AuditPlan):
    """The key that signs the run's evidence: the plan's ``provenance.signing_key``, else env
    GOVSSL_SIGNING_KEY, else None (the envelope is written unsigned)."""
    import os

    from govssl.provenance import SIGNING_KEY_ENV, load_signing_key

    if plan.provenance.signing_key is not None:
        return load_signing_key(plan.resolve(plan.provenance.signing_key))
    if os.environ.get(SIGNING_KEY_ENV):
        return load_signing_key(os.environ[SIGNING_KEY_ENV])
    return None


def run_audit(
    plan: AuditPlan | str | Path,
    policy: Policy | str | Path | None = None,
    *,
    db_url: str | None = None,
    out_root: str | Path | None = None,
    progress=None,
    store=None,
    nproc: int | None = None,
) -> AuditRun:
    """Load, train, measure, decide, document and store one audit; return the stored run.

    Raises a GovsslError subclass for bad input (nothing is trained or stored then). Plan, policy
    and data are validated first, then the store is opened, so that neither bad input nor an
    unusable database gets as far as training.

    ``nproc`` (default: the plan's ``training.distributed.nproc``) trains on that many processes
    under ``torch.distributed``; the checks run in this process afterwards.
    """
    started = time.perf_counter()
    progress = progress or NullProgress()
    # the plan and policy first, before the heavy imports below: a bad file is refused in well
    # under a second and without loading torch
    if not isinstance(plan, AuditPlan):
        plan = load_plan(plan)
    if policy is None:
        policy = load_policy(plan.policy_path())
    elif not isinstance(policy, Policy):
        policy = load_policy(policy)
    attestations = load_attestations(plan.resolve(plan.attestations)) if plan.attestations else []

    from govssl import data as data_module
    from govssl import provenance, reports, train
    from govssl.checks.base import CheckContext, create_check
    from govssl.store import AuditStore

    manifest = provenance.verify_plan_manifest(plan)  # exit 3 before anything is trained or stored
    signing_key = _signing_key(plan)
    reports.load_datasheet_answers(plan)  # a bad answers file is an input error, found before training
    dataset = data_module.load(plan, manifest)  # a file read in chunks is hashed once, as it is parsed
    public_X = data_module.load_public(plan, dataset)
    store = store or AuditStore(db_url)

    run_id = new_run_id()
    out_root = Path(out_root) if out_root is not None else Path(plan.output.dir)
    out_dir = (out_root / run_id).resolve()
    try:
        out_dir.mkdir(parents=True, exist_ok=False)
    except OSError as exc:
        raise ConfigError(f"{out_root}: cannot create the run folder: {exc}") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # library chatter (Opacus, sklearn) is not evidence
            results = [run_preflight(plan, dataset)]
            # a failing blocking `stage: preflight` rule ends the audit here: nothing is trained
            decision = stop_decision(policy, results[0])
            record, artifacts = not_trained_record(plan), []
        if decision is None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                trained = train.fit(plan, dataset, out_dir, progress, public_X=public_X,
                                    nproc=nproc or plan.training.distributed.nproc)
                record = trained.record
                artifacts = [Artifact.of("model", trained.record.model_path)]
                ctx = CheckContext(dataset=dataset, train=trained, seed=plan.seed, out_dir=out_dir,
                                   progress=progress, plan=plan, policy=policy, manifest=manifest)
                artifacts.append(_write_predictions(out_dir / "predictions.csv", dataset, ctx.test_proba()))
                with progress.task("running checks", len(plan.checks)) as task:
                    for name, params in plan.checks.items():
                        result = create_check(name, **params).run(ctx)
                        results.append(result)
                        task.advance(1, check=name)
                artifacts.extend(Artifact.of("chart", p) for p in sorted(out_dir.glob("*.svg")))  # charts the checks drew
                if not dataset.is_images:  # what `govssl monitor` compares batches with (test split only)
                    artifacts.append(_write_profile(out_dir, dataset, trained, plan.seed))
            decision = apply_waivers(  # a waiver for this model (same sha256) covers new audits of it
                decide(policy, results), store.waivers(model_sha256=trained.record.model_sha256),
                run_id=run_id, model_sha256=trained.record.model_sha256,
            )
        run = AuditRun(
            run_id=run_id,
            created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            govssl_version=__version__,
            plan_name=plan.name,
            plan_path=str(plan.source_path or ""),
            plan_sha256=plan.sha256,
            plan=plan.as_data(),
            policy_name=policy.name,
            policy_version=policy.version,
            policy_path=policy.path,
            policy_sha256=policy.sha256,
            dataset=replace(dataset.summary(), manifest=manifest.to_dict() if manifest is not None else {}),
            training=record,
            results=results,
            decision=decision,
            out_dir=str(out_dir),
            artifacts=artifacts,
            attestations=attestations,
        )
        run.seconds = time.perf_counter() - started
        run.artifacts.extend(reports.render(run, out_dir, attestations=[asdict(a) for a in attestations]))
        # the store's head before this run: signed with a key kept outside the database, it lets
        # `govssl attest verify --db` catch a rewrite of the chain up to that entry
        anchor = store.head().to_dict()
        # the decision in the standard in-toto test-result predicate, then govssl's own statement
        # (which lists the first among its subjects)
        run.artifacts.append(provenance.write_decision_attestation(run, signing_key))
        run.artifacts.append(provenance.write_attestation(run, signing_key, anchor=anchor))
        with _signals_held() as held:
            store.save(run)  # one transaction: an exception inside it rolls it back
    except BaseException:
        with _signals_held():  # a second signal does not cut the cleanup short
            shutil.rmtree(out_dir, ignore_errors=True)  # no half-written run on disk either
        raise
    if held:  # a signal arrived during the save: the run is complete and stays, then we stop
        raise _stop_exception(held[0], run_id)
    return run
