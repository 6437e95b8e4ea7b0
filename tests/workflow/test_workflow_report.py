"""The report: the reproduction status (docs/status.md, the README summary), report pages,
figure captions, and (slow) the Snakemake report of a tiny run."""
import re
import types

import jinja2
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from conftest import REPO, run_snakemake, tiny_mnist_config, write_yaml  # noqa: E402
from singledir.stats import claims as C  # noqa: E402
from singledir.stats.beyond_claims import ALL_CLAIMS  # noqa: E402
from singledir.figures import readme_status as RS  # noqa: E402
from singledir.figures import registry  # noqa: E402
from singledir.figures import report_pages as RP  # noqa: E402
CLAIMS_MD = """# Claims of Morcos et al. (2018), one by one

Scale: **demo**. **1 of 1** claims tested are reproduced.

| # | Fig. | Claim | Reproduced |
|---|---|---|---|
| 1 | 7a | selectivity | **yes** |
"""


# ---------------------------------------------------------------- reproduction status

CLAIMS_TABLE_MD = """# Claims of Morcos et al. (2018), one by one

Scale: **demo** (MNIST: digits). Of **4** claims tested: **2** reproduced, **2** inconclusive; 1 was not run.

| # | Fig. | Data | Claim | Paper | Tolerance | Ours [95 % CI] | n | p (min p) | Verdict |
|---|---|---|---|---|---|---|---|---|---|
| 1 | 1a | MNIST (8x8 digits (MNIST stand-in)) | AUC falls | < 0 |  | -1 [-1, -1] | 6 networks | 0.0028 | **reproduced** |
| 2 | 7d | ImageNet (stand-in) | no relation | ~ 0 | \\|r\\| < 0.3 | -0.2 | 488 units | 1e-07 | inconclusive |
| 3 | 1b | CIFAR-10 (16x16 colour digits) | AUC falls | < 0 |  | -1 [-1, -1] | 6 networks | 0.0028 | **reproduced** |
| 4 | X1 | MNIST (8x8 digits (MNIST stand-in)) | probe ranks nets | new | CI > 0 | 0.4 | 10 networks | 0.2 | inconclusive |
| 5 | X1 | CIFAR-10 (16x16 colour digits) | probe ranks nets | new | CI > 0 |  |  |  | not run |
"""


def test_status_section_is_claims_md_between_markers():
    block = RS.status_section(CLAIMS_MD)
    lines = block.splitlines()
    assert lines[0] == RS.BEGIN and lines[-1] == RS.END
    assert lines[1:-1] == CLAIMS_MD.strip().splitlines()[2:]  # title and blank line dropped, the rest verbatim


def test_status_page_block_is_replaced_between_markers_and_idempotent():
    page = f"# Reproduction status\n\nIntro.\n\n{RS.BEGIN}\nstale\n{RS.END}\n\n## Notes\nkept\n"
    new = RS.update_status_page(page, CLAIMS_MD)
    assert new == page.replace(f"{RS.BEGIN}\nstale\n{RS.END}", RS.status_section(CLAIMS_MD))
    assert RS.update_status_page(new, CLAIMS_MD) == new
    assert new.endswith("## Notes\nkept\n") and "stale" not in new


def test_status_page_without_markers_gets_the_block():
    typed = "# Reproduction status\n\nhand-typed, stale\n\n# Other\nx\n"
    new = RS.update_status_page(typed, CLAIMS_MD)
    assert "hand-typed" not in new and new.count("# Reproduction status") == 1
    assert new.index(RS.BEGIN) < new.index("# Other")
    created = RS.update_status_page("", CLAIMS_MD)
    assert created == f"# Reproduction status\n\n{RS.status_section(CLAIMS_MD)}\n"
    assert RS.update_status_page(created, CLAIMS_MD) == created
    with pytest.raises(ValueError, match="markers"):
        RS.update_status_page(f"# x\n{RS.BEGIN}\nno end\n", CLAIMS_MD)


def test_summary_counts_verdicts_per_family_and_our_own_claims_last():
    counts = RS.verdict_counts(CLAIMS_TABLE_MD)
    assert list(counts) == ["MNIST", "ImageNet", "CIFAR-10", RS.OWN_CLAIMS_ROW]
    assert counts["MNIST"] == {"reproduced": 1} and counts["ImageNet"] == {"inconclusive": 1}
    assert counts[RS.OWN_CLAIMS_ROW] == {"inconclusive": 1, "not run": 1}
    lines = RS.summary_section(CLAIMS_TABLE_MD, "docs/status.md").splitlines()
    assert lines[0] == RS.SUMMARY_BEGIN and lines[-1] == RS.SUMMARY_END
    assert lines[1].startswith("Scale: **demo** (MNIST: digits). Of **4** claims tested")
    assert "| claims of | reproduced | inconclusive | not run |" in lines
    assert "| MNIST | 1 | 0 | 0 |" in lines and f"| {RS.OWN_CLAIMS_ROW} | 0 | 1 | 1 |" in lines
    assert lines[-2].endswith("[docs/status.md](docs/status.md).")
    # a claims.md without the claims table: the scale line and the link only
    assert RS.summary_section(CLAIMS_MD).splitlines()[1:] == [
        "Scale: **demo**. **1 of 1** claims tested are reproduced.", "",
        "Every claim with its value, confidence interval, verdict and reason: [docs/status.md](docs/status.md).",
        RS.SUMMARY_END]


