"""`govssl serve` without a browser: the start-up refusals through the CLI, and the pages over a
store of synthetic runs (written through the store API) through Starlette's test client."""

from __future__ import annotations

import dataclasses
import io
import json
import re
import sqlite3
import zipfile

import pytest

from govssl.records import Waiver
from govssl.store import AuditStore
from tests.conftest import fast_plan_data, run_cli
from tests.store.test_store import make_run

# starlette.testclient runs on httpx and suggests its successor; httpx is what the test extra installs
pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")

TOKEN = "s3cret-token-0123456789"
PASSED = "20240501T120000Z-aaaaaa"
BLOCKED = "20240502T120000Z-bbbbbb"


@pytest.fixture
def store(tmp_path):
    """Two runs: one whose fairness rule failed (blocked), one passing, with a <script> plan name."""
    db = f"sqlite:///{tmp_path / 'audit.db'}"
    s = AuditStore(db)
    blocked = make_run(tmp_path, BLOCKED, created_at="2024-05-02T12:00:00+00:00", non_finite=False)
    blocked = dataclasses.replace(blocked, plan_name="<script>alert('plan')</script>")
    passed = make_run(tmp_path, PASSED, non_finite=False)
    outcomes = tuple(dataclasses.replace(o, status="pass") if o.status == "fail" else o
                     for o in passed.decision.outcomes)
    passed.decision = dataclasses.replace(passed.decision, outcomes=outcomes)
    s.save(passed)
    s.save(blocked)
    return {"db": db, "path": tmp_path / "audit.db", "folder": tmp_path, "blocked": blocked}


def client(db: str, token: str | None = None):
    from starlette.testclient import TestClient

    from govssl.web import StoreView, create_app

    return TestClient(create_app(StoreView(db), token=token))


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "example.org", "::"])
def test_serve__a_non_loopback_host_without_a_token_refuses_to_start(capsys, tmp_path, host, monkeypatch):
    monkeypatch.delenv("GOVSSL_SERVE_TOKEN", raising=False)
    code, _, err = run_cli(capsys, "serve", "--db", f"sqlite:///{tmp_path / 'none.db'}", "--host", host)
    assert code == 2
    assert f"--host {host}: not a loopback address" in err and "--token" in err
    assert not (tmp_path / "none.db").exists()


def test_serve__a_short_token_and_a_missing_store_exit_2(capsys, tmp_path):
    code, _, err = run_cli(capsys, "serve", "--host", "0.0.0.0", "--token", "short")
    assert code == 2 and "--token: must be at least 16 characters" in err
    code, _, err = run_cli(capsys, "serve", "--db", f"sqlite:///{tmp_path / 'none.db'}")
    assert code == 2 and "there is no audit store" in err
    assert not (tmp_path / "none.db").exists()


def test_serve__a_port_in_use_exits_2_naming_it(capsys, store):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        code, _, err = run_cli(capsys, "serve", "--db", store["db"], "--port", str(port))
    assert code == 2 and f"--port: cannot listen on 127.0.0.1:{port}" in err


def test_pages__csp_on_every_answer_and_no_external_url(store):
    c = client(store["db"])
    for url in ["/", f"/runs/{BLOCKED}", f"/diff?a={PASSED}&b={BLOCKED}", "/integrity",
                f"/models/{'cd' * 32}", "/runs/20990101T000000Z-000000", "/static/app.css"]:
        r = c.get(url)
        csp = r.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src" not in csp and "'unsafe-inline'" not in csp, url
        assert r.headers["x-content-type-options"] == "nosniff"
        if r.headers["content-type"].startswith("text/html"):
            assert "<script" not in r.text, url
            assert not re.search(r'(src|href|action)="(https?:)?//', r.text), url


def test_runs__filters_by_decision_plan_model_and_date(store):
    c = client(store["db"])
    assert {PASSED, BLOCKED} <= set(re.findall(r'href="/runs/([^"]+)"', c.get("/").text))
    blocked = c.get("/?decision=blocked").text
    assert BLOCKED in blocked and PASSED not in blocked
    assert PASSED in c.get("/?plan=adult-income").text and BLOCKED not in c.get("/?plan=adult-income").text
    assert BLOCKED in c.get("/?since=2024-05-02").text and PASSED not in c.get("/?since=2024-05-02").text
    assert "No run matches" in c.get("/?model=ff").text
    assert c.get("/?since=yesterday").status_code == 400


def test_run_page__user_text_is_escaped(store):
    page = client(store["db"]).get(f"/runs/{BLOCKED}").text
    assert "&lt;script&gt;alert(&#39;plan&#39;)&lt;/script&gt;" in page
    assert "<script>" not in page
    assert "BLOCKED" in page and "fairness-equalized-odds" in page
    assert "The release is blocked because 1 blocking rule(s)" in page
    assert "Dana Reviewer" in page  # attestations with who attested


