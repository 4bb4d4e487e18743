"""Release decisions on stored runs: gate, waive, attest-rmf (and the recording behind `govssl attest`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from govssl.cli.policy import resolve_policy
from govssl.cli._common import (
    EXIT_BLOCKED, EXIT_OK, _effective, cli, db_option, json_option, out,
)


@cli.command()
@click.option("--run", "run_id", required=True, help="The audit run (id or unique prefix).")
@click.option("--rule", "rule_id", required=True, help="The rule whose blocking failure is accepted.")
@click.option("--approver", required=True, help="Who approves the exception (name or role).")
@click.option("--reason", required=True, help="Why the failure is acceptable; shown in every document.")
@click.option("--expires", required=True, type=click.DateTime(formats=["%Y-%m-%d"]),
              help="Last day the waiver counts (YYYY-MM-DD, UTC).")
@click.option("--for-model", "for_model", is_flag=True,
              help="Waive the rule for every audit of this run's model (same sha256), not just this run.")
@db_option
def waive(run_id: str, rule_id: str, approver: str, reason: str, expires, for_model: bool, db_url: str | None) -> None:
    """Accept a rule's blocking failure until a date, with an approver and a reason."""
    import secrets as _secrets
    from datetime import datetime as _dt, timezone as _tz

    from govssl.errors import ConfigError
    from govssl.policy import unwaived
    from govssl.records import Waiver
    from govssl.store import AuditStore

    store = AuditStore(db_url, create=False)
    (run,), waivers = store.read_runs([run_id])
    if not run.training.trained:
        raise ConfigError(f"--run: run {run.run_id} ended at preflight and trained no model; there is nothing to "
                          f"release: fix the data or the plan and audit again")
    outcome = next((o for o in run.decision.outcomes if o.rule_id == rule_id), None)
    if outcome is None:
        rules = ", ".join(o.rule_id for o in run.decision.outcomes)
        raise ConfigError(f"--rule: run {run.run_id} has no rule '{rule_id}'; its rules: {rules}")
    if not unwaived(outcome).blocking:
        raise ConfigError(f"--rule: rule '{rule_id}' did not block run {run.run_id} (status {unwaived(outcome).status}, "
                          f"severity {outcome.severity}); only blocking failures can be waived")
    today = _dt.now(_tz.utc).date()
    if expires.date() < today:
        raise ConfigError(f"--expires: {expires.date()} is in the past (today is {today} UTC)")
    for name, value in (("--approver", approver), ("--reason", reason)):
        if not value.strip():
            raise ConfigError(f"{name}: must not be empty")
    waiver = Waiver(
        waiver_id=_secrets.token_hex(8), rule_id=rule_id, approver=approver.strip(), reason=reason.strip(),
        expires=expires.date().isoformat(), created_at=_dt.now(_tz.utc).isoformat(timespec="seconds"),
        run_id=None if for_model else run.run_id,
        model_sha256=run.training.model_sha256 if for_model else None,
    )
    store.add_waiver(waiver)
    run = _effective(run, [*waivers, waiver])
    scope = f"model {run.training.model_sha256[:16]}…" if for_model else f"run {run.run_id}"
    out.print(f"waiver {waiver.waiver_id}: rule {rule_id} waived for {scope} until {waiver.expires} "
              f"(approver {waiver.approver})", markup=False)
    out.print(f"decision of run {run.run_id} now: {run.decision.verdict.upper()}", markup=False)