def test_readme_status_cli_writes_both_files_and_checks(tmp_path, capsys):
    claims, status, readme = tmp_path / "claims.md", tmp_path / "docs" / "status.md", tmp_path / "README.md"
    claims.write_text(CLAIMS_TABLE_MD)
    status.parent.mkdir()
    status.write_text("# Reproduction status\n")
    readme.write_text("# singledir\n\n## Reproduction status\n\ntyped\n\n## Documentation\n")
    assert RS.main([str(claims), str(status), str(readme), "--check"]) == 1
    assert RS.main([str(claims), str(status), str(readme)]) == 0
    assert RS.status_section(CLAIMS_TABLE_MD) in status.read_text()
    assert RS.summary_section(CLAIMS_TABLE_MD, "docs/status.md") in readme.read_text()
    assert readme.read_text().endswith("## Documentation\n") and "typed" not in readme.read_text()
    assert RS.main([str(claims), str(status), str(readme), "--check"]) == 0
    assert RS.main([str(tmp_path / "absent.md"), str(status), str(readme)]) == 2
    assert "make demo" in capsys.readouterr().err


# ---------------------------------------------------------------- report pages

def test_runtime_table_assigns_benchmark_files_to_rules_by_pattern(tmp_path):
    bench = tmp_path / "results" / "benchmarks"
    files = {"figures/fig1_mnist.tsv": (2.0, 500.0), "figures/fig4_mnist.tsv": (3.0, 700.0),
             "train_model/mnist/a_s0.tsv": (10.0, 900.0), "train_model/mnist/b_s0.tsv": (30.0, 800.0),
             "own_bench/x/y.tsv": (1.5, 100.0)}
    for rel, (s, rss) in files.items():
        p = bench / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(f"s\th:m:s\tmax_rss\tcpu_time\n{s}\t0:00:0{int(s) % 10}\t{rss}\t{s / 2}\n")
    patterns = {"fig1": "results/benchmarks/figures/fig1_{family}.tsv",
                "fig4_mnist": "results/benchmarks/figures/fig4_mnist.tsv",
                "train_model": "results/benchmarks/train_model/{family}/{model}.tsv",
                "claims": "results/benchmarks/claims/claims.tsv"}
    assert "own_bench" not in set(RP.runtime_table(patterns, root=tmp_path)["rule"])
    t = RP.runtime_table(patterns, root=tmp_path, benchmark_dir="results/benchmarks").set_index("rule")
    # by total time; claims never ran; a file no pattern names goes to its directory's rule
    assert list(t.index) == ["train_model", "fig4_mnist", "fig1", "own_bench"]
    assert t.loc["train_model", "jobs"] == 2 and t.loc["train_model", "total_s"] == 40.0
    assert t.loc["train_model", "max_s"] == 30.0 and t.loc["train_model", "max_rss_mb"] == 900.0
    assert t.loc["fig4_mnist", "jobs"] == 1 and t.loc["fig1", "cpu_s"] == 1.0
    html = RP.runtime_html(t.reset_index(), "demo")
    assert html.count("<tr>") == 6 and "all rules" in html  # header, 4 rules, total


def test_claims_html_has_a_row_per_claim_with_its_verdict(tmp_path):
    res = tmp_path / "results"
    (res / "stats").mkdir(parents=True)
    pd.DataFrame([{"figure": "fig7", "statistic": "spearman_selectivity_vs_impact", "value": 0.05, "ci_low": 0.0,
                   "ci_high": 0.15, "n": 64, "p": 0.5}]).to_csv(res / "stats" / "mnist.csv", index=False)
    table = C.evaluate_claims(C.Sources.from_results(res, n_boot=20), ALL_CLAIMS)
    html = RP.claims_html(table, "demo")
    assert len(re.findall(r"<tr class='(reproduced|notreproduced|inconclusive|notcomparable|notrun)'", html)) \
        == len(ALL_CLAIMS)
    assert html.count("<tr class='reproduced'") == 1 and "id='fig7a_selectivity_vs_impact'" in html


def test_gallery_embeds_a_png_of_each_pdf(tmp_path):
    pdfs = []
    for name in ("fig7_mnist", "fig1_mnist"):
        fig, ax = plt.subplots(figsize=(2, 1.5))
        ax.plot([0, 1], [0, 1])
        fig.savefig(tmp_path / f"{name}.pdf")
        plt.close(fig)
        pdfs.append(tmp_path / f"{name}.pdf")
    png = RP.pdf_to_png(pdfs[0], scale=1.0)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert (width, height) == (144, 108)  # 2 x 1.5 inches at 72 points per inch
    html = RP.gallery_html(pdfs, "demo")
    assert html.count("data:image/png;base64,") == 2
    assert html.index("Fig. 1a") < html.index("Fig. 7a")  # ordered by paper figure


