"""The datasheet of the audited data: the 57 questions of "Datasheets for Datasets" in their seven
sections and order, asked in govssl's own words.

Each question is answered from the plan's answers file (``dataset.datasheet``, YAML mapping
question id -> text) where it has an answer, which is never replaced: what the audit derives from
the data (counts, splits, groups, missingness, hashes, licence, source) is shown beside it. Other
questions are answered from the data where the audit can, else marked unanswered. Supplied
answers are attributed to the plan's owners (``model_card.owners``), else to "the plan's authors".
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from govssl.errors import ConfigError
from govssl.records import AuditRun
from govssl.reports._context import data_origin

__all__ = ["DATASHEETS_CITATION", "SECTIONS", "QUESTION_IDS", "load_datasheet_answers", "datasheet_context"]

DATASHEETS_CITATION = (
    "Timnit Gebru, Jamie Morgenstern, Briana Vecchione, Jennifer Wortman Vaughan, Hanna Wallach, "
    "Hal Daumé III and Kate Crawford. Datasheets for Datasets. Communications of the ACM 64(12), "
    "2021, pp. 86-92. doi:10.1145/3458723"
)

#: (section, [(question id, question in govssl's words)]) in the paper's order
SECTIONS: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    ("Motivation", (
        ("motivation.01", "Why was this dataset made: which task or which gap was it meant for?"),
        ("motivation.02", "Which people or group made it, and for which organisation?"),
        ("motivation.03", "Who paid for making it (grant, grantor, number)?"),
        ("motivation.04", "Anything else about why it exists?"),
    )),
    ("Composition", (
        ("composition.01", "What is one instance (a person, a document, an event...), and are there several kinds?"),
        ("composition.02", "How many instances are there, per kind where that applies?"),
        ("composition.03", "Is this every possible instance or a sample of a larger set, and if a sample, how representative is it and how was that checked?"),
        ("composition.04", "What does each instance hold: raw data or derived features?"),
        ("composition.05", "Does each instance carry a label or target, and what is it?"),
        ("composition.06", "Is information missing from some instances, and why?"),
        ("composition.07", "Are links between instances stated explicitly (ratings, social ties), and how?"),
        ("composition.08", "Are there recommended splits (training, validation, test), and why those?"),
        ("composition.09", "Does the data contain errors, noise or redundancy?"),
        ("composition.10", "Is the dataset self-contained, or does it depend on outside resources, and are those archived, stable and free to use?"),
        ("composition.11", "Could any of it be confidential (legally privileged, medical, private communications)?"),
        ("composition.12", "Could any of it offend, insult, threaten or distress someone who reads it?"),
        ("composition.13", "Does it single out subpopulations (by age, gender...), how, and with what distribution?"),
        ("composition.14", "Can a natural person be identified from it, directly or combined with other data?"),
        ("composition.15", "Does it hold sensitive data (ethnic origin, sexual orientation, beliefs, health, finances, biometrics, government ids, criminal history, location)?"),
        ("composition.16", "Anything else about what it contains?"),
    )),
    ("Collection process", (
        ("collection.01", "How was each instance's data obtained: observed, reported by the subjects, or inferred from other data, and was that checked?"),
        ("collection.02", "By what means was it gathered (sensors, manual curation, software, APIs), and how were those means validated?"),
        ("collection.03", "If a sample, what was the sampling scheme?"),
        ("collection.04", "Who took part in collecting it, and how were they paid?"),
        ("collection.05", "Over which period was it collected, and does that match when the underlying data arose?"),
        ("collection.06", "Was there an ethical review (for example an institutional review board), with what outcome?"),
        ("collection.07", "Was the data taken from the people themselves, or through third parties or other sources?"),
        ("collection.08", "Were the people told that their data was being collected, and how?"),
        ("collection.09", "Did the people agree to the collection and use of their data, and how was that agreement asked for?"),
        ("collection.10", "If they agreed, can they withdraw that agreement later, and how?"),
        ("collection.11", "Has the impact on the people in the data been assessed (for example a data protection impact assessment), with what result?"),
        ("collection.12", "Anything else about how it was collected?"),
    )),
    ("Preprocessing/cleaning/labeling", (
        ("preprocessing.01", "Was the data preprocessed, cleaned or labelled (bucketing, tokenising, removing instances, handling missing values...)?"),
        ("preprocessing.02", "Was the raw data kept besides the processed data, and where?"),
        ("preprocessing.03", "Is the software used for that processing available, and where?"),
        ("preprocessing.04", "Anything else about the processing?"),
    )),
    ("Uses", (
        ("uses.01", "Has the dataset already been used for tasks, and which?"),
        ("uses.02", "Is there a place that lists the papers or systems using it?"),
        ("uses.03", "What else could it be used for?"),
        ("uses.04", "Does anything in how it was composed, collected or processed affect future uses, for example risks of unfair treatment or other harm, and how can users reduce them?"),
        ("uses.05", "Which tasks should it not be used for?"),
        ("uses.06", "Anything else about its use?"),
    )),
    ("Distribution", (
        ("distribution.01", "Will it be shared with third parties outside the organisation it was made for?"),
        ("distribution.02", "How is it distributed (archive, API, repository), and does it have a DOI?"),
        ("distribution.03", "When will it be distributed?"),
        ("distribution.04", "Under which licence or terms of use is it distributed, with which fees?"),
        ("distribution.05", "Have third parties placed IP or other restrictions on the data?"),
        ("distribution.06", "Do export controls or other regulations apply to it?"),
        ("distribution.07", "Anything else about its distribution?"),
    )),
    ("Maintenance", (
        ("maintenance.01", "Who supports, hosts and maintains it?"),
        ("maintenance.02", "How can its owner or curator be reached?"),
        ("maintenance.03", "Is there an erratum, and where?"),
        ("maintenance.04", "Will it be updated (corrections, additions, deletions), how often, by whom, and how will users hear of it?"),
        ("maintenance.05", "If it concerns people, are there limits on how long their data is kept, and how are they enforced?"),
        ("maintenance.06", "Will older versions stay available, or how will their retirement be announced?"),
        ("maintenance.07", "Can others extend or contribute to it, how are contributions checked, and how are they shared?"),
        ("maintenance.08", "Anything else about its maintenance?"),
    )),
)
QUESTION_IDS = tuple(qid for _, questions in SECTIONS for qid, _ in questions)


def _answers_path(plan_path: str | Path | None, dataset: Mapping) -> Path | None:
    value = (dataset or {}).get("datasheet")
    if not value:
        return None
    path = Path(value)
    if not path.is_absolute() and plan_path:
        path = Path(plan_path).parent / path
    return path


def _read_answers(path: Path) -> dict[str, str]:
    from govssl._yaml import read_yaml_mapping

    data = read_yaml_mapping(path, ConfigError, "datasheet answers")
    problems = []
    known = set(QUESTION_IDS)
    for key, value in data.items():
        if key not in known:
            problems.append(f"{path}: {key}: unknown question id; ids look like 'motivation.01' .. 'maintenance.08'")
        elif not isinstance(value, (str, int, float)) or isinstance(value, bool):
            problems.append(f"{path}: {key}: the answer must be text; got {type(value).__name__}")
    if problems:
        raise ConfigError(f"{path}: the datasheet answers have {len(problems)} problem(s)", problems)
    return {k: str(v).strip() for k, v in data.items() if str(v).strip()}


def load_datasheet_answers(plan) -> dict[str, str]:
    """The plan's answers (an AuditPlan); {} if it names none. Unknown question ids are a ConfigError."""
    if plan.dataset.datasheet is None:
        return {}
    return _read_answers(plan.resolve(plan.dataset.datasheet))


