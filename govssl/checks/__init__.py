"""The checks: one module per family, each registering its check with ``@register_check``.

Importing this package registers the built-in checks; ``govssl.checks.base`` (the interface and
the registry) imports nothing from govssl, so no check module imports its way back up here.
"""

from govssl.checks import data_quality, fairness, label_efficiency, performance  # noqa: F401
from govssl.checks import poisoning, privacy, provenance, robustness  # noqa: F401
from govssl.checks.base import registered_checks

__all__ = ["registered_checks"]
