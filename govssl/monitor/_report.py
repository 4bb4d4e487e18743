"""monitor-report: a model's (or a run's) monitoring results over time, in Markdown and HTML with
SVG charts (matplotlib): drift per test, estimated against realised accuracy, per-group
selection rates. Rendered from ``templates/monitoring_report.{md,html}.j2`` in the same sandboxed
Jinja environment as the audit documents (autoescaped HTML, literal Markdown).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

__all__ = ["write_monitoring_report", "report_context"]

FAMILIES = ("feature_drift", "prediction_drift", "embedding_drift", "ood", "group_mix")


def _find(result, check: str, metric: str, subject: str | None = None):
    return [m for r in result.results if r.check == check for m in r.measurements
            if m.metric == metric and (subject is None or m.subject == subject)]


def report_context(results: list, subject: str) -> dict:
    rows = []
    for i, r in enumerate(results, start=1):
        p = {f: min((m.value for m in _find(r, f, "drift_p_value")), default=None) for f in FAMILIES}
        est = (_find(r, "performance_estimate", "estimated_accuracy") or [None])[0]
        realised = (_find(r, "performance_estimate", "realised_accuracy_drop") or [None])[0]
        rows.append({
            "index": i, "monitor_id": r.monitor_id, "run_id": r.run_id, "created_at": r.created_at,
            "batch": Path(r.batch_path).name, "rows": r.n_rows, "verdict": r.decision.verdict,
            "blocking": [o.rule_id for o in r.decision.blockers], "p": p,
            "estimated": est.value if est else None, "est_low": est.ci_low if est else None,
            "est_high": est.ci_high if est else None,
            "realised": realised.details.get("realised_accuracy") if realised else None,
            "reference": est.details.get("reference_accuracy") if est and "reference_accuracy" in est.details else
            (_find(r, "performance_estimate", "estimated_accuracy_drop")[0].details.get("reference_accuracy")
             if _find(r, "performance_estimate", "estimated_accuracy_drop") else None),
        })
    return {"subject": subject, "rows": rows, "families": FAMILIES, "model_sha256": results[0].model_sha256,
            "run": {"govssl_version": results[-1].govssl_version}}


def _svg(figure) -> str:
    out = io.StringIO()
    figure.savefig(out, format="svg", metadata={"Date": None}, bbox_inches="tight")
    return out.getvalue()


def _charts(results: list, ctx: dict) -> dict[str, str]:
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    x = [row["index"] for row in ctx["rows"]]
    charts = {}
    with matplotlib.rc_context({"svg.hashsalt": "govssl", "svg.fonttype": "path", "font.size": 9}):
        fig = Figure(figsize=(7.5, 3.6))
        FigureCanvasAgg(fig)
        ax = fig.subplots()
        for i, family in enumerate(FAMILIES):
            ys = [max(row["p"][family], 1e-16) if row["p"][family] is not None else np.nan for row in ctx["rows"]]
            ax.plot(x, ys, marker="o", color=f"C{i}", label=family.replace("_", " "))
        ax.axhline(0.05, color="#c0392b", linestyle="--", linewidth=1.2, label="0.05")
        ax.set_yscale("log")
        ax.set_xlabel("batch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("smallest Holm-adjusted p-value")
        ax.set_title("Drift per test (below the line: an alarm)")
        ax.grid(True, color="#dddddd", linewidth=0.6)
        ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False, fontsize=8)
        charts["drift.svg"] = _svg(fig)

        fig = Figure(figsize=(7.5, 3.6))
        FigureCanvasAgg(fig)
        ax = fig.subplots()
        est = [row["estimated"] for row in ctx["rows"]]
        low = [row["est_low"] if row["est_low"] is not None else np.nan for row in ctx["rows"]]
        high = [row["est_high"] if row["est_high"] is not None else np.nan for row in ctx["rows"]]
        ax.fill_between(x, low, high, color="C0", alpha=0.2, label="estimated, 95% interval")
        ax.plot(x, est, marker="o", color="C0", label="estimated (CBPE)")
        realised = [row["realised"] if row["realised"] is not None else np.nan for row in ctx["rows"]]
        if any(np.isfinite(realised)):
            ax.plot(x, realised, marker="s", linestyle="none", color="black", label="realised (labels)")
        reference = next((row["reference"] for row in ctx["rows"] if row["reference"] is not None), None)
        if reference is not None:
            ax.axhline(reference, color="grey", linestyle=":", label="audited (test split)")
        ax.set_xlabel("batch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("accuracy")
        ax.set_title("Estimated against realised accuracy")
        ax.grid(True, color="#dddddd", linewidth=0.6)
        ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False, fontsize=8)
        charts["accuracy.svg"] = _svg(fig)

        groups: dict[str, dict[int, float]] = {}
        for row, r in zip(ctx["rows"], results):
            for m in _find(r, "group_mix", "selection_rate"):
                groups.setdefault(m.subject, {})[row["index"]] = float(m.value)
        fig = Figure(figsize=(7.5, 3.6))
        FigureCanvasAgg(fig)
        ax = fig.subplots()
        for i, (group, points) in enumerate(sorted(groups.items())):
            xs = sorted(points)
            ax.plot(xs, [points[k] for k in xs], marker=".", color=f"C{i % 10}", label=group)
        ax.set_xlabel("batch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("selection rate (predicted positive)")
        ax.set_ylim(-0.02, 1.02)
        ax.set_title("Per-group selection rates over time")
        ax.grid(True, color="#dddddd", linewidth=0.6)
        if groups:
            ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False, fontsize=7)
        charts["groups.svg"] = _svg(fig)
    return charts


def write_monitoring_report(results: list, subject: str, folder: Path, template_dir=None) -> list[Path]:
    """Write monitoring_report.md / .html and the three charts into ``folder`` (new); returns the files."""
    from govssl.reports._jinja import environment, render_template

    ctx = report_context(results, subject)
    env = environment(template_dir)
    texts = {"monitoring_report.md": render_template(env, "monitoring_report.md.j2", ctx),
             "monitoring_report.html": render_template(env, "monitoring_report.html.j2", ctx)}
    texts.update(_charts(results, ctx))
    folder.mkdir(parents=True, exist_ok=False)
    written = []
    for name, text in texts.items():
        path = folder / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
