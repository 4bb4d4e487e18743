"""The NIST AI RMF 1.0 catalog (72 subcategories) and the default mapping of checks to it."""

from govssl.rmf._catalog import (
    FUNCTIONS,
    SOURCE,
    UNKNOWN_SUBCATEGORY,
    Subcategory,
    catalog_source,
    is_subcategory,
    load_catalog,
    sort_key,
    subcategory,
)
from govssl.rmf._mapping import CHECK_RMF

__all__ = [
    "CHECK_RMF",
    "FUNCTIONS",
    "SOURCE",
    "UNKNOWN_SUBCATEGORY",
    "Subcategory",
    "catalog_source",
    "is_subcategory",
    "load_catalog",
    "sort_key",
    "subcategory",
]
