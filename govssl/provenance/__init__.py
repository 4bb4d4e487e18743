"""Provenance: data manifests, Ed25519 keys and signed in-toto evidence of an audit."""

from govssl.provenance._intoto import (
    ATTESTATION_FILE,
    PAYLOAD_TYPE,
    PREDICATE_TYPE,
    STATEMENT_TYPE,
    TEST_RESULT_FILE,
    TEST_RESULT_TYPE,
    decision_statement,
    envelope,
    ledger_anchor,
    statement,
    verify_envelope,
    write_attestation,
    write_decision_attestation,
)
from govssl.provenance._keys import (
    SIGNING_KEY_ENV,
    PublicKey,
    SigningKey,
    canonical_json,
    generate_keys,
    load_public_key,
    load_signing_key,
    pae,
)
from govssl.provenance._manifest import (
    MANIFEST_TYPE,
    ManifestReport,
    build_manifest,
    content_hash,
    read_manifest,
    sign_manifest,
    verify_manifest,
    verify_plan_manifest,
    write_manifest,
)

__all__ = [
    "ATTESTATION_FILE", "PAYLOAD_TYPE", "PREDICATE_TYPE", "STATEMENT_TYPE", "MANIFEST_TYPE",
    "SIGNING_KEY_ENV", "PublicKey", "SigningKey", "ManifestReport",
    "envelope", "ledger_anchor", "statement", "verify_envelope", "write_attestation",
    "TEST_RESULT_FILE", "TEST_RESULT_TYPE", "decision_statement", "write_decision_attestation",
    "canonical_json", "generate_keys", "load_public_key", "load_signing_key", "pae",
    "build_manifest", "content_hash", "read_manifest", "sign_manifest", "verify_manifest", "verify_plan_manifest", "write_manifest",
]
