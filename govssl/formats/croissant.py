"""The audited dataset of a stored run as Croissant 1.1 JSON-LD, with the Responsible AI (RAI)
vocabulary filled from the run's datasheet.

Sources: the Croissant format specification 1.1 (MLCommons, ``docs/croissant-spec-1.1.md``:
the required dataset properties ``@context``, ``@type`` sc:Dataset, ``conformsTo``, ``name``,
``description``, ``license``, ``url``, ``creator``, ``datePublished``; ``distribution`` of
``cr:FileObject`` with ``sha256``; ``recordSet`` of ``cr:Field`` with a ``dataType`` and a
``source``; the JSON-LD context of its Appendix 1) and the Croissant RAI specification 1.0
(``docs/croissant-rai-spec.md``, namespace ``http://mlcommons.org/croissant/RAI/``).

Where each part comes from:

- ``license``, ``creator``, ``url`` and ``datePublished`` describe the data's publication, which
  the data itself cannot tell: they come from the plan's ``dataset.license`` / ``source`` and
  from the data manifest the audit verified before training (its licence, creator, source and
  creation date). A run that declares one of them nowhere is not exported (ConfigError naming
  what is missing and where to declare it): the specification requires all four.
- ``distribution``: one FileObject per audited file with the sha256 the audit recorded (the
  digest ``govssl attest verify`` checks for ``data/<file>``), at the file's recorded location.
- ``recordSet``: one per table file, a field per column typed from the data: from the verified
  manifest's column types when its file is here unchanged, else from the file itself when it is
  here (its sha256 checked first), else from the columns as the audit typed them.
- ``rai:*``: the datasheet's answers (supplied by the plan's authors or derived from the data).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path, PurePath

from govssl.errors import ConfigError
from govssl.formats._common import check_files, first_url, json_bytes, write_file
from govssl.records import AuditRun, sha256_file

__all__ = ["CONTEXT", "CROISSANT_1_1", "RAI_1_0", "RAI_PROPERTIES", "export", "metadata"]

CROISSANT_1_1 = "http://mlcommons.org/croissant/1.1"
RAI_1_0 = "http://mlcommons.org/croissant/RAI/1.0"
# the JSON-LD context of Croissant 1.1 (its Appendix 1, as the 1.1 example datasets write it)
# with the RAI namespace
CONTEXT = {
    "@language": "en",
    "@vocab": "https://schema.org/",
    "sc": "https://schema.org/",
    "cr": "http://mlcommons.org/croissant/",
    "rai": "http://mlcommons.org/croissant/RAI/",
    "dct": "http://purl.org/dc/terms/",
    "annotation": "cr:annotation",
    "arrayShape": "cr:arrayShape",
    "citeAs": "cr:citeAs",
    "column": "cr:column",
    "conformsTo": "dct:conformsTo",
    "containedIn": "cr:containedIn",
    "data": {"@id": "cr:data", "@type": "@json"},
    "dataType": {"@id": "cr:dataType", "@type": "@vocab"},
    "equivalentProperty": "cr:equivalentProperty",
    "examples": {"@id": "cr:examples", "@type": "@json"},
    "excludes": "cr:excludes",
    "extract": "cr:extract",
    "field": "cr:field",
    "fileProperty": "cr:fileProperty",
    "fileObject": "cr:fileObject",
    "fileSet": "cr:fileSet",
    "format": "cr:format",
    "includes": "cr:includes",
    "isArray": "cr:isArray",
    "isLiveDataset": "cr:isLiveDataset",
    "jsonPath": "cr:jsonPath",
    "key": "cr:key",
    "md5": "cr:md5",
    "parentField": "cr:parentField",
    "path": "cr:path",
    "readLines": "cr:readLines",
    "recordSet": "cr:recordSet",
    "references": "cr:references",
    "regex": "cr:regex",
    "repeated": "cr:repeated",
    "replace": "cr:replace",
    "samplingRate": "cr:samplingRate",
    "sdVersion": "cr:sdVersion",
    "separator": "cr:separator",
    "source": "cr:source",
    "subField": "cr:subField",
    "transform": "cr:transform",
    "unArchive": "cr:unArchive",
    "value": "cr:value",
}
# RAI property -> the datasheet questions that answer it, in order. "ONE" properties take one
# text (the answers joined), "MANY" a list (RAI spec 1.0, table of properties).
RAI_PROPERTIES: dict[str, tuple[str, tuple[str, ...]]] = {
    "rai:dataCollection": ("ONE", ("collection.01", "collection.02", "collection.03", "collection.04")),
    "rai:dataCollectionMissingData": ("ONE", ("composition.06",)),
    "rai:dataCollectionRawData": ("ONE", ("collection.07", "preprocessing.02")),
    "rai:dataPreprocessingProtocol": ("MANY", ("preprocessing.01", "preprocessing.03")),
    "rai:dataReleaseMaintenancePlan": ("MANY", ("maintenance.01", "maintenance.04", "maintenance.05",
                                                "maintenance.06")),
    "rai:personalSensitiveInformation": ("MANY", ("composition.11", "composition.14", "composition.15")),
    "rai:dataSocialImpact": ("ONE", ("collection.11",)),
    "rai:dataBiases": ("MANY", ("composition.03", "composition.13", "uses.04")),
    "rai:dataLimitations": ("MANY", ("composition.09", "uses.05")),
    "rai:dataUseCases": ("MANY", ("motivation.01", "uses.01", "uses.03")),
}
# manifest column types (govssl.provenance) -> Croissant data types
DATA_TYPES = {"boolean": "sc:Boolean", "integer": "sc:Integer", "float": "sc:Float",
              "datetime": "sc:DateTime", "string": "sc:Text"}
ENCODINGS = {".csv": "text/csv", ".tsv": "text/tab-separated-values", ".parquet": "application/x-parquet",
             ".pq": "application/x-parquet", ".json": "application/json", ".jsonl": "application/jsonlines",
             ".gz": "application/gzip", ".npz": "application/x-npz", ".zip": "application/zip",
             ".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}
_SPDX_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9.+-]*")
_UNDECLARED = {"", "not declared", "unknown", "none"}


def _declared(value) -> str:
    text = "" if value is None else str(value).strip()
    return "" if text.lower() in _UNDECLARED else text


def _license(text: str) -> str:
    """An SPDX licence id as its URL on spdx.org (what the specification recommends), other text as it is."""
    return f"https://spdx.org/licenses/{text}.html" if _SPDX_ID.fullmatch(text) else text


def _publication(run: AuditRun) -> dict:
    """license, creator, url and datePublished of the audited data; ConfigError naming every one
    that is declared nowhere."""
    from govssl.reports._context import data_origin

    origin = data_origin(run)
    manifest = run.dataset.manifest or {}
    found = {
        "license": _declared(origin["license"]),
        "creator": _declared(origin["creator"]),
        "url": first_url(origin["source"], run.dataset.citation),
        "datePublished": str(manifest.get("created") or "")[:10],
    }
    how = {
        "license": "not declared: set the plan's dataset.license or the data manifest's license "
                   "(govssl data manifest --license)",
        "creator": "not declared: the data manifest names it (govssl data manifest --creator)",
        "url": "no URL or DOI in the data's source: put one in the plan's dataset.source or the data "
               "manifest's source (govssl data manifest --source)",
        "datePublished": "no data manifest: the day a manifest was made (govssl data manifest) is the day the "
                         "files were published with their hashes",
    }
    missing = [f"{key}: {how[key]}" for key, value in found.items() if not value]
    if missing:
        raise ConfigError(
            f"cannot export run '{run.run_id}' as Croissant: the specification requires "
            f"{', '.join(k for k, v in found.items() if not v)} of a dataset, and the run declares "
            f"{'it' if len(missing) == 1 else 'them'} nowhere", missing)
    return found


def _rai(run: AuditRun) -> dict:
    from govssl.reports import datasheet_context

    answers = {q["id"]: q for section in datasheet_context(run)["sections"] for q in section["questions"]}
    rai = {}
    for prop, (cardinality, questions) in RAI_PROPERTIES.items():
        texts = []
        for qid in questions:
            q = answers[qid]
            texts += [text for text in (q["answer"], q["derived_too"]) if text]
        if prop == "rai:dataUseCases":  # what the run itself used the data for
            texts.append(_audit_use(run))
        if texts:
            rai[prop] = " ".join(texts) if cardinality == "ONE" else texts
    return rai


def _audit_use(run: AuditRun) -> str:
    card = (run.plan or {}).get("model_card") or {}
    name = card.get("name") or run.plan_name
    purpose = f" ({str(card['intended_use']).strip().rstrip('.')})" if card.get("intended_use") else ""
    return (f"Training and testing of the model {name}{purpose}, audited by govssl in run {run.run_id} "
            f"under policy {run.policy_name} v{run.policy_version}: {run.decision.verdict}.")


def _cite_as(run: AuditRun, publication: Mapping) -> str:
    """The dataset's citation, else a BibTeX entry made from its creator, name, URL and date."""
    if run.dataset.citation:
        return run.dataset.citation
    key = re.sub(r"[^A-Za-z0-9]+", "-", run.dataset.name).strip("-") or "dataset"
    return (f"@misc{{{key}, title = {{{run.dataset.name}}}, author = {{{publication['creator']}}}, "
            f"year = {{{publication['datePublished'][:4]}}}, url = {{{publication['url']}}}}}")


