"""`govssl report RUN --format pdf`: the model card, the NIST AI RMF report and the datasheet as
PDF. Read back as a person would: every page rasterised with poppler's pdftoppm (and checked not
blank), the text extracted with pypdf (verdict on page 1, rule ids, run id and model sha256 in
every page's footer, page numbers), the chart found on its page by its colour. The PDFs are
artifacts of the run in the chain (`verify` exit 0) and in `export`; a chart changed on disk is
exit 3 and a missing Pango is exit 2 naming what to install, both with nothing written."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from govssl.checks.base import CheckResult, Measurement
from govssl.records import Artifact
from govssl.store import AuditStore
from tests.conftest import REPO, fast_plan_data, run_cli
from tests.store.test_store import make_run

pypdf = pytest.importorskip("pypdf", reason="pypdf (the test extra) reads the PDFs back")
Image = pytest.importorskip("PIL.Image")
PDFTOPPM = shutil.which("pdftoppm")
needs_pdftoppm = pytest.mark.skipif(PDFTOPPM is None, reason="pdftoppm (Debian poppler-utils; .ci/run installs it) "
                                                             "rasterises the pages")

RUN_ID = "20240501T090000Z-0000a1"
PDFS = ("model_card.pdf", "rmf_report.pdf", "datasheet.pdf", "annex_iv.pdf")
MAGENTA = (255, 0, 255)
# a chart as the robustness check leaves it: an SVG file in the run folder, recorded as an artifact
CHART = """<svg xmlns="http://www.w3.org/2000/svg" width="400" height="200" viewBox="0 0 400 200">
<rect x="0" y="0" width="400" height="200" fill="#ffffff"/>
<rect x="40" y="40" width="320" height="120" fill="#ff00ff"/>
</svg>
"""


def one_line(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture
def stored(tmp_path):
    """A blocked run (fairness-equalized-odds fails) whose robustness check measured and drew
    robustness.svg, saved in a SQLite store with its documents and chart on disk."""
    run = make_run(tmp_path, RUN_ID, "2024-05-01T09:00:00+00:00", non_finite=False)
    robustness = CheckResult(
        check="robustness", status="measured", seconds=0.5,
        measurements=(Measurement("robustness", "robust_accuracy", 0.71, "eps=0.1", 0.69, 0.73, 2000),),
    )
    run = dataclasses.replace(run, results=[*run.results[:2], robustness])
    folder = Path(run.out_dir)
    folder.mkdir(parents=True)
    (folder / "robustness.svg").write_text(CHART, encoding="utf-8")
    (folder / "model_card.md").write_text("# Model card\nstored\n", encoding="utf-8")
    run.artifacts = [run.artifacts[0], Artifact.of("chart", folder / "robustness.svg"),
                     Artifact.of("model_card", folder / "model_card.md")]
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    store = AuditStore(url)
    store.save(run)
    store.close()
    return run, url


def rasterise(pdf: Path, folder: Path) -> list[Path]:
    """Every page of ``pdf`` as a PNG at 40 dpi, through pdftoppm."""
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run([PDFTOPPM, "-r", "40", "-png", str(pdf), str(folder / pdf.stem)], check=True, timeout=300)
    return sorted(folder.glob(f"{pdf.stem}-*.png"))


def body_ink(png: Path) -> float:
    """The share of the pixels between the top and bottom margins (20 and 22 mm of 297) that
    are not white: the page's own content, not its running header and footer."""
    with Image.open(png) as image:
        width, height = image.size
        body = image.convert("L").crop((0, int(height * 20 / 297), width, int(height * (297 - 22) / 297)))
        histogram = body.histogram()
    return 1 - sum(histogram[245:]) / sum(histogram)


def has_colour(png: Path, colour: tuple[int, int, int], at_least: int = 200) -> bool:
    with Image.open(png) as image:
        pixels = image.convert("RGB").getdata()
        near = sum(1 for p in pixels if all(abs(a - b) <= 25 for a, b in zip(p, colour)))
    return near >= at_least


def orange_pixels(png: Path) -> int:
    """Pixels of matplotlib's second colour (#ff7f0e), anti-aliased on white included; no colour
    of the documents' own style comes near it (the warn badge's #d4a72c has green 167)."""
    with Image.open(png) as image:
        return sum(1 for r, g, b in image.convert("RGB").getdata() if r > 200 and 100 < g < 150 and b < 90)


