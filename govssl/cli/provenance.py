"""Provenance commands: data manifests, signing keys, signed evidence."""

from __future__ import annotations

from pathlib import Path

import click

from govssl.cli._common import (
    _store_label, cli, db_option, out,
)


@cli.group()
def data() -> None:
    """Data manifests: record what data files are, and verify them later."""


@data.command("manifest")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path), default=Path("manifest.json"),
              show_default=True, help="Manifest file to write; file paths are recorded relative to its folder.")
@click.option("--source", default="", help="Where the data came from (URL or description).")
@click.option("--license", "licence", default="", help="Licence id of the data, e.g. CC-BY-4.0.")
@click.option("--creator", default="", help="Who created the data.")
@click.option("--notes", default="", help="Collection notes: how, when and from whom the data was collected.")
@click.option("--sign", "key_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Private key file (from `govssl keys generate`) to sign the manifest with.")
def data_manifest(files, out_path: Path, source: str, licence: str, creator: str, notes: str, key_path: Path | None) -> None:
    """Write a manifest of FILES: sha256, size, rows, typed columns and an order-independent content hash."""
    from govssl.provenance import build_manifest, load_signing_key, sign_manifest, write_manifest

    key = load_signing_key(key_path) if key_path else None
    manifest = build_manifest(list(files), base=out_path.resolve().parent, source=source, license=licence,
                              creator=creator, collection_notes=notes)
    if key is not None:
        manifest = sign_manifest(manifest, key)
    write_manifest(manifest, out_path)
    signed = f", signed by key {key.public.keyid[:16]}..." if key else ", unsigned"
    out.print(f"{out_path}: manifest of {len(files)} file(s){signed}")


@data.command("verify")
@click.argument("manifest", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--key", "key_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Public key the manifest must be signed by.")
def data_verify(manifest: Path, key_path: Path | None) -> None:
    """Check every file of MANIFEST and its signatures; exit 3 naming the file that differs."""
    from govssl.provenance import load_public_key, verify_manifest

    report = verify_manifest(manifest, load_public_key(key_path) if key_path else None)
    signers = ", ".join(k[:16] + "..." for k in report.signers) or "none (unsigned)"
    out.print(f"{manifest}: {len(report.files)} file(s) verified; valid signatures: {signers}")


@cli.group()
def keys() -> None:
    """Ed25519 key pairs for signing manifests and audit evidence."""


@keys.command("generate")
@click.option("--out", "prefix", required=True, type=click.Path(path_type=Path),
              help="Writes PREFIX.key (private, mode 0600) and PREFIX.pub.")
def keys_generate(prefix: Path) -> None:
    """Make an Ed25519 key pair; never overwrites an existing key."""
    from govssl.provenance import generate_keys, load_public_key

    private, public = generate_keys(prefix)
    out.print(f"private key {private} (keep it secret), public key {public}, key id {load_public_key(public).keyid}")


#: parameter of `govssl attest` -> its option
_ATTEST_OPTIONS = {"framework": "--framework", "run_id": "--run", "item": "--item", "by": "--by",
                   "statement": "--statement", "on": "--date", "db_url": "--db"}


@cli.group(invoke_without_command=True, no_args_is_help=True)
@click.option("--framework", type=click.Choice(["nist-ai-rmf", "eu-ai-act"]), default=None,
              help="The framework of the item: nist-ai-rmf or eu-ai-act.")
@click.option("--run", "run_id", default=None, help="The audit run the statement belongs to.")
@click.option("--item", default=None,
              help="nist-ai-rmf: a subcategory such as 'GOVERN 1.1'; eu-ai-act: an article 'Art. 9' to "
                   "'Art. 15' or a point of Annex IV 'Annex IV(1)' to 'Annex IV(9)'.")
@click.option("--by", "by", default=None, help="Who attests (name and role).")
@click.option("--statement", default=None, help="What is attested, in a sentence or two.")
@click.option("--date", "on", type=click.DateTime(formats=["%Y-%m-%d"]), default=None,
              help="Date of the statement (YYYY-MM-DD; default today, UTC).")
@db_option
@click.pass_context
def attest(ctx: click.Context, framework, run_id, item, by, statement, on, db_url) -> None:
    """Record a person's attestation for an item no check can evidence:
    `govssl attest --framework eu-ai-act --run RUN --item 'Art. 14' --by WHO --statement TEXT`
    (`govssl report RUN` then shows it). `govssl attest verify` checks signed in-toto evidence."""
    given = [option for name, option in _ATTEST_OPTIONS.items()
             if ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE]
    if ctx.invoked_subcommand is not None:
        if given:
            raise click.UsageError(f"{', '.join(given)} record an attestation and do not go with "
                                   f"`govssl attest {ctx.invoked_subcommand}`")
        return
    values = {"--framework": framework, "--run": run_id, "--item": item, "--by": by, "--statement": statement}
    missing = [name for name, value in values.items() if value is None]
    if missing:
        raise click.UsageError(f"missing option(s) {', '.join(missing)}: recording an attestation needs "
                               f"--framework, --run, --item, --by and --statement")
    from govssl.cli.release import record_attestation

    record_attestation(framework, run_id, item, by, statement, on, db_url)


@attest.command("verify")
@click.argument("envelope", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--key", "key_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Public key the envelope must be signed by.")
# explicit only (no GOVSSL_DB_URL): checking a store is asked for, not implied by the environment
@click.option("--db", "db_url", default=None, metavar="URL",
              help="Also check this audit store's chain against the statement's signed ledger anchor.")
def attest_verify(envelope: Path, key_path: Path, db_url: str | None) -> None:
    """Verify a run's DSSE envelope and the files beside it; exit 3 on any change. With --db, also
    check the store: its chain must verify and still hold the ledger head the signed statement
    recorded before its run was saved (exit 3 if that entry has another hash or is missing)."""
    from govssl.errors import ConfigError, IntegrityError
    from govssl.provenance import ATTESTATION_FILE, TEST_RESULT_TYPE, ledger_anchor, load_public_key, verify_envelope

    stmt = verify_envelope(envelope, load_public_key(key_path))
    pred = stmt.get("predicate", {})
    if stmt.get("predicateType") == TEST_RESULT_TYPE:
        if db_url is not None:
            raise ConfigError(f"{envelope}: a test-result statement records no ledger anchor; check the store "
                              f"against the {ATTESTATION_FILE} beside it")
        counts = ", ".join(f"{len(pred.get(f'{k}Tests') or [])} {k}" for k in ("passed", "warned", "failed"))
        out.print(f"{envelope}: signature valid; {len(stmt.get('subject', []))} subject(s); "
                  f"test result {pred.get('result')} ({counts} rule(s))", markup=False)
        return
    out.print(f"{envelope}: signature valid; {len(stmt.get('subject', []))} subject(s); "
              f"run {pred.get('run_id')} decision {pred.get('decision', {}).get('verdict')}", markup=False)
    if db_url is None:
        return
    from govssl.store import AuditStore

    anchor = ledger_anchor(stmt, envelope)
    report = AuditStore(db_url, create=False).verify(expected=[(anchor["seq"], anchor["hash"])])
    if not report.ok:
        raise IntegrityError(f"{envelope}: the store {_store_label(db_url)} does not hold the chain this "
                             f"statement anchors (entry {anchor['seq']}): {report.first_problem}")
    out.print(f"ledger anchor: entry {anchor['seq']} ({anchor['hash']}), recorded for {anchor['store']}, is in "
              f"the chain of {_store_label(db_url)}; {report.entries} ledger entries verified", markup=False)