@cli.command()
@click.option("--model", "model_file", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The model file about to be released.")
@click.option("--policy", "policy_path", metavar="FILE_OR_NAME", default=None,
              help="The policy it must have passed: a file, or a built-in pack's name as in plans "
                   "(default: the built-in default pack).")
@click.option("--max-age", type=click.IntRange(min=0), default=None, metavar="DAYS",
              help="Only audits at most this many days old count.")
@click.option("--max-drift-age", type=click.IntRange(min=0), default=None, metavar="DAYS",
              help="Also require monitoring: the newest `govssl monitor` result of this model under the "
                   "monitoring pack must be at most DAYS days old and pass.")
@click.option("--monitoring-policy", "monitoring_path", metavar="FILE_OR_NAME", default=None,
              help="The monitoring pack --max-drift-age requires (default: the built-in 'monitoring').")
@db_option
@json_option
def gate(model_file: Path, policy_path: str | None, max_age: int | None, max_drift_age: int | None,
         monitoring_path: str | None, db_url: str | None, as_json: bool) -> None:
    """Exit 0 only if the store holds a passing (or fully waived) audit of exactly this model
    file under exactly this policy file; otherwise exit 1 with the reason. For CI release jobs.
    With --max-drift-age, the model's newest monitoring result under the monitoring pack must
    also be recent and clean."""
    from datetime import datetime as _dt, timedelta, timezone as _tz

    from govssl.errors import DataError
    from govssl.policy import builtin_policy_path, load_policy
    from govssl.records import sha256_file
    from govssl.store import AuditStore

    if not model_file.is_file():
        raise DataError(f"{model_file}: model file not found")
    pol = load_policy(resolve_policy(policy_path, "--policy") if policy_path else builtin_policy_path("default"))
    if monitoring_path is not None and max_drift_age is None:
        from govssl.errors import ConfigError

        raise ConfigError("--monitoring-policy: only applies with --max-drift-age DAYS")
    mon_pol = None
    if max_drift_age is not None:
        mon_pol = load_policy(resolve_policy(monitoring_path, "--monitoring-policy") if monitoring_path
                              else builtin_policy_path("monitoring"))
    model_sha = sha256_file(model_file)
    # every run of this model and every waiver, verified against the ledger in one snapshot;
    # the decision is made from their rule outcomes and waivers, never from a stored verdict
    model_runs, waivers = AuditStore(db_url, read_only=True).runs_of_model(model_sha)
    since = _dt.now(_tz.utc) - timedelta(days=max_age) if max_age is not None else None
    under_policy = [r for r in model_runs if r.policy_sha256 == pol.sha256]
    candidates = [r for r in under_policy if since is None or _created(r) >= since]
    verdict = {"model": str(model_file), "model_sha256": model_sha, "policy": pol.name,
               "policy_sha256": pol.sha256, "max_age_days": max_age, "passed": False, "run_id": None}
    reason = ""
    if not candidates:
        if under_policy:
            reason = f"the newest audit of this model under this policy ({under_policy[0].run_id}) is older than {max_age} day(s)"
        elif model_runs:
            reason = (f"this model was audited ({model_runs[0].run_id}) but never under policy "
                      f"'{pol.name}' with sha256 {pol.sha256[:16]}…")
        else:
            reason = f"no audit of a model with sha256 {model_sha[:16]}… in the store"
    for run in candidates:  # newest first: the newest passing audit releases the model
        run = _effective(run, waivers)
        if run.decision.passed and run.training.trained:  # a run that trained nothing releases nothing
            waived = [o.rule_id for o in run.decision.outcomes if o.status == "waived"]
            verdict.update(passed=True, run_id=run.run_id, waived_rules=waived)
            break
        if not reason:
            blockers = ", ".join(o.rule_id for o in run.decision.blockers)
            reason = f"the newest audit ({run.run_id}) is blocked by: {blockers}"
    if mon_pol is not None:
        verdict["monitoring"] = _drift_gate(model_sha, mon_pol, max_drift_age, db_url)
        if verdict["passed"] and not verdict["monitoring"]["passed"]:
            verdict["passed"], reason = False, verdict["monitoring"]["reason"]
    verdict["reason"] = "" if verdict["passed"] else reason
    if as_json:
        click.echo(json.dumps(verdict, indent=2))
    elif verdict["passed"]:
        extra = f" with waived rule(s) {', '.join(verdict['waived_rules'])}" if verdict["waived_rules"] else ""
        out.print(f"gate: PASS  {model_file} (sha256 {model_sha[:16]}…) passed policy {pol.name} in run "
                  f"{verdict['run_id']}{extra}", markup=False)
        if mon_pol is not None:
            m = verdict["monitoring"]
            out.print(f"  and monitoring pack {mon_pol.name} in {m['monitor_id']} ({m['created_at']})", markup=False)
    else:
        out.print(f"gate: BLOCKED  {model_file} (sha256 {model_sha[:16]}…): {reason}", markup=False)
    sys.exit(EXIT_OK if verdict["passed"] else EXIT_BLOCKED)



def _drift_gate(model_sha: str, pol, max_days: int, db_url: str | None) -> dict:
    """Whether the model's newest monitoring result under ``pol`` is at most ``max_days`` old and
    passed, decided from its verified rule outcomes (never from a stored verdict)."""
    from datetime import datetime as _dt, timedelta, timezone as _tz

    from govssl.store import AuditStore

    results = AuditStore(db_url, read_only=True).monitoring(model_sha256=model_sha)
    under = [r for r in results if r.policy_sha256 == pol.sha256]
    found = {"policy": pol.name, "policy_sha256": pol.sha256, "max_drift_age_days": max_days, "passed": False,
             "monitor_id": None, "run_id": None, "created_at": None, "reason": ""}
    if not under:
        other = f" ({len(results)} under other packs)" if results else ""
        found["reason"] = (f"no monitoring result of this model under monitoring pack '{pol.name}' "
                           f"(sha256 {pol.sha256[:16]}…){other}: run `govssl monitor`")
        return found
    newest = under[-1]
    found.update(monitor_id=newest.monitor_id, run_id=newest.run_id, created_at=newest.created_at)
    if _created(newest) < _dt.now(_tz.utc) - timedelta(days=max_days):
        found["reason"] = f"the newest monitoring result ({newest.monitor_id}, {newest.created_at}) is older than {max_days} day(s)"
    elif not newest.decision.passed:
        blockers = ", ".join(o.rule_id for o in newest.decision.blockers)
        found["reason"] = f"the newest monitoring result ({newest.monitor_id}, batch {newest.batch_path}) is blocked by: {blockers}"
    else:
        found["passed"] = True
    return found


def _created(run):
    """When the run was made, as an aware UTC datetime."""
    from datetime import datetime as _dt, timezone as _tz

    created = _dt.fromisoformat(run.created_at)
    return created.replace(tzinfo=_tz.utc) if created.tzinfo is None else created


def record_attestation(framework: str, run_id: str, item: str, by: str, statement: str, on, db_url: str | None,
                       item_option: str = "--item") -> None:
    """Store a person's attestation for an item of ``framework`` on a stored run: a NIST AI RMF
    subcategory as it is, an EU AI Act article or Annex IV point as ``eu-ai-act:<item>`` (see
    govssl.formats.annex_iv). Bad input is refused before the store is opened for writing."""
    from datetime import datetime as _dt, timezone as _tz

    from govssl.errors import ConfigError
    from govssl.formats.annex_iv import FRAMEWORKS, UNKNOWN_ITEM, is_item, stored_item
    from govssl.records import Attestation
    from govssl.rmf import is_subcategory
    from govssl.store import AuditStore

    item = item.strip()
    if framework not in FRAMEWORKS:
        raise ConfigError(f"--framework: '{framework}' is not a framework; choose from {', '.join(FRAMEWORKS)}")
    if framework == "nist-ai-rmf" and not is_subcategory(item):
        raise ConfigError(f"{item_option}: '{item}' is not a NIST AI RMF 1.0 subcategory (e.g. 'GOVERN 1.1')")
    if framework == "eu-ai-act" and not is_item(item):
        raise ConfigError(f"{item_option}: " + UNKNOWN_ITEM.format(id=item))
    for name, value in (("--by", by), ("--statement", statement)):
        if not value.strip():
            raise ConfigError(f"{name}: must not be empty")
    store = AuditStore(db_url, create=False)
    (run,), _ = store.read_runs([run_id])
    day = (on.date() if on else _dt.now(_tz.utc).date()).isoformat()
    store.add_attestations(run.run_id, [Attestation(stored_item(framework, item), by.strip(), day, statement.strip())])
    out.print(f"attested {framework} {item} for run {run.run_id} by {by.strip()} on {day}; "
              f"`govssl report {run.run_id}` re-renders the documents", markup=False)


@cli.command("attest-rmf")
@click.option("--run", "run_id", required=True, help="The audit run the statement belongs to.")
@click.option("--subcategory", required=True, help="NIST AI RMF subcategory, e.g. 'GOVERN 1.1'.")
@click.option("--by", "by", required=True, help="Who attests (name and role).")
@click.option("--statement", required=True, help="What is attested, in a sentence or two.")
@click.option("--date", "on", type=click.DateTime(formats=["%Y-%m-%d"]), default=None,
              help="Date of the statement (YYYY-MM-DD; default today, UTC).")
@db_option
def attest_rmf(run_id: str, subcategory: str, by: str, statement: str, on, db_url: str | None) -> None:
    """Record a person's attestation for a NIST AI RMF subcategory no check can evidence (the
    same as `govssl attest --framework nist-ai-rmf --item SUBCATEGORY`)."""
    record_attestation("nist-ai-rmf", run_id, subcategory, by, statement, on, db_url, item_option="--subcategory")