@needs_pdftoppm
def test_report_pdf__three_documents_with_verdict_footer_charts_recorded_and_exported(capsys, stored, tmp_path):
    run, url = stored
    code, out, err = run_cli(capsys, "report", RUN_ID, "--format", "pdf", "--db", url)
    assert code == 0, (out, err)
    (new,) = (Path(run.out_dir) / "reports").iterdir()
    assert sorted(p.name for p in new.iterdir()) == sorted(PDFS)
    assert "recorded 4 document(s)" in one_line(out)

    model_sha256 = run.training.model_sha256
    texts = {}
    for name in PDFS:
        pdf = new / name
        assert pdf.read_bytes().startswith(b"%PDF-")
        reader = pypdf.PdfReader(pdf)
        pages = [page.extract_text() for page in reader.pages]
        n = len(pages)
        assert n >= 2, f"{name}: {n} page(s)"
        assert "Verdict: BLOCKED" in pages[0], name  # the verdict on page 1 (and at the top of every page)
        for i, text in enumerate(pages, 1):
            flat = one_line(text)
            assert f"run {RUN_ID}" in flat and f"model sha256 {model_sha256}" in flat, (name, i)
            assert f"page {i} of {n}" in flat, (name, i)
            assert "Verdict: BLOCKED" in flat, (name, i)
        texts[name] = one_line(" ".join(pages))
        pngs = rasterise(pdf, tmp_path / "png")
        assert len(pngs) == n
        for png in pngs:
            assert body_ink(png) > 0.001, f"{png.name} is blank"  # a line of text is about 0.002
    for rule in ("performance-accuracy", "fairness-equalized-odds", "robustness-pgd"):
        assert rule in texts["model_card.pdf"]
    assert "fairness-equalized-odds" in texts["rmf_report.pdf"] and "MEASURE 2.11" in texts["rmf_report.pdf"]
    assert "Datasheet: adult" in texts["datasheet.pdf"]
    assert "Annex IV" in texts["annex_iv.pdf"] and "Art. 15" in texts["annex_iv.pdf"]

    # the chart is drawn on the page that says "Chart: robustness", and nowhere else
    reader = pypdf.PdfReader(new / "model_card.pdf")
    chart_pages = [i for i, page in enumerate(reader.pages, 1) if "Chart: robustness" in page.extract_text()]
    assert len(chart_pages) == 1
    pngs = rasterise(new / "model_card.pdf", tmp_path / "chart")
    assert [i for i, png in enumerate(pngs, 1) if has_colour(png, MAGENTA)] == chart_pages

    # recorded in the chain: verify passes and hashes them; show lists them; export carries them
    code, out, err = run_cli(capsys, "verify", "--db", url, "--json")
    assert code == 0, (out, err)
    shown = json.loads(run_cli(capsys, "show", RUN_ID, "--db", url, "--json")[1])
    recorded = {a["kind"]: a for a in shown["artifacts"]}
    for kind, name in (("model_card_pdf", "model_card.pdf"), ("rmf_report_pdf", "rmf_report.pdf"),
                       ("datasheet_pdf", "datasheet.pdf"), ("annex_iv_pdf", "annex_iv.pdf")):
        assert recorded[kind]["path"] == str(new / name)
        assert recorded[kind]["sha256"] == hashlib.sha256((new / name).read_bytes()).hexdigest()
    target = tmp_path / "run.zip"
    code, out, err = run_cli(capsys, "export", RUN_ID, "--out", str(target), "--db", url)
    assert code == 0, (out, err)
    with zipfile.ZipFile(target) as archive:
        sums = archive.read(f"{RUN_ID}/SHA256SUMS").decode()
        for name in PDFS:
            entry = f"documents/reports/{new.name}/{name}"
            assert archive.read(f"{RUN_ID}/{entry}") == (new / name).read_bytes()
            assert f"{hashlib.sha256((new / name).read_bytes()).hexdigest()}  {entry}" in sums

    # a PDF changed after it was recorded is caught like any artifact
    (new / "datasheet.pdf").write_bytes((new / "datasheet.pdf").read_bytes() + b"%")
    code, out, err = run_cli(capsys, "verify", "--db", url)
    assert code == 3 and "datasheet.pdf" in one_line(out + err)


def test_report_pdf__a_waiver_turns_the_verdict_on_page_one(capsys, stored):
    run, url = stored
    code, out, err = run_cli(capsys, "waive", "--run", RUN_ID, "--rule", "fairness-equalized-odds", "--approver",
                             "Dana Reviewer", "--reason", "gap accepted for the pilot", "--expires", "2999-01-01",
                             "--db", url)
    assert code == 0, (out, err)
    out_dir = Path(run.out_dir).parent / "pdf"
    code, out, err = run_cli(capsys, "report", RUN_ID, "--format", "pdf", "--out", str(out_dir), "--db", url)
    assert code == 0, (out, err)
    first = one_line(pypdf.PdfReader(out_dir / "model_card.pdf").pages[0].extract_text())
    assert "Verdict: PASS" in first and "BLOCKED" not in first