def _measurements(run: AuditRun, check: str, metric: str) -> list:
    return [m for r in run.results if r.check == check for m in r.measurements if m.metric == metric]


def _derived(run: AuditRun) -> dict[str, str]:
    """Answers the audit can give from the data itself."""
    ds = run.dataset
    out: dict[str, str] = {}
    total = ds.n_train + ds.n_test
    out["composition.02"] = f"{total} rows as audited: {ds.n_train} for training and {ds.n_test} for testing."
    features = len(ds.numeric_features) + len(ds.categorical_features)
    out["composition.04"] = (
        f"{features} feature columns: numeric {', '.join(ds.numeric_features) or 'none'}; "
        f"categorical {', '.join(ds.categorical_features) or 'none'}."
    )
    out["composition.05"] = (
        f"Yes: '{ds.target}', positive class '{ds.positive_label}' "
        f"({ds.positive_rate_train:.1%} of training rows, {ds.positive_rate_test:.1%} of test rows)."
    )
    if ds.missing:
        parts = ", ".join(f"{c}: {n}" for c, n in sorted(ds.missing.items()) if n)
        out["composition.06"] = f"Missing values per column (training and test rows): {parts or 'none'}."
    else:
        out["composition.06"] = "No value is missing in the audited rows."
    test_path = (run.plan.get("dataset") or {}).get("test_path")
    how = "separate test file" if (test_path or len(ds.files) > 1) else "held-out stratified split of one file, fixed by the plan's seed"
    out["composition.08"] = f"The audit used {ds.n_train} training and {ds.n_test} test rows ({how})."
    dup = _measurements(run, "data_quality", "duplicate_row_fraction")
    leak = _measurements(run, "data_quality", "train_test_overlap_fraction")
    const = _measurements(run, "data_quality", "constant_columns")
    if dup and leak and const:
        out["composition.09"] = (
            f"{dup[0].details.get('duplicate_rows', 0)} duplicate row(s); "
            f"{leak[0].details.get('test_rows_in_train', 0)} test row(s) identical to a training row; "
            f"constant columns: {', '.join(const[0].details.get('columns') or []) or 'none'}."
        )
    groups = _measurements(run, "data_quality", "min_group_size")
    if groups:
        parts = [f"{m.subject} (smallest test group {m.details.get('smallest_group')}, n = {m.n})" for m in groups]
        out["composition.13"] = "Subpopulations audited: " + "; ".join(parts) + ". Group counts are in evidence.json."
    elif ds.sensitive:
        out["composition.13"] = f"The plan names the sensitive attributes {', '.join(ds.sensitive)}."
    pii = _measurements(run, "data_quality", "undeclared_pii_columns")
    if pii:
        found = pii[0].details.get("found") or {}
        listed = "; ".join(f"{c} ({', '.join(h['kind'] for h in hits)})" for c, hits in found.items())
        out["composition.14"] = (
            (f"Columns that look like direct identifiers: {listed}." if listed else
             "The scan for direct identifiers (names, e-mail addresses, phone numbers, dates of birth, national ids) found none.")
            + " Re-identification by combining other columns was not assessed."
        )
    personal = list((run.plan.get("dataset") or {}).get("personal_data") or [])
    parts = []
    if ds.sensitive:
        parts.append(f"The plan treats {', '.join(ds.sensitive)} as sensitive attributes.")
    if personal:
        parts.append(f"It declares {', '.join(personal)} as columns holding personal data.")
    if parts:
        out["composition.15"] = " ".join(parts)
    origin = data_origin(run)
    where = f" (from the verified data manifest {origin['manifest']})" if origin["from_manifest"] else ""
    if origin["creator"]:
        out["motivation.02"] = origin["creator"] + (where if "creator" in origin["from_manifest"] else "") + "."
    if origin["collection_notes"]:
        out["collection.02"] = origin["collection_notes"]
    if origin["source"]:
        hashes = "; ".join(f"{Path(f['path']).name} sha256 {f['sha256']}" for f in ds.files)
        out["distribution.02"] = (f"As audited, obtained from: {origin['source']}"
                                  f"{where if 'source' in origin['from_manifest'] else ''}. Files: {hashes}.")
    if origin["license"]:
        out["distribution.04"] = (f"Licence: {origin['license']}"
                                  f"{where if 'license' in origin['from_manifest'] else ''}.")
    return out


