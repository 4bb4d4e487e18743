"""The HTML documents: standalone pages with the Markdown documents' content, autoescaped."""

from __future__ import annotations

import html
import json
import re
from html.parser import HTMLParser

import pytest

from govssl.checks.base import CheckResult
from govssl.policy.model import Decision, RuleOutcome
from govssl.rmf import load_catalog
from govssl.reports._context import RMF_STATUSES
from tests.reports.test_render import (
    HEAD_DP,
    adult_summary,
    attestation,
    decision,
    fairness_result,
    make_run,
    performance_result,
    rendered,
    rmf_entries,
)

VOID = {"meta", "br", "hr", "img", "input", "link", "wbr", "col", "area", "base", "source"}
# elements that load, run or send something
FORBIDDEN = {"script", "link", "img", "iframe", "object", "embed", "base", "form", "svg"}


class _Page(HTMLParser):
    """Tags, attributes and the text of headings of one page; raises on unbalanced tags."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack, self.tags, self.attrs, self.headings = [], [], [], []
        self._heading: list[str] | None = None
        self.doctype = None

    def handle_decl(self, decl):
        self.doctype = decl

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs += [(tag, name, value) for name, value in attrs]
        if tag not in VOID:
            self.stack.append(tag)
        if re.fullmatch(r"h[1-4]", tag):
            self._heading = [tag, ""]

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes {self.stack[-1:]}"
        self.stack.pop()
        if self._heading and tag == self._heading[0]:
            self.headings.append((tag, " ".join(self._heading[1].split())))
            self._heading = None

    def handle_data(self, data):
        if self._heading:
            self._heading[1] += data


def parse(text: str) -> _Page:
    page = _Page()
    page.feed(text)
    page.close()
    assert page.stack == [], f"unclosed: {page.stack}"
    return page


def headings(text: str, level: str) -> list[str]:
    return [t for tag, t in parse(text).headings if tag == level]


def waived_run(tmp_path, waiver=None):
    outcomes = list(decision().outcomes)
    eo = outcomes[1]
    outcomes[1] = RuleOutcome(
        eo.rule_id, eo.check, eo.metric, eo.severity, "waived", eo.observed, eo.subject,
        eo.threshold, eo.message, eo.rmf,
        waiver or {
            "waiver_id": "wv-0007",
            "approver": "Dana Chief Risk Officer",
            "reason": "Pilot with human review of every decision",
            "expires": "2025-03-31",
            "created_at": "2025-01-01T09:00:00Z",
        },
    )
    return make_run(tmp_path, outcome=Decision(tuple(outcomes)))


# ---------------------------------------------------------------- standalone pages


#: links a page may hold to the other documents of its folder
SIBLINGS = {"annex_iv.html": {"datasheet.html", "model_card.html", "rmf_report.html"}}


@pytest.mark.parametrize("name", ["model_card.html", "rmf_report.html", "annex_iv.html"])
def test_html__is_a_standalone_page_without_scripts_or_external_resources(tmp_path, name):
    text = rendered(make_run(tmp_path))[name]
    assert text.startswith("<!DOCTYPE html>\n<html lang=\"en\">")
    page = parse(text)
    assert page.doctype == "DOCTYPE html"
    assert page.tags[:3] == ["html", "head", "meta"]
    assert {"style", "title", "main"} <= set(page.tags)
    assert not FORBIDDEN & set(page.tags)
    for tag, attribute, value in page.attrs:
        assert attribute not in ("src", "srcset", "action") and not attribute.startswith("on")
        if attribute == "href":
            assert value.startswith("#") or value in SIBLINGS.get(name, ()), (tag, value)
    style = text.split("<style>", 1)[1].split("</style>", 1)[0]
    assert "url(" not in style and "@import" not in style
    assert "default-src 'none'" in text


def test_model_card_html__has_the_sections_of_the_markdown(tmp_path):
    docs = rendered(make_run(tmp_path, dp=HEAD_DP, scope="head"))
    markdown_sections = re.findall(r"^## (.+)$", docs["model_card.md"], re.M)
    assert headings(docs["model_card.html"], "h2") == markdown_sections
    assert headings(docs["model_card.html"], "h1") == ["Model card: adult-income-scarf"]
    assert headings(docs["model_card.html"], "h3") == [
        "fairness-equalized-odds fail (block)", "robustness-pgd missing (block)", "Performance", "Fairness"
    ]
    assert headings(docs["model_card.html"], "h4") == ["sex", "race", "sex*race"]


def test_model_card_html__shows_the_same_figures(tmp_path):
    text = rendered(make_run(tmp_path, dp=HEAD_DP, scope="head"))["model_card.html"]
    assert (
        '<tr><td><code>accuracy</code></td><td>all test rows</td><td class="num">0.8473</td>'
        '<td class="num">[0.8417, 0.8528]</td><td class="num">16281</td></tr>'
    ) in text
    assert (
        '<tr><td>Female</td><td class="num">5000</td>'
        '<td class="num">0.11 <span class="ci">[0.1, 0.12]</span></td>'
    ) in text
    assert '<tr><td>epsilon (ε)</td><td class="num">2.987</td></tr>' in text
    assert "the classification head was trained under DP-SGD; the encoder was not" in text
    assert "end-to-end" not in text.lower()
    assert "Census data from 1994; distributions have shifted since." in text
    assert "The robustness check errored and produced no evidence" in text


def test_model_card_html__verdict_banner_and_rule_badges(tmp_path):
    text = rendered(make_run(tmp_path))["model_card.html"]
    assert '<div class="verdict verdict-blocked">' in text and "<strong>BLOCKED</strong>" in text
    row = re.compile(r'<tr><td><code>([\w-]+)</code></td><td>(<span class="badge.*?)</td>')
    rows = dict(row.findall(text))
    badge = '<span class="badge badge-{0}">{0}</span>'
    blocking = ' <span class="note">(blocking)</span>'
    assert rows["performance-min-accuracy"] == badge.format("pass")
    assert rows["fairness-equalized-odds"] == badge.format("fail") + blocking
    assert rows["fairness-demographic-parity"] == badge.format("warn")
    assert rows["robustness-pgd"] == badge.format("missing") + blocking
    for status in ("pass", "fail", "warn", "missing", "waived", "evidenced", "attested", "open"):
        assert f".badge-{status}" in text  # every status has a style


def test_model_card_html__passing_run_has_a_pass_banner(tmp_path):
    outcome = RuleOutcome("r", "performance", "accuracy", "block", "pass", 0.9, "", ">= 0.5", "ok")
    text = rendered(make_run(tmp_path, outcome=Decision((outcome,))))["model_card.html"]
    assert '<div class="verdict verdict-pass">' in text
    assert '<div class="verdict verdict-blocked">' not in text


def test_rmf_report_html__lists_the_72_subcategories_with_the_markdown_statuses(tmp_path):
    attestations = [attestation("GOVERN 1.1", "Legal", "Laws reviewed.")]
    docs = rendered(make_run(tmp_path), attestations=attestations)
    text = docs["rmf_report.html"]
    entry = r'<h4>([A-Z]+ \d+\.\d+) <span class="badge badge-rmf-(\w+)">([\w ,]+)</span>'
    found = re.findall(entry, text)
    entries = [(sid, label) for sid, _, label in found]
    assert entries == rmf_entries(docs["rmf_report.md"])
    assert {(key, label) for _, key, label in found} <= set(RMF_STATUSES.items())
    assert [sid for sid, _ in entries] == [s.id for s in load_catalog()]
    assert ("GOVERN 1.1", "attested") in entries and ("MEASURE 2.7", "open") in entries
    assert headings(text, "h2")[2:] == ["GOVERN", "MAP", "MEASURE", "MANAGE"]
    assert "<li>Legal, 2025-01-02: Laws reviewed.</li>" in text
    quoted = [html.unescape(q) for q in re.findall(r"<blockquote>(.*?)</blockquote>", text)]
    assert quoted == [s.text for s in load_catalog()]
    assert '<tr><th>all</th><th class="num">' in text


# ---------------------------------------------------------------- user text is data, everywhere


@pytest.mark.parametrize("payload", ["{{ 7*7 }}", "{% for x in y %}", "<script>alert(1)</script>"])
def test_render__user_text_is_data_in_every_document(tmp_path, payload):
    run = make_run(
        tmp_path,
        card={"intended_use": f"BEGIN {payload} END", "limitations": [f"LIMIT {payload} END"]},
        results=[
            performance_result(),
            fairness_result({"sex": [payload, "Male"], "race": ["White", "Black"]}),
        ],
        outcome=decision(worst_group=f"sex={payload}"),
    )
    docs = rendered(run, attestations=[attestation("GOVERN 1.1", "Legal", f"ATTEST {payload} END")])
    # evidence.json has no plan statements; the datasheet is about the data, not the model
    documents = [name for name in docs if name != "evidence.json" and not name.startswith("datasheet.")]
    where = {
        "BEGIN": documents,
        "LIMIT": documents,
        "sex=": [name for name in docs if not name.startswith("datasheet.")],
        "ATTEST": ["rmf_report.md", "rmf_report.html"],
    }
    escaped = html.escape(payload, quote=False)
    for marker, names in where.items():
        for name in names:
            text = docs[name]
            if name.endswith(".json"):
                text = json.dumps(json.loads(text), ensure_ascii=False)
            if name.endswith(".md"):  # what a Markdown viewer that passes raw HTML through shows
                text = markdown_to_html(text)
            shown = payload if name.endswith(".json") else escaped
            expected = f"{marker}{shown}" if marker == "sex=" else f"{marker} {shown} END"
            assert expected in text, (name, marker)
    for name, text in docs.items():
        assert "49 END" not in text and "BEGIN  END" not in text, name
    for name in ("model_card.html", "rmf_report.html", "datasheet.html"):
        assert "<script" not in docs[name].lower()
    for name in ("model_card.md", "rmf_report.md", "datasheet.md"):
        assert "<script" not in markdown_to_html(docs[name]).lower()
    assert f"<tr><td>{escaped}</td>" in docs["model_card.html"]  # the group's row


def markdown_to_html(text: str) -> str:
    """CommonMark with raw HTML passed through (the most permissive viewer), tables on."""
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark", {"html": True}).enable("table").render(text)


@pytest.mark.parametrize("payload", [
    "[click](javascript:alert(1))", "![pixel](https://example.org/p.png)", "<https://example.org>",
    "&lt;b&gt; &#60;i&#62;", "<!-- hidden", "<img src=x onerror=alert(1)>",
])
def test_render__markdown_user_text_makes_no_link_image_html_or_entity(tmp_path, payload):
    run = make_run(tmp_path, card={"intended_use": f"BEGIN {payload} END",
                                   "limitations": [f"LIMIT {payload} END"]})
    docs = rendered(run, attestations=[attestation("GOVERN 1.1", "Legal", f"ATTEST {payload} END")])
    for name in ("model_card.md", "rmf_report.md"):
        shown = markdown_to_html(docs[name])
        assert not re.search(r"<(a|img|i|b)\b", shown), name
        assert "<!--" not in shown
        for marker in ("BEGIN", "LIMIT", "ATTEST") if name == "rmf_report.md" else ("BEGIN", "LIMIT"):
            assert f"{marker} {html.escape(payload, quote=False)} END" in shown, (name, marker)


def test_render__a_code_fence_in_user_text_does_not_swallow_the_document(tmp_path):
    run = make_run(tmp_path, card={"intended_use": "Line one\n```\nLine three"})
    shown = markdown_to_html(rendered(run)["model_card.md"])
    assert "<pre>" not in shown and "<code>" in shown  # code spans of identifiers, no code block
    assert "<h2>Intended use</h2>" in shown or "Intended use" in shown


def test_render__markup_in_user_text_is_escaped_in_html_only(tmp_path):
    run = make_run(
        tmp_path,
        card={"intended_use": "Scores <50K & >50K earners; \"quoted\" 'text'"},
        dataset=adult_summary(name='adult" onload="x'),
    )
    docs = rendered(run)
    escaped = "Scores &lt;50K &amp; &gt;50K earners; &#34;quoted&#34; &#39;text&#39;"
    assert escaped in docs["model_card.html"]
    assert 'adult" onload' not in docs["model_card.html"] + docs["rmf_report.html"]
    assert "Scores <50K & >50K earners" in docs["model_card.md"]


# ---------------------------------------------------------------- waivers are visible everywhere


def test_render__waiver_shows_approver_reason_and_expiry_in_every_document(tmp_path):
    docs = rendered(waived_run(tmp_path))
    facts = ("Dana Chief Risk Officer", "Pilot with human review of every decision", "2025-03-31")
    for name, text in docs.items():
        if name.startswith("datasheet."):  # about the data: no release decision in it
            continue
        for fact in facts:
            assert fact in text, (name, fact)
    line = (
        "- `fairness-equalized-odds`: approved by Dana Chief Risk Officer, expires 2025-03-31; "
        "reason: Pilot with human review of every decision (waiver `wv-0007`"
    )
    assert line in docs["model_card.md"]
    assert (
        "  - waived: `fairness-equalized-odds`, approved by Dana Chief Risk Officer"
        in docs["rmf_report.md"]
    )
    for name in ("model_card.html", "rmf_report.html"):
        assert (
            "waived: <code>fairness-equalized-odds</code>, approved by "
            "<strong>Dana Chief Risk Officer</strong>, expires <strong>2025-03-31</strong>; "
            "reason: Pilot with human review of every decision"
        ) in docs[name]
    limitations = [
        item["description"]
        for item in json.loads(docs["model_card.json"])["considerations"]["limitations"]
    ]
    [waived] = [item for item in limitations if "waived" in item]
    assert waived.startswith(
        "Rule fairness-equalized-odds failed and was waived (approver: Dana Chief Risk Officer; "
        "reason: Pilot with human review of every decision; expires: 2025-03-31; waiver_id: wv-0007"
    )


def test_render__waiver_with_missing_fields_says_so(tmp_path):
    docs = rendered(waived_run(tmp_path, waiver={"approver": "J. Doe"}))
    assert "approved by J. Doe, expires not recorded; reason: not recorded" in docs["model_card.md"]
    assert "expires <strong>not recorded</strong>" in docs["model_card.html"]


def test_render__skipped_check_is_a_caveat_in_every_model_card(tmp_path):
    skipped = CheckResult("robustness", "skipped", (), "no attack configured")
    docs = rendered(make_run(tmp_path, results=[performance_result(), skipped]))
    caveat = "The robustness check was skipped: no attack configured"
    for name in ("model_card.md", "model_card.html", "model_card.json", "rmf_report.html"):
        assert caveat in docs[name], name
