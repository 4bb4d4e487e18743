"""The provenance check on a verified manifest: signature, trusted signer, licence, source."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from govssl.checks.base import CheckContext
from govssl.checks.provenance import ProvenanceCheck, normalise_license
from govssl.policy.model import Policy
from govssl.provenance import ManifestReport, generate_keys, load_public_key


def report(signers=(), licence="CC BY 4.0", source="a census extract") -> ManifestReport:
    return ManifestReport(path="m.json", sha256="ab" * 32, files=({"path": "a.csv", "sha256": "cd" * 32, "size": 3},),
                          signers=tuple(signers), source=source, license=licence, creator="", collection_notes="",
                          created="2025-01-01")


def measure(manifest, trusted_in_plan=(), trusted_in_policy=(), allowed=("CC-BY-4.0",)):
    plan = SimpleNamespace(provenance=SimpleNamespace(trusted_keys=list(trusted_in_plan)), resolve=lambda p: p)
    policy = Policy(name="p", version=1, rules=(), trusted_keys=tuple(str(k) for k in trusted_in_policy),
                    allowed_licenses=tuple(allowed))
    dataset = SimpleNamespace(source="not declared", license="not declared")
    ctx = CheckContext(dataset=dataset, train=None, seed=0, out_dir=None, plan=plan, policy=policy, manifest=manifest)
    result = ProvenanceCheck().run(ctx)
    assert result.status == "measured", result.reason
    return {m.metric: m.value for m in result.measurements}


@pytest.fixture
def keys(tmp_path):
    return [load_public_key(generate_keys(tmp_path / name)[1]) for name in ("a", "b")]


def test_provenance__signer_trusted_from_plan_or_policy(keys, tmp_path):
    a, b = keys
    assert measure(report([a.keyid]), trusted_in_plan=[tmp_path / "a.pub"])["signer_trusted"] is True
    assert measure(report([a.keyid]), trusted_in_policy=[tmp_path / "a.pub"])["signer_trusted"] is True
    got = measure(report([a.keyid]), trusted_in_plan=[tmp_path / "b.pub"])
    assert got["signature_valid"] is True and got["signer_trusted"] is False


def test_provenance__without_a_manifest_nothing_is_vouched_for():
    assert measure(None) == {"manifest_verified": False, "signature_valid": False, "signer_trusted": False,
                             "license_allowed": False, "source_declared": False}


def test_provenance__licence_ids_compare_case_and_separator_blind():
    assert normalise_license("cc by_4.0") == normalise_license("CC-BY-4.0")
    assert measure(report(licence="cc-by-4.0"))["license_allowed"] is True
    assert measure(report(licence="CC-BY-NC-4.0"))["license_allowed"] is False
    assert measure(report(licence="CC-BY-4.0"), allowed=())["license_allowed"] is False


def test_load_policy__trusted_keys_that_do_not_load_are_named(tmp_path):
    from govssl.errors import PolicyError
    from govssl.policy import load_policy

    (tmp_path / "bad.pub").write_text("not a key")
    path = tmp_path / "p.yaml"
    path.write_text("policy: p\nversion: 1\ntrusted_keys: [bad.pub, absent.pub]\nallowed_licenses: [MIT]\n"
                    "rules:\n  - {id: r, check: provenance, metric: license_allowed, equals: true}\n")
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    assert "p.yaml: trusted_keys[0]" in str(info.value) and "bad.pub" in str(info.value)
    assert "p.yaml: trusted_keys[1]" in str(info.value) and "absent.pub" in str(info.value)