def test_documents__served_while_their_sha256_matches_and_refused_once_changed(store):
    c = client(store["db"])
    page = c.get(f"/runs/{BLOCKED}").text
    links = re.findall(r'class="doc-link" href="([^"]+)"', page)
    card = next(link for link in links if link.endswith("model_card.md"))
    r = c.get(card)
    assert r.status_code == 200 and "équité" in r.text
    assert "sandbox" in r.headers["content-security-policy"]
    (store["folder"] / f"{BLOCKED}-model_card.md").write_text("# forged\n", encoding="utf-8")
    r = c.get(card)
    assert r.status_code == 503 and "changed on disk" in r.text and "forged" not in r.text
    assert c.get(f"/runs/{BLOCKED}/documents/../../etc/passwd").status_code == 404


def test_export__is_the_zip_govssl_export_writes(store, tmp_path, capsys):
    r = client(store["db"]).get(f"/runs/{PASSED}/export.zip")
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    code, _, _ = run_cli(capsys, "export", PASSED, "--out", str(tmp_path / "cli.zip"), "--db", store["db"])
    assert code == 0
    with zipfile.ZipFile(io.BytesIO(r.content)) as web, zipfile.ZipFile(tmp_path / "cli.zip") as cli:
        assert web.namelist() == cli.namelist()
        assert all(web.read(n) == cli.read(n) for n in cli.namelist())


def test_waiver__turns_the_decision_and_shows_approver_and_expiry(store):
    AuditStore(store["db"]).add_waiver(Waiver(
        waiver_id="w-1", rule_id="fairness-equalized-odds", approver="Chief <Risk> Officer",
        reason="pilot only", expires="2099-12-31", created_at="", run_id=BLOCKED,
    ))
    c = client(store["db"])
    waived = c.get("/?decision=waived").text
    assert BLOCKED in waived and BLOCKED not in c.get("/?decision=blocked").text
    row = re.search(rf"{BLOCKED}</a></td>.*?</tr>", waived, re.S).group(0)
    assert "1 waived" in row and row.endswith("<td>0</td>\n</tr>")  # no rule blocks it now
    page = c.get(f"/runs/{BLOCKED}").text
    assert "Chief &lt;Risk&gt; Officer" in page and "2099-12-31" in page and "PASS" in page


def test_integrity__a_changed_row_shows_the_failure_and_no_data(store):
    c = client(store["db"])
    assert "Verified" in c.get("/integrity").text
    with sqlite3.connect(store["path"]) as conn:
        conn.execute("UPDATE measurements SET value_json = '0.01' WHERE metric = 'equalized_odds_difference'")
    conn.close()
    r = c.get(f"/runs/{BLOCKED}")
    assert r.status_code == 503 and "integrity-banner" in r.text and "fairness-equalized-odds" not in r.text
    r = c.get("/integrity")
    assert r.status_code == 503 and "Integrity failure" in r.text and "changed" in r.text
    assert BLOCKED not in c.get("/").text


