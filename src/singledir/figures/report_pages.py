"""Self-contained HTML pages for the Snakemake report: the claims table, per-rule runtimes
(from the ``benchmark:`` files every rule writes) and the effective config.

Snakemake's HTML report shows HTML results inline, but offers CSV and YAML only as
downloads, so these tables are rendered here. Snakemake's own "Statistics" panel plots
per-job wall times from its metadata; the runtime page adds per-rule totals, CPU time
and peak memory from the benchmark files.
"""

from __future__ import annotations

import base64
import html
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from singledir.figures import registry
from singledir.stats.claims import FAMILY_NAMES, NOT_RUN, RULES
from singledir.stats.claims_markdown import verdict_summary

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; font-size: 14px; margin: 1.2em; color: #1e293b; }
h1 { font-size: 1.3em; margin: 0 0 .4em 0; }
p { max-width: 70em; }
table { border-collapse: collapse; margin: .6em 0; }
th, td { border: 1px solid #cbd5e1; padding: 3px 7px; text-align: left; vertical-align: top; }
th { background: #f1f5f9; position: sticky; top: 0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.reproduced td.verdict { background: #dcfce7; font-weight: 600; }
tr.notreproduced td.verdict { background: #fee2e2; font-weight: 600; }
tr.inconclusive td.verdict { background: #fef9c3; }
tr.notcomparable td.verdict { background: #e2e8f0; }
tr.notrun td { color: #94a3b8; }
td.note { font-size: 12px; color: #475569; max-width: 32em; }
table.claims td:nth-child(4) { min-width: 16em; }
.q { font-size: 12px; color: #64748b; }
.gallery { display: flex; flex-wrap: wrap; gap: 1.2em; }
figure { margin: 0; border: 1px solid #e2e8f0; padding: .5em; max-width: 680px; }
figure img { max-width: 100%; }
figcaption { font-size: 13px; margin-bottom: .3em; }
pre { background: #f8fafc; border: 1px solid #e2e8f0; padding: .8em; font-size: 12px; }
"""


def _page(title: str, body: str) -> str:
    return (f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body>\n<h1>{html.escape(title)}</h1>\n{body}\n</body></html>\n")


def _fmt(v, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return ""
    if isinstance(v, (int, np.integer)) or float(v) == int(v):
        return str(int(v))
    return f"{float(v):.{digits}g}"


def claims_html(table: pd.DataFrame, scale: str) -> str:
    """The claims table as one HTML page, verdicts coloured."""
    head = ["#", "Fig.", "Data", "Claim (our quantity)", "Paper", "Tolerance", "Ours [95 % CI]", "n", "p (min p)",
            "Verdict", "Reason; note"]
    rows = []
    for i, r in enumerate(table.itertuples(index=False), 1):
        ran = r.verdict != NOT_RUN
        ours = _fmt(r.our_value)
        if ours and _fmt(r.ci_low):
            ours += f"<br>[{_fmt(r.ci_low)}, {_fmt(r.ci_high)}]"
        p = (_fmt(r.p) + (f" ({_fmt(r.p_min)})" if _fmt(r.p_min) else "")) if ran else ""
        text = "; ".join(str(t) for t in (r.reason, r.note) if isinstance(t, str) and t)
        cells = [(str(i), "num"), (html.escape(r.figure), ""), (html.escape(FAMILY_NAMES.get(r.family, r.family)), ""),
                 (f"{html.escape(r.statement)}<br><span class='q'>{html.escape(r.quantity)}</span>", ""),
                 (html.escape(r.paper_value), "num"),
                 (html.escape(r.tolerance) if isinstance(r.tolerance, str) else "", "num"), (ours, "num"),
                 (f"{_fmt(r.n)} {html.escape(str(r.n_unit))}" if ran and r.n else "", "num"), (p, "num"),
                 (html.escape(r.verdict), "verdict"), (html.escape(text), "note")]
        tds = "".join(f"<td class='{c}'>{v}</td>" for v, c in cells)
        rows.append(f"<tr class='{r.verdict.replace(' ', '')}' id='{html.escape(r.claim_id)}'>{tds}</tr>")
    rules = "".join(f"<li><b>{html.escape(k)}</b>: {html.escape(v)}.</li>" for k, v in RULES.items())
    summary = html.escape(verdict_summary(table).replace("**", ""))
    body = (f"<p>Scale: <b>{html.escape(scale)}</b>. {summary} Confidence intervals are 95 % percentile "
            "bootstraps over the unit named in <i>n</i>; p is a permutation test over networks where the claim "
            "compares networks, with the smallest p the design can reach.</p>"
            f"<table class='claims'><thead><tr>{''.join(f'<th>{h}</th>' for h in head)}</tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table><p>Verdicts:</p><ul>{rules}</ul>")
    return _page("Claims of Morcos et al. (2018): paper vs this reproduction", body)


def pdf_to_png(pdf: str | os.PathLike, scale: float = 2.0) -> bytes:
    """First page of a PDF rasterized to a 256-colour PNG (PDFium), for browsers that cannot show
    PDFs inline. The palette keeps a page of all figures small: browsers refuse ``data:`` URLs
    over 2 MB, and the report embeds each page as one."""
    import io

    import pypdfium2 as pdfium

    doc = pdfium.PdfDocument(str(pdf))
    try:
        image = doc[0].render(scale=scale).to_pil().convert("RGB").quantize(colors=256, method=2)
    finally:
        doc.close()
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def gallery_html(pdfs: list[str | os.PathLike], scale: str) -> str:
    """Every figure on one page as embedded PNG previews, ordered by family and paper figure."""
    fam_order = {f: i for i, f in enumerate(FAMILY_NAMES)}
    fig_order = {f: i for i, f in enumerate(registry.FIGURES)}

    def key(p):
        fig, _, fam = Path(p).stem.rpartition("_")
        return fam_order.get(fam, 99), fam, fig_order.get(fig, 99), fig

    items = []
    for p in sorted(pdfs, key=key):
        fig, _, fam = Path(p).stem.rpartition("_")
        label, title = registry.paper_figure(fig, fam)
        png = base64.b64encode(pdf_to_png(p)).decode()
        items.append(f"<figure id='{html.escape(Path(p).stem)}'><figcaption><b>{label}</b> "
                     f"({html.escape(FAMILY_NAMES.get(fam, fam))}): {html.escape(title)} "
                     f"<span class='q'>{html.escape(str(p))}</span></figcaption>"
                     f"<img alt='{html.escape(Path(p).name)}' src='data:image/png;base64,{png}'></figure>")
    body = (f"<p>Scale: <b>{html.escape(scale)}</b>. Every figure of this run, rasterized from its PDF (the PDFs, with "
            "full captions, are under <i>Figures</i>).</p><div class='gallery'>" + "".join(items) + "</div>")
    return _page("All figures", body)


def _pattern_regex(pattern: str) -> re.Pattern:
    """Regex of a Snakemake file pattern: every ``{wildcard}`` (constraints ignored) matches ``.+``."""
    parts = re.split(r"\{[^{}]+\}", pattern)
    return re.compile(".+".join(re.escape(p) for p in parts))


def benchmark_files(patterns: dict[str, str], root: str | os.PathLike = ".",
                    benchmark_dir: str | None = None) -> dict[str, list[Path]]:
    """Rule -> its benchmark files under ``root``, from each rule's ``benchmark:`` pattern.

    A file matching several patterns goes to the rule whose pattern has the most literal
    text. Files under ``benchmark_dir`` that no pattern matches (rules that write their
    benchmark file themselves) go to the rule named by their first directory.
    """
    root = Path(root)
    regexes = {rule: (_pattern_regex(p), len(re.sub(r"\{[^{}]+\}", "", p))) for rule, p in patterns.items()}
    candidates = {f for p in patterns.values() for f in root.glob(re.sub(r"\{[^{}]+\}", "*", p))}
    # glob's "*" stops at "/", a wildcard need not: also search below each pattern's literal prefix
    bases = [root / p.split("{")[0] for p in patterns.values()]
    bases = [b if b.is_dir() else b.parent for b in bases]
    if benchmark_dir is not None:
        bases.append(root / benchmark_dir)
    for base in bases:
        if base.is_dir():
            candidates |= set(base.rglob("*.tsv"))
    found: dict[str, list[Path]] = {}
    for f in sorted(candidates):
        rel = f.relative_to(root).as_posix()
        matches = [(lit, rule) for rule, (rx, lit) in regexes.items() if rx.fullmatch(rel)]
        if matches:
            rule = max(matches)[1]
        elif benchmark_dir is not None and f.is_relative_to(root / benchmark_dir):
            parts = f.relative_to(root / benchmark_dir).parts
            rule = parts[0] if len(parts) > 1 else f.stem
        else:
            continue
        found.setdefault(rule, []).append(f)
    return found


def runtime_table(patterns: dict[str, str], root: str | os.PathLike = ".",
                  benchmark_dir: str | None = None) -> pd.DataFrame:
    """Per rule: jobs, wall time (total / mean / max), CPU time and peak RSS, read from the
    benchmark TSVs of each rule (see :func:`benchmark_files`)."""
    rows = []
    for rule, files in benchmark_files(patterns, root, benchmark_dir).items():
        for path in files:
            b = pd.read_csv(path, sep="\t")
            col = lambda name, how: getattr(pd.to_numeric(b[name], errors="coerce"), how)() if name in b else np.nan
            rows.append({"rule": rule, "s": col("s", "mean"), "cpu_s": col("cpu_time", "mean"),
                         "max_rss_mb": col("max_rss", "max")})
    cols = ["rule", "jobs", "total_s", "mean_s", "max_s", "cpu_s", "max_rss_mb"]
    if not rows:
        return pd.DataFrame(columns=cols)
    jobs = pd.DataFrame(rows)
    out = jobs.groupby("rule").agg(jobs=("s", "size"), total_s=("s", "sum"), mean_s=("s", "mean"),
                                   max_s=("s", "max"), cpu_s=("cpu_s", "sum"), max_rss_mb=("max_rss_mb", "max"))
    return out.reset_index().sort_values("total_s", ascending=False)[cols].reset_index(drop=True)


def runtime_html(table: pd.DataFrame, scale: str) -> str:
    head = ["Rule", "Jobs", "Wall time, total (s)", "mean (s)", "max (s)", "CPU time, total (s)", "Peak RSS (MB)"]
    rows = []
    for r in table.itertuples(index=False):
        vals = [r.rule, r.jobs, r.total_s, r.mean_s, r.max_s, r.cpu_s, r.max_rss_mb]
        rows.append("<tr>" + "".join(
            f"<td>{html.escape(str(v))}</td>" if i == 0 else f"<td class='num'>{_fmt(v, 4)}</td>"
            for i, v in enumerate(vals)) + "</tr>")
    total = (f"<tr><th>all rules</th><th class='num'>{int(table['jobs'].sum())}</th>"
             f"<th class='num'>{_fmt(table['total_s'].sum())}</th><th></th><th></th>"
             f"<th class='num'>{_fmt(table['cpu_s'].sum())}</th><th></th></tr>") if len(table) else ""
    body = (f"<p>Scale: <b>{html.escape(scale)}</b>. From the <code>benchmark:</code> file of every job run so far "
            "(results/benchmarks/...). Wall time is per job; jobs ran in parallel, so the total is "
            "compute time, not elapsed time. Per-job times on a time axis are in the report's Statistics "
            "panel.</p>"
            f"<table><thead><tr>{''.join(f'<th>{h}</th>' for h in head)}</tr></thead>"
            f"<tbody>{''.join(rows)}{total}</tbody></table>")
    return _page("Runtime per rule", body)


def config_html(config: dict, configfiles: list[str]) -> str:
    """The effective (merged) config the results were produced with."""
    files = "".join(f"<li><code>{html.escape(str(f))}</code></li>" for f in configfiles)
    text = yaml.safe_dump(config, sort_keys=False, default_flow_style=None, width=100)
    body = (f"<p>Scale: <b>{html.escape(str(config.get('scale')))}</b>. The effective configuration (config files "
            f"merged in order, then command-line overrides):</p><ul>{files}</ul><pre>{html.escape(text)}</pre>")
    return _page("Configuration", body)
