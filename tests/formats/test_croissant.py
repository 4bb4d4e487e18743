"""`govssl export --format croissant`: Croissant 1.1 JSON-LD that mlcroissant validates offline,
with the data files' sha256, typed fields and the RAI vocabulary filled from the datasheet."""

from __future__ import annotations

import json

import mlcroissant as mlc
import pytest
from mlcroissant._src.core import constants as mlc_constants

from govssl.formats.croissant import CROISSANT_1_1, RAI_1_0, RAI_PROPERTIES
from tests.conftest import run_cli
from tests.formats.conftest import ANSWERS, CREATOR, cli

REQUIRED = ("@context", "@type", "conformsTo", "name", "description", "license", "url", "creator", "datePublished")
# the RAI properties mlcroissant reads (its constants module: the published RAI 1.0 vocabulary)
RAI_VOCABULARY = {str(v) for k, v in vars(mlc_constants).items() if k.startswith("ML_COMMONS_RAI_")}


@pytest.fixture(scope="module")
def croissant(formats_run, tmp_path_factory):
    path = tmp_path_factory.mktemp("croissant") / "croissant.json"
    code, out, err = cli("export", formats_run["run_id"], "--format", "croissant", "--out", str(path),
                         "--db", formats_run["db"])
    assert code == 0, err
    assert f"exported run {formats_run['run_id']} to {path}: Croissant 1.1 metadata" in out
    return json.loads(path.read_text(encoding="utf-8")), path


def test_croissant__mlcroissant_validates_it_offline_with_no_error(croissant):
    """mlcroissant's own validation (what `mlcroissant validate --jsonld` runs): errors raise;
    its only warning is the recommended `version`, which the audited data does not state."""
    _, path = croissant
    dataset = mlc.Dataset(jsonld=str(path))
    metadata = dataset.metadata
    assert metadata.ctx.issues.errors == set()
    assert [w for w in metadata.ctx.issues.warnings if "version" not in w] == []
    assert metadata.ctx.conforms_to.value == CROISSANT_1_1


def test_croissant__mlcroissant_rejects_a_broken_file(croissant, tmp_path):
    document, _ = croissant
    broken = json.loads(json.dumps(document))
    del broken["distribution"][0]["sha256"]
    (tmp_path / "broken.json").write_text(json.dumps(broken))
    with pytest.raises(mlc.ValidationError, match="sha256"):
        mlc.Dataset(jsonld=str(tmp_path / "broken.json"))


def test_croissant__required_fields_of_the_specification(croissant, formats_run):
    document, _ = croissant
    assert all(document.get(key) for key in REQUIRED), [k for k in REQUIRED if not document.get(k)]
    assert document["@type"] == "sc:Dataset"
    assert document["conformsTo"] == [CROISSANT_1_1, RAI_1_0]
    assert document["license"] == "https://spdx.org/licenses/CC-BY-4.0.html"
    assert document["url"] == "https://archive.ics.uci.edu/dataset/2/adult"
    assert document["creator"] == {"@type": "sc:Organization", "name": CREATOR}
    manifest = json.loads((formats_run["folder"] / "manifest.json").read_text())
    assert document["datePublished"] == manifest["created"][:10]
    assert document["citeAs"].startswith("@misc{")


def test_croissant__distribution_carries_each_data_files_sha256(croissant, formats_run):
    document, _ = croissant
    files = {f["path"].rsplit("/", 1)[-1]: f for f in formats_run["evidence"]["dataset"]["files"]}
    assert {d["name"]: d["sha256"] for d in document["distribution"]} == {n: f["sha256"] for n, f in files.items()}
    assert all(d["@type"] == "cr:FileObject" and d["encodingFormat"] == "text/csv" for d in document["distribution"])


def test_croissant__record_sets_type_every_column_from_the_data(croissant, formats_run):
    document, _ = croissant
    manifest = json.loads((formats_run["folder"] / "manifest.json").read_text())
    expected = {"integer": "sc:Integer", "float": "sc:Float", "string": "sc:Text", "boolean": "sc:Boolean"}
    assert len(document["recordSet"]) == 2
    for record_set, entry in zip(document["recordSet"], manifest["files"]):
        fields = {f["name"]: f["dataType"] for f in record_set["field"]}
        assert fields == {c["name"]: expected[c["type"]] for c in entry["table"]["columns"]}
        assert fields["age"] == "sc:Integer" and fields["sex"] == "sc:Text"
        file_id = record_set["field"][0]["source"]["fileObject"]["@id"]
        assert file_id == entry["path"]


def test_croissant__rai_properties_from_the_datasheet_are_in_the_rai_vocabulary(croissant, formats_run):
    document, path = croissant
    rai = {k: v for k, v in document.items() if k.startswith("rai:")}
    for key in rai:
        assert f"http://mlcommons.org/croissant/RAI/{key[4:]}" in RAI_VOCABULARY, key
        assert key in RAI_PROPERTIES
    assert ANSWERS["collection.01"] in rai["rai:dataCollection"]
    assert ANSWERS["uses.04"] in rai["rai:dataBiases"]
    assert ANSWERS["uses.05"] in rai["rai:dataLimitations"]
    assert ANSWERS["motivation.01"] in rai["rai:dataUseCases"]
    assert any(formats_run["run_id"] in text for text in rai["rai:dataUseCases"])
    assert ANSWERS["maintenance.01"] in rai["rai:dataReleaseMaintenancePlan"]
    assert "sex, race" in " ".join(rai["rai:personalSensitiveInformation"])
    assert "Missing values per column" in rai["rai:dataCollectionMissingData"]
    # the JSON-LD context maps them into the RAI namespace: mlcroissant reads them back
    metadata = mlc.Dataset(jsonld=str(path)).metadata
    assert metadata.data_collection == rai["rai:dataCollection"]
    assert metadata.data_biases == rai["rai:dataBiases"]
    assert metadata.data_limitations == rai["rai:dataLimitations"]
    assert metadata.personal_sensitive_information == rai["rai:personalSensitiveInformation"]


def test_croissant__a_run_that_declares_no_licence_creator_or_url_exits_2_naming_them(capsys, formats_run,
                                                                                      tmp_path):
    """The same run saved without its manifest and with no source or licence in its plan."""
    from dataclasses import replace

    from govssl.store import AuditStore

    (run,), _ = AuditStore(formats_run["db"], read_only=True).read_runs([formats_run["run_id"]])
    run.dataset = replace(run.dataset, manifest={}, source="not declared", license="not declared", citation="")
    db = f"sqlite:///{tmp_path / 'bare.db'}"
    AuditStore(db).save(run)
    target = tmp_path / "c.json"
    code, _, err = run_cli(capsys, "export", run.run_id, "--format", "croissant", "--out", str(target), "--db", db)
    err = " ".join(err.split())
    assert code == 2 and f"cannot export run '{run.run_id}' as Croissant" in err
    for key in ("license:", "creator:", "url:", "datePublished:"):
        assert key in err, key
    assert "govssl data manifest --creator" in err
    assert not target.exists() and not list(tmp_path.glob("*.partial"))