def test_token__required_on_every_request_compared_whole(store):
    c = client(store["db"], token=TOKEN)
    assert c.get("/").status_code == 401
    assert c.get("/static/app.css").status_code == 401
    assert c.get("/", headers={"Authorization": f"Bearer {TOKEN[:-1]}"}).status_code == 401
    assert c.get("/", headers={"Authorization": f"Bearer {TOKEN}x"}).status_code == 401
    assert c.get("/", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    first = c.get(f"/?token={TOKEN}")  # a browser's first visit: the token moves into a cookie
    assert first.status_code == 200 and "HttpOnly" in first.headers["set-cookie"]
    assert c.get("/").status_code == 200


def test_serve__never_writes_to_the_store(store):
    before = store["path"].read_bytes()
    c = client(store["db"])
    for url in ["/", f"/runs/{BLOCKED}", "/integrity?full=1", f"/runs/{BLOCKED}/export.zip"]:
        c.get(url)
    assert store["path"].read_bytes() == before


def test_documents__a_file_not_on_this_machine_is_named_not_served(store):
    c = client(store["db"])
    link = next(link for link in re.findall(r'class="doc-link" href="([^"]+)"', c.get(f"/runs/{BLOCKED}").text)
                if link.endswith("model_card.md"))
    (store["folder"] / f"{BLOCKED}-model_card.md").unlink()
    r = c.get(link)
    assert r.status_code == 404 and "is not on this machine" in r.text
    r = c.get(f"/runs/{BLOCKED}/export.zip")
    assert r.status_code == 404 and "is not on this machine" in r.text


def test_runs_and_model_history__are_paged(store, monkeypatch):
    monkeypatch.setattr("govssl.web._app.PAGE_SIZE", 1)
    c = client(store["db"])
    first, second = c.get("/").text, c.get("/?page=2").text
    assert BLOCKED in first and PASSED not in first and "page 1 of 2" in first
    assert PASSED in second and BLOCKED not in second
    history = c.get(f"/models/{'cd' * 32}?page=2").text
    assert PASSED in history and "2 audit(s)" in history and "page 2 of 2" in history
    assert c.get("/?page=two").status_code == 400


@pytest.fixture(scope="module")
def monitored(tmp_path_factory, adult_csvs):
    """A real passing audit of a small Adult model and two real `govssl monitor` results of it:
    the audit's own test rows (pass) and its rows aged 50 or over (blocked by drift), the
    batches in a folder whose name holds markup."""
    import pandas as pd
    import yaml

    from tests.web.conftest import POLICY, cli

    folder = tmp_path_factory.mktemp("web-monitor")
    policy = folder / "lenient.yaml"
    policy.write_text(yaml.safe_dump({**POLICY, "policy": "web-lenient", "rules": [POLICY["rules"][0]]}))
    plan = folder / "plan.yaml"
    plan.write_text(yaml.safe_dump(fast_plan_data(*adult_csvs)))
    db = f"sqlite:///{folder / 'audit.db'}"
    code, out, err = cli("audit", str(plan), "--policy", str(policy), "--db", db, "--out", str(folder / "out"),
                         "--quiet", "--json")
    assert code == 0, err
    run_id = json.loads(out)["run_id"]
    batches = folder / "<em>batches"
    batches.mkdir()
    test = pd.read_csv(adult_csvs[1])
    test.sample(1500, random_state=1).to_csv(batches / "same.csv", index=False)
    test[test["age"] >= 50].sample(1500, random_state=2, replace=True).to_csv(batches / "older.csv", index=False)
    results = {}
    for name in ("same", "older"):
        code, out, err = cli("monitor", run_id, "--data", str(batches / f"{name}.csv"), "--db", db, "--json")
        assert code in (0, 1), err
        results[name] = json.loads(out)
    assert results["same"]["decision"]["verdict"] == "pass"
    assert results["older"]["decision"]["verdict"] == "blocked"
    model = json.loads(cli("show", run_id, "--db", db, "--json")[1])["training"]["model_sha256"]
    return {"db": db, "run": run_id, "model": model, **results}


def _monitoring_rows(html: str) -> list[str]:
    return re.findall(r'<tr class="monitoring-row".*?</tr>', html, re.S)


def test_monitoring__results_on_the_runs_list_filterable_by_decision_and_model(monitored):
    c = client(monitored["db"])
    rows = _monitoring_rows(c.get("/").text)
    assert len(rows) == 2 and "2 of 2 monitoring result(s)" in c.get("/").text
    older, same = rows  # newest first
    assert 'data-decision="blocked"' in older and 'data-decision="pass"' in same
    assert f'href="/runs/{monitored["run"]}#monitoring"' in same and ">1500<" in same
    assert monitored["model"][:16] in same
    blocked = _monitoring_rows(c.get("/?decision=blocked").text)
    assert len(blocked) == 1 and "older.csv" in blocked[0]
    assert _monitoring_rows(c.get("/?decision=pass").text)[0].count("same.csv") == 1
    assert not _monitoring_rows(c.get("/?decision=waived").text)
    assert len(_monitoring_rows(c.get(f"/?model={monitored['model'][:10]}").text)) == 2
    assert "No monitoring result matches" in c.get("/?model=ffff").text


def test_monitoring__run_page_and_model_history_show_the_results_with_verdict(monitored):
    c = client(monitored["db"])
    page = c.get(f"/runs/{monitored['run']}").text
    rows = _monitoring_rows(page)
    assert len(rows) == 2 and "Monitoring (2)" in page
    older, same = rows
    failing = [o["rule_id"] for o in monitored["older"]["decision"]["outcomes"]
               if o["status"] in ("fail", "missing", "inconclusive") and o["severity"] == "block"]
    assert failing and all(rule in older for rule in failing)
    assert ">blocked<" in older and ">pass<" in same
    assert monitored["same"]["batch"]["sha256"][:16] in same and ">1500<" in same
    history = c.get(f"/models/{monitored['model']}").text
    assert "1 audit(s) and 2 monitoring result(s)" in history
    kinds = re.findall(r"<tr class=\"(run|monitoring)-row\"><td>(audit|monitoring)</td>", history)
    assert [k for _, k in kinds] == ["monitoring", "monitoring", "audit"]  # newest first, in time order
    assert ">blocked<" in history and "older.csv" in history


def test_monitoring__user_text_in_the_batch_path_is_escaped(monitored):
    c = client(monitored["db"])
    for url in ["/", f"/runs/{monitored['run']}", f"/models/{monitored['model']}"]:
        html = c.get(url).text
        assert "&lt;em&gt;batches" in html, url
        assert "<em>batches" not in html, url