def test_config_html_shows_the_effective_config():
    html = RP.config_html({"scale": "demo", "families": {"mnist": {"enabled": True}}}, ["config/demo.yaml"])
    assert "config/demo.yaml" in html and "scale: demo" in html


# ---------------------------------------------------------------- captions

def render_caption(figure, family, scale="demo"):
    """Render a caption template as Snakemake's report does (Jinja, trim/lstrip blocks)."""
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined)
    sm = types.SimpleNamespace(
        output=[f"results/{figure}_{family}.pdf", f"results/{figure}_{family}.csv", f"results/stats/{family}/{figure}.csv"],
        config={"scale": scale, "families": {family: {"label": "LABEL"}}}, params=types.SimpleNamespace(scale=scale))
    return env.from_string((REPO / "workflow" / "report" / f"{figure}.rst").read_text()).render(snakemake=sm)


@pytest.mark.parametrize("figure", sorted(f.name for f in registry.FIGURE_LIST if not f.beyond))
def test_every_figure_caption_names_its_paper_figure_and_scale(figure):
    for family, panel in registry.figure(figure).panels.items():
        text = render_caption(figure, family)
        assert f"**Reproduces Fig. {panel.panel}**" in text
        assert "**demo** *scale* on LABEL" in text and "stand-in" in text
        assert f"results/{figure}_{family}.csv" in text
        assert "stand-in" not in render_caption(figure, family, scale="paper")


def test_every_report_caption_used_by_the_workflow_exists():
    rules = "\n".join(p.read_text() for p in (REPO / "workflow" / "rules").glob("*.smk"))
    captions = set()
    for c in re.findall(r'caption=f?"\.\./report/([^"]+)"', rules):
        captions |= {c.replace("{figure}", f) for f in registry.FIGURES} if "{figure}" in c else {c}
    assert {"claims.rst", "runtimes.rst", "config.rst", "gallery.rst", "fig1.rst"} <= captions
    assert all((REPO / "workflow" / "report" / c).is_file() for c in captions)
    assert {f.caption for f in registry.FIGURE_LIST} <= captions  # every figure rule wraps its PDF in report()


# ---------------------------------------------------------------- integration

@pytest.mark.slow
def test_claims_and_report_of_a_tiny_run(tmp_path):
    cfg = tiny_mnist_config(tmp_path, selectivity={"model": {"hidden": [16, 16]}})
    cfg["bootstrap"] = 50
    cfgfile = write_yaml(cfg, tmp_path / "tiny.yaml")
    run_snakemake(tmp_path, "all_figures", "report_pages", configfile=cfgfile)
    res = tmp_path / "results"
    claims = pd.read_csv(res / "claims.csv").set_index("claim_id")
    assert len(claims) == len(ALL_CLAIMS)
    ran = claims[claims["verdict"] != "not run"]
    assert set(ran.index) == {"fig7a_selectivity_vs_impact", "figA4a_mutual_information_vs_impact"}
    stats = pd.read_csv(res / "stats" / "mnist.csv").set_index("statistic")
    assert ran.loc["fig7a_selectivity_vs_impact", "our_value"] == pytest.approx(
        stats.loc["spearman_selectivity_vs_impact", "value"])
    assert "| 7a | MNIST (8x8 digits (MNIST stand-in)) |" in (res / "claims.md").read_text()  # Data: what ran
    runtimes = pd.read_csv(res / "report" / "runtimes.csv")
    assert {"train_model", "unit_analysis", "fig7", "claims"} <= set(runtimes["rule"])
    run_snakemake(tmp_path, "--report", "results/report.html", "all_figures", "report_pages", configfile=cfgfile)
    html = (res / "report.html").read_text()
    for item in ("results/fig7_mnist.pdf", "results/figA4_mnist.pdf", "results/report/claims.html",
                 "results/report/runtimes.html", "results/report/config.html", "results/report/figures.html"):
        assert f'"{item}"' in html
    assert "Reproduces Fig. 7a" in html and "Reproduces Fig. A4a" in html


@pytest.mark.slow
def test_imagenet_figures_are_in_the_report(tmp_path):
    from test_workflow_imagenet import FIGURES, tiny_imagenet_config

    cfgfile = write_yaml(tiny_imagenet_config(), tmp_path / "tiny.yaml")
    run_snakemake(tmp_path, *FIGURES, configfile=cfgfile)
    run_snakemake(tmp_path, "--report", "results/report.html", *FIGURES, configfile=cfgfile)
    html = (tmp_path / "results" / "report.html").read_text()
    for pdf in FIGURES:
        assert f'"{pdf}"' in html
    for panel in ("1c", "7d-e", "A2b", "A3b", "A4d-e"):
        assert f"Reproduces Fig. {panel}" in html
    log = (tmp_path / "results" / "logs" / "figures" / "fig7_imagenet.log").read_text()
    assert "read units: 1 files of 1 models" in log and "spearman_selectivity_vs_impact = " in log