def _encoding(name: str) -> str:
    suffixes = [s.lower() for s in PurePath(name).suffixes]
    return ENCODINGS.get(suffixes[-1] if suffixes else "", "application/octet-stream")


def _manifest_tables(run: AuditRun) -> dict[str, list[dict]]:
    """Column types per file name from the verified manifest, when its file is here unchanged."""
    manifest = run.dataset.manifest or {}
    path = Path(str(manifest.get("path") or ""))
    if not manifest.get("path") or not path.is_file() or sha256_file(path) != manifest.get("sha256"):
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return {
        PurePath(str(f.get("path", ""))).name: list((f.get("table") or {}).get("columns") or [])
        for f in data.get("files", []) if isinstance(f, Mapping) and isinstance(f.get("table"), Mapping)
    }


def _file_columns(path: Path) -> list[dict]:
    """The columns of a table file here and now, typed as data manifests type them ([] if it is
    not a table govssl reads by its suffix)."""
    from govssl.provenance._manifest import _reader_for, _table_facts

    reader = _reader_for(path)
    return _table_facts(path, reader)["columns"] if reader else []


def _summary_columns(run: AuditRun) -> list[dict]:
    """The columns as the audit typed them (the data file is not on this machine)."""
    ds = run.dataset
    columns = [{"name": c, "type": "float"} for c in ds.numeric_features]
    columns += [{"name": c, "type": "string"} for c in ds.categorical_features]
    return columns + [{"name": ds.target, "type": "string"}]


