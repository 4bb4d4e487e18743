"""govssl: a release gate for machine-learning models.

It trains a model with its built-in self-supervised trainer (optionally under differential
privacy), measures fairness and performance, lets a declarative policy decide pass or blocked,
writes a model card and a NIST AI RMF report, and stores the run in a tamper-evident audit store.
"""

__version__ = "0.1.0"

__all__ = ["__version__", "run_audit", "load_plan", "load_policy", "AuditRun"]


def __getattr__(name):
    # Lazy: `import govssl` must stay cheap (the CLI's --help, the store, the reports).
    if name == "run_audit":
        from govssl.audit import run_audit

        return run_audit
    if name == "load_plan":
        from govssl.plan import load_plan

        return load_plan
    if name == "load_policy":
        from govssl.policy import load_policy

        return load_policy
    if name == "AuditRun":
        from govssl.records import AuditRun

        return AuditRun
    raise AttributeError(name)
