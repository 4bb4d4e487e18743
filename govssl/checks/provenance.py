"""The ``provenance`` check: was the data's manifest verified, who signed it, is its licence allowed,
is its source declared. Evidence for NIST AI RMF GOVERN 6.1 and MAP 4.1 (third-party data).
"""

from __future__ import annotations

import re

from govssl.checks.base import Check, CheckContext, Measurement, register_check

__all__ = ["ProvenanceCheck", "normalise_license"]

_UNDECLARED = {"", "not declared", "unknown", "none"}


def normalise_license(text: str) -> str:
    """"CC BY 4.0", "cc-by-4.0" and "CC_BY_4.0" are the same licence id."""
    return re.sub(r"[\s_]+", "-", str(text).strip()).upper()


@register_check("provenance")
class ProvenanceCheck(Check):
    metrics = ("manifest_verified", "signature_valid", "signer_trusted", "license_allowed", "source_declared")
    # no parameters: the plan's and the policy's provenance settings are read from the context

    def _trusted(self, ctx: CheckContext) -> dict[str, str]:
        from govssl.provenance import load_public_key

        files = [ctx.plan.resolve(p) for p in (ctx.plan.provenance.trusted_keys if ctx.plan is not None else [])]
        files += list(getattr(ctx.policy, "trusted_keys", ()) or ())
        keys = {}
        for f in files:
            key = load_public_key(f)
            keys[key.keyid] = str(f)
        return keys

    def measure(self, ctx: CheckContext) -> list[Measurement]:
        report = ctx.manifest
        data = ctx.dataset
        source = (report.source if report and report.source else data.source) or ""
        licence = (report.license if report and report.license else data.license) or ""
        trusted = self._trusted(ctx)
        signers = list(report.signers) if report else []
        trusted_signers = [k for k in signers if k in trusted]
        allowed = [normalise_license(x) for x in (getattr(ctx.policy, "allowed_licenses", ()) or ())]
        details = {"manifest": report.to_dict() if report else None, "trusted_keys": trusted}
        n_files = len(report.files) if report else 0
        return [
            Measurement(self.name, "manifest_verified", report is not None, n=n_files,
                        details={**details, "reason": "" if report else "the plan names no manifest"}),
            Measurement(self.name, "signature_valid", bool(signers), details={"signers": signers}),
            Measurement(self.name, "signer_trusted", bool(trusted_signers),
                        details={"signers": signers, "trusted_signers": {k: trusted[k] for k in trusted_signers},
                                 "n_trusted_keys": len(trusted)}),
            Measurement(self.name, "license_allowed", normalise_license(licence) in allowed and licence.strip().lower() not in _UNDECLARED,
                        details={"license": licence, "allowed": list(getattr(ctx.policy, "allowed_licenses", ()) or ())}),
            Measurement(self.name, "source_declared", source.strip().lower() not in _UNDECLARED,
                        details={"source": source}),
        ]
