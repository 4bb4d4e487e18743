"""Default mapping of each check family to the AI RMF subcategories its measurements evidence.

Our own editorial reading of NIST AI 100-1, not NIST's: a measured check is evidence that the
outcome was examined and documented, never that the risk is acceptable (that is the policy's
call). Policies add subcategories per rule with ``rmf:``.
"""

from __future__ import annotations

__all__ = ["CHECK_RMF"]

CHECK_RMF: dict[str, tuple[str, ...]] = {
    # Valid and reliable, measured for the evaluation conditions, test set and metrics documented.
    "performance": ("MEASURE 2.5", "MEASURE 2.3", "MEASURE 2.1"),
    # Fairness and bias evaluated and documented.
    "fairness": ("MEASURE 2.11",),
    # Security and resilience (evasion attacks).
    "robustness": ("MEASURE 2.7",),
    # Security and resilience (training-data poisoning and backdoors).
    "poisoning": ("MEASURE 2.7",),
    # Privacy risk examined (membership inference against the trained model).
    "privacy": ("MEASURE 2.10",),
    # Third-party data: manifests verified, origin and licence documented.
    "provenance": ("GOVERN 6.1", "MAP 4.1"),
    # Data selection and suitability documented; the test set described.
    "data_quality": ("MAP 2.3", "MEASURE 2.1"),
    # Before training: identifiers, personal data and sensitive attributes among the inputs, leakage.
    "preflight": ("MEASURE 2.10", "MAP 2.3"),
    # Performance measured across the label budgets the deployment may face.
    "label_efficiency": ("MEASURE 2.3",),
}