def test_report_pdf__a_chart_changed_on_disk_is_exit_3_and_writes_nothing(capsys, stored):
    run, url = stored
    chart = Path(run.out_dir) / "robustness.svg"
    chart.write_text(CHART.replace("#ff00ff", "#00ff00"), encoding="utf-8")
    before = AuditStore(url, read_only=True).verify().head_seq
    code, out, err = run_cli(capsys, "report", RUN_ID, "--format", "pdf", "--db", url)
    assert code == 3, (out, err)
    assert str(chart) in one_line(err) and "sha256" in err
    assert not (Path(run.out_dir) / "reports").exists() or not any((Path(run.out_dir) / "reports").iterdir())
    assert AuditStore(url, read_only=True).verify().head_seq == before  # no rendering recorded


# cffi loads Pango by name when weasyprint is imported; refusing it is what a machine without
# libpango-1.0-0 does. The real govssl CLI runs in a fresh interpreter.
_WITHOUT_PANGO = """
import sys
import cffi

real = cffi.FFI.dlopen
def dlopen(self, name, *args, **kwargs):
    if "pango" in str(name):
        raise OSError(f"cannot load library {name!r}: {name}: cannot open shared object file: No such file or directory")
    return real(self, name, *args, **kwargs)
cffi.FFI.dlopen = dlopen
from govssl.cli import main
main(sys.argv[1:])
"""


def test_report_pdf__without_pango_is_exit_2_naming_what_to_install(stored, tmp_path):
    run, url = stored
    before = AuditStore(url, read_only=True).verify().head_seq
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", _WITHOUT_PANGO, "report", RUN_ID, "--format", "pdf", "--db", url],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env, check=False)
    assert done.returncode == 2, (done.stdout, done.stderr)
    message = one_line(done.stderr)
    assert "Traceback" not in done.stderr and "could not import" not in done.stdout + done.stderr
    assert "Pango" in message and "apt-get install libpango-1.0-0" in message and "pango" in message.split("(", 1)[1]
    assert not (Path(run.out_dir) / "reports").exists()
    assert AuditStore(url, read_only=True).verify().head_seq == before


def test_render_pdf__a_template_linking_anything_else_is_refused_and_writes_nothing(stored, tmp_path):
    from govssl.errors import TemplateError
    from govssl.reports import render

    run, _ = stored
    templates = tmp_path / "templates"
    templates.mkdir()
    shipped = (REPO / "templates" / "model_card.html.j2").read_text(encoding="utf-8")
    (templates / "model_card.html.j2").write_text(
        shipped.replace("{% block body %}", '{% block body %}<img src="file:///etc/hostname" alt="x">', 1),
        encoding="utf-8",
    )
    folder = tmp_path / "docs"
    folder.mkdir()
    with pytest.raises(TemplateError) as info:
        render(run, folder, template_dir=templates, formats=["pdf"])
    assert "model_card.pdf" in str(info.value) and "file:///etc/hostname" in str(info.value)
    assert list(folder.iterdir()) == []


@pytest.mark.slow
@needs_pdftoppm
def test_report_pdf__of_a_real_audit_embeds_its_robustness_chart(capsys, adult_csvs, write_plan, tmp_path):
    """A small real audit with the robustness check: its matplotlib chart (orange is the colour
    of a group's line) is drawn on the model card's chart page and on no other."""
    plan = fast_plan_data(*adult_csvs)
    plan["checks"]["robustness"] = {}
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    audited, out, err = run_cli(capsys, "audit", str(write_plan(plan)), "--out", str(tmp_path / "out"), "--db", url,
                                "--quiet")
    assert audited in (0, 1), (out, err)
    (run_id,) = [r["run_id"] for r in AuditStore(url, read_only=True).find_runs()]
    code, out, err = run_cli(capsys, "report", run_id, "--format", "pdf", "--out", str(tmp_path / "pdf"), "--db", url)
    assert code == 0, (out, err)
    pdf = tmp_path / "pdf" / "model_card.pdf"
    reader = pypdf.PdfReader(pdf)
    chart_pages = [i for i, page in enumerate(reader.pages, 1) if "Chart: robustness" in page.extract_text()]
    assert len(chart_pages) == 1
    first = one_line(reader.pages[0].extract_text())
    assert f"Verdict: {'PASS' if audited == 0 else 'BLOCKED'}" in first
    assert run_id in first
    folder = tmp_path / "png"
    folder.mkdir()
    subprocess.run([PDFTOPPM, "-r", "100", "-png", str(pdf), str(folder / "p")], check=True, timeout=300)
    pngs = sorted(folder.glob("p-*.png"))
    assert len(pngs) == len(reader.pages)
    orange = [i for i, png in enumerate(pngs, 1) if orange_pixels(png) >= 30]
    assert orange == chart_pages
    code, out, err = run_cli(capsys, "verify", "--db", url)
    assert code == 0, (out, err)