def _supplied_by(run: AuditRun) -> str:
    """Who supplied the answers file: the plan's owners (model_card.owners), else "the plan's authors"."""
    owners = ((run.plan or {}).get("model_card") or {}).get("owners") or []
    names = [str(o.get("name")) for o in owners if isinstance(o, dict) and o.get("name")]
    return "; ".join(names) or "the plan's authors"


def datasheet_context(run: AuditRun) -> dict:
    """Every question with its answer and where the answer came from (derived, supplied, unanswered)."""
    supplied = {}
    path = _answers_path(run.plan_path, (run.plan or {}).get("dataset") or {})
    if path is not None:
        supplied = _read_answers(path)
    derived = _derived(run)
    sections, counts = [], {"derived": 0, "supplied": 0, "unanswered": 0}
    number = 0
    for title, questions in SECTIONS:
        items = []
        for qid, text in questions:
            number += 1
            if qid in supplied:  # a person's answer is never replaced; the audit's figure goes beside it
                origin, answer, extra = "supplied", supplied[qid], derived.get(qid, "")
            elif qid in derived:
                origin, answer, extra = "derived", derived[qid], ""
            else:
                origin, answer, extra = "unanswered", "", ""
            counts[origin] += 1
            items.append({"id": qid, "number": number, "question": text, "origin": origin,
                          "answer": answer, "derived_too": extra})
        sections.append({"title": title, "questions": items})
    ds = run.dataset
    origin = data_origin(run)
    return {
        "citation": DATASHEETS_CITATION,
        "supplied_by": _supplied_by(run),
        "dataset": {"name": ds.name, "source": origin["source"], "license": origin["license"],
                    "creator": origin["creator"], "from_manifest": origin["from_manifest"],
                    "manifest": origin["manifest"], "citation": ds.citation,
                    "files": [{"name": Path(f["path"]).name, "sha256": f["sha256"], "size": f["size"]} for f in ds.files]},
        "run": {"run_id": run.run_id, "created_at": run.created_at, "govssl_version": run.govssl_version},
        "answers_file": path.name if path is not None else "",
        "counts": counts,
        "n_questions": number,
        "sections": sections,
    }