def _record_set(file_id: str, columns: list[dict], typed_from: str, run: AuditRun) -> dict:
    ds = run.dataset
    set_id = f"{file_id}/records"
    fields = []
    for column in columns:
        name = str(column["name"])
        role = ("target" if name == ds.target else "sensitive attribute" if name in ds.sensitive
                else "feature" if name in ds.numeric_features + ds.categorical_features else "not read by the model")
        fields.append({
            "@type": "cr:Field",
            "@id": f"{set_id}/{name}",
            "name": name,
            "description": f"Column {name!r} ({role}).",
            "dataType": DATA_TYPES.get(str(column.get("type")), "sc:Text"),
            "source": {"fileObject": {"@id": file_id}, "extract": {"column": name}},
        })
    return {
        "@type": "cr:RecordSet",
        "@id": set_id,
        "name": set_id,
        "description": f"The rows of {file_id}; column types {typed_from}.",
        "field": fields,
    }


def _distribution(run: AuditRun) -> tuple[list[dict], list[dict]]:
    tables = _manifest_tables(run)
    files, record_sets, seen = [], [], set()
    tabular = run.dataset.task.startswith("tabular")
    for f in run.dataset.files:
        path = Path(str(f["path"]))
        file_id = path.name if path.name not in seen else f"{len(seen)}-{path.name}"
        seen.add(file_id)
        files.append({
            "@type": "cr:FileObject",
            "@id": file_id,
            "name": file_id,
            "description": f"Data file {path.name} as audited in run {run.run_id} ({f.get('size')} bytes).",
            "contentUrl": path.as_uri() if path.is_absolute() else path.as_posix(),
            "contentSize": f"{f.get('size')} B",
            "encodingFormat": _encoding(path.name),
            "sha256": str(f["sha256"]),
        })
        if not tabular:
            continue
        if tables.get(path.name):
            columns, typed = tables[path.name], "from the verified data manifest"
        elif path.is_file():  # check_files has compared its sha256 with the store's
            columns, typed = _file_columns(path), "from the file"
        else:
            columns, typed = _summary_columns(run), "as the audit typed them (the file is not on this machine)"
        if columns:
            record_sets.append(_record_set(file_id, columns, typed, run))
    return files, record_sets


def metadata(run: AuditRun) -> dict:
    """The Croissant 1.1 JSON-LD document of the run's dataset (a dict ready for JSON)."""
    ds = run.dataset
    publication = _publication(run)
    files, record_sets = _distribution(run)
    description = (
        f"{ds.name}: {ds.n_train} training and {ds.n_test} test rows as audited by govssl in run "
        f"{run.run_id} ({run.created_at}); target {ds.target!r}"
        + (f", sensitive attributes {', '.join(ds.sensitive)}" if ds.sensitive else "") + "."
        + (f" {(run.plan or {}).get('description')}" if (run.plan or {}).get("description") else "")
    )
    document = {
        "@context": CONTEXT,
        "@type": "sc:Dataset",
        "conformsTo": [CROISSANT_1_1, RAI_1_0],
        "name": ds.name,
        "description": description,
        "license": _license(publication["license"]),
        "url": publication["url"],
        "creator": {"@type": "sc:Organization", "name": publication["creator"]},
        "datePublished": publication["datePublished"],
        "keywords": ["govssl", ds.task],
        "distribution": files,
        "recordSet": record_sets,
        "citeAs": _cite_as(run, publication),
    }
    return document | _rai(run)


def export(run: AuditRun, out: Path, overwrite: bool) -> str:
    """Write the run's Croissant metadata to ``out`` (see the module docstring)."""
    check_files(run)
    document = metadata(run)
    write_file(out, json_bytes(document), overwrite)
    rai = [k for k in document if k.startswith("rai:")]
    fields = sum(len(r["field"]) for r in document["recordSet"])
    return (f"exported run {run.run_id} to {out}: Croissant 1.1 metadata of {run.dataset.name}, "
            f"{len(document['distribution'])} file(s) with sha256, {fields} typed field(s), "
            f"{len(rai)} RAI propert{'y' if len(rai) == 1 else 'ies'}")
