"""docs/results/<run>/: a recorded run's claims, thumbnails and job times, and the README's
real-data status block made from them (singledir.figures.results_page)."""
import shutil

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
import pytest

from singledir.figures import results_page as RP

COLUMNS = ["claim_id", "figure", "family", "statement", "quantity", "paper_value", "tolerance", "our_value",
           "ci_low", "ci_high", "n", "n_unit", "p", "p_min", "chance", "resampling", "rule", "verdict", "reason",
           "note"]


def _claims() -> pd.DataFrame:
    rows = [
        dict(claim_id="fig1a_auc_vs_corruption", figure="1a", family="mnist", paper_value="< 0", our_value=-1.0,
             ci_low=-1.0, ci_high=-0.9, n=6, n_unit="networks", verdict="reproduced", reason=""),
        dict(claim_id="fig4a_auc_peak_at_loss_divergence", figure="4a", family="mnist", paper_value="0 epochs",
             our_value=9.0, ci_low=-5.0, ci_high=10.0, n=10, n_unit="ablation orderings", verdict="inconclusive",
             reason="the 95 % CI is not inside [-5, 5]" + " and more" * 30),
        dict(claim_id="fig1b_auc_vs_corruption", figure="1b", family="cifar10", paper_value="< 0", our_value=-0.8,
             ci_low=-1.0, ci_high=-0.5, n=6, n_unit="networks", verdict="not reproduced", reason="x"),
        dict(claim_id="X2_onepoint_stop_vs_val_stop_mnist", figure="X2", family="mnist", paper_value="new",
             our_value=0.01, ci_low=float("nan"), ci_high=float("nan"), n=6, n_unit="networks",
             verdict="inconclusive", reason="y"),
    ]
    return pd.DataFrame(rows).reindex(columns=COLUMNS)


def _run(tmp_path):
    results = tmp_path / "results"
    (results / "benchmarks" / "train_model" / "mnist").mkdir(parents=True)
    (results / "benchmarks" / "claims").mkdir(parents=True)
    for name, s in (("a", 10.0), ("b", 5.5)):
        (results / "benchmarks" / "train_model" / "mnist" / f"{name}.tsv").write_text(f"s\th:m:s\n99\t0\n{s}\t0\n")
    (results / "benchmarks" / "claims" / "claims.tsv").write_text("s\th:m:s\n1.5\t0\n")
    _claims().to_csv(results / "claims.csv", index=False)
    (results / "claims.md").write_text(
        "# Claims\n\nScale: **laptop** (MNIST: MNIST). Of **4** claims tested.\n\n"
        "| # | Fig. | Data | Claim | Paper | Verdict |\n|---|---|---|---|---|---|\n"
        "| 1 | 1a | MNIST | c | < 0 | **reproduced** |\n| 2 | 4a | MNIST | c | 0 epochs | inconclusive |\n"
        "| 3 | 1b | CIFAR-10 | c | < 0 | not reproduced |\n| 4 | X2 | MNIST | c | new | inconclusive |\n")
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot([0, 1], [1, 0])
    fig.savefig(results / "fig1_mnist.pdf")
    plt.close(fig)
    return results


def test_job_seconds_sums_the_last_benchmark_line_of_each_job(tmp_path):
    times = RP.job_seconds(_run(tmp_path))
    assert times.to_dict("records") == [{"rule": "train_model", "jobs": 2, "seconds": 15.5},
                                        {"rule": "claims", "jobs": 1, "seconds": 1.5}]


def test_real_data_summary_counts_families_and_lists_each_claim_with_its_ci():
    block = RP.real_data_summary(_claims(), "docs/results/laptop/README.md")
    lines = block.splitlines()
    assert lines[0] == RP.REAL_BEGIN and lines[-1] == RP.REAL_END
    # paper claims per family in the paper's order, our own claims last
    assert "| MNIST | 1 | 0 | 1 |" in block and "| CIFAR-10 | 0 | 1 | 0 |" in block
    assert lines.index("| Beyond the paper (our own claims) | 0 | 0 | 1 |") > lines.index("| CIFAR-10 | 0 | 1 | 0 |")
    assert "| 1a | fig1a_auc_vs_corruption | -1 [-1, -0.9] | 6 networks | **reproduced** |  |" in block
    # a missing CI is left out, not printed as nan; a long reason is cut with an ellipsis
    assert "| X2 | X2_onepoint_stop_vs_val_stop_mnist | 0.01 | 6 networks | inconclusive | y |" in block
    row = next(l for l in lines if "fig4a_auc" in l)
    assert row.endswith("… |") and len(row.split("|")[-2].strip()) == RP.REASON_CHARS
    assert "fig1b" not in block  # CIFAR-10 claims are counted, not listed (families=("mnist",))
    assert "[docs/results/laptop/README.md](docs/results/laptop/README.md)" in block


def test_results_page_copies_claims_keeps_hand_written_text_and_places_the_readme_block(tmp_path):
    results = _run(tmp_path)
    dest = tmp_path / "docs" / "results" / "laptop"
    dest.mkdir(parents=True)
    (dest / "README.md").write_text("# Laptop run\n\nHand-written: machine and data.\n")
    readme = tmp_path / "README.md"
    readme.write_text("# tool\n\n## Reproduction status\n\n### Real data\n\nold text\n\n### Demo\n\ndemo block\n")
    RP.write_results_page(results, dest, readme)
    assert (dest / "claims.csv").read_bytes() == (results / "claims.csv").read_bytes()
    assert (dest / "claims.md").read_text() == (results / "claims.md").read_text()
    page = (dest / "README.md").read_text()
    assert page.startswith("# Laptop run\n\nHand-written: machine and data.\n")
    assert "| train_model | 2 | 16 |" in page and "17 s in 3 jobs" in page
    text = readme.read_text()
    assert "old text" not in text and "demo block" in text
    assert text.index(RP.REAL_BEGIN) < text.index("### Demo")
    assert "[docs/results/laptop/README.md](docs/results/laptop/README.md)" in text
    # a second run of the generator changes nothing
    before = {p: p.read_bytes() for p in (dest / "README.md", readme)}
    RP.write_results_page(results, dest, readme)
    assert {p: p.read_bytes() for p in before} == before
    if shutil.which("pdftoppm"):
        assert (dest / "figures" / "fig1_mnist.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert "![fig1_mnist](figures/fig1_mnist.png)" in page
    else:
        assert "no thumbnails" in page


def test_results_page_without_a_finished_run_names_the_missing_file(tmp_path, capsys):
    assert RP.main([str(tmp_path / "results"), str(tmp_path / "dest")]) == 2
    assert "results/claims.md not found: the run did not finish its claims rule" in capsys.readouterr().err


def test_committed_readme_shows_the_recorded_real_data_run():
    """README.md's real-data block is what docs/results/laptop/claims.csv gives (make results-page),
    and it comes before the demo's summary."""
    from conftest import REPO
    from singledir.figures import readme_status as RS

    readme = (REPO / "README.md").read_text()
    claims = pd.read_csv(REPO / "docs" / "results" / "laptop" / "claims.csv")
    assert RP.real_data_summary(claims, "docs/results/laptop/README.md") in readme
    assert readme.index(RP.REAL_BEGIN) < readme.index(RS.SUMMARY_BEGIN)
    page = (REPO / "docs" / "results" / "laptop" / "README.md").read_text()
    assert page.count(RP.PAGE_BEGIN) == page.count(RP.PAGE_END) == 1
    for png in sorted((REPO / "docs" / "results" / "laptop" / "figures").glob("*.png")):
        assert f"](figures/{png.name})" in page
