"""The figure registry (singledir.figures.registry): the one place figures are declared, and
what the workflow derives from it."""
import re
import subprocess
import sys

import pytest

from conftest import REPO
from singledir.figures import registry
from singledir.pipeline import logs, plan

FIGURES_SMK = (REPO / "workflow" / "rules" / "figures.smk").read_text()


def test_plan_figures_are_the_registry_selections():
    assert plan.FIGURES["cifar10"]["fig4"] == ["early_stopping", "sweep"]
    assert plan.FIGURES["cifar10"]["figA1"] == ["batch_norm[batch_norm=true]"]
    assert list(plan.FIGURES["imagenet"]) == ["fig1", "fig7", "figA2", "figA3", "figA4"]
    for fam, figs in plan.FIGURES.items():
        assert figs == {f: registry.panel(f, fam).selections for f in registry.figures_of(fam)}


@pytest.mark.parametrize("figure", list(registry.FIGURES))
def test_each_figure_has_one_rule_named_after_it_with_the_registry_script_and_caption(figure):
    fig = registry.figure(figure)
    rule = re.search(rf"^rule {figure}:\n(?:    .*\n|\n)*?    script:\n        \"\.\./scripts/([^\"]+)\"", FIGURES_SMK,
                     re.M)
    assert rule and rule.group(1) == fig.script
    # a script is named after its figure, unless figures share it (Figs. 7 and A4 differ only in the statistic)
    sharing = [f.name for f in registry.FIGURES.values() if f.script == fig.script]
    assert fig.script.startswith(f"{figure}_") or len(sharing) > 1
    assert (REPO / "workflow" / "scripts" / fig.script).is_file()
    assert (REPO / "workflow" / "report" / fig.caption).is_file()
    rules = "\n".join(p.read_text() for p in (REPO / "workflow" / "rules").glob("*.smk"))
    assert len(re.findall(rf"^rule \w*{figure}\w*:", rules, re.M)) == 1  # no per-family twin rule


def test_input_files_follow_the_panel_inputs_in_order():
    models = {"early_stopping": ["early_stopping_s0"], "sweep": ["sweep_a", "sweep_b"]}
    files = registry.input_files("fig4", "cifar10", models.__getitem__)
    assert files == {
        "snapshots": ["results/analysis/cifar10/early_stopping_s0/training_auc.csv"],
        "curves": ["results/analysis/cifar10/sweep_a/ablation_zero.csv", "results/analysis/cifar10/sweep_b/ablation_zero.csv"],
        "histories": ["results/models/cifar10/sweep_a/history.csv", "results/models/cifar10/sweep_b/history.csv"],
    }


def test_settings_evaluate_on_the_family_config_and_the_config_overrides():
    cfg = {"analysis": {"ablation_layers": -2}, "figures": {"fig1": {"title": "mine"}}}
    got = registry.settings("fig1", "imagenet", cfg)
    assert got == {"xlabel": "Number of feature maps ablated (last 2 layers)", "ylabel": "Training accuracy (top-5)",
                   "title": "mine"}
    assert registry.settings("fig3", "cifar10", {"figures": {"fig3": {"extremes": 3}}}) == {"extremes": 3}
    assert registry.settings("figX1", "mnist", {"beyond": {"probe_group": 4}}) == {"beyond": {"probe_group": 4}}


def test_unknown_names_are_errors_that_list_the_known_ones():
    with pytest.raises(KeyError, match="'fig9' is not a registered figure; known figures: fig1, fig2"):
        registry.figure("fig9")
    with pytest.raises(KeyError, match="figure fig3 has no mnist panel; its families: cifar10"):
        registry.panel("fig3", "mnist")
    with pytest.raises(ValueError, match="kind 'weights' is unknown"):
        registry.Input("weights", ("corruption",))


def test_paper_figure_names_the_panel_and_title():
    assert registry.paper_figure("fig7", "imagenet") == (
        "Fig. 7d-e", "Selective and non-selective directions are similarly important")
    assert registry.paper_figure("fig9", "mnist") == ("Fig. ?", "")


def test_registry_and_logs_import_neither_the_plan_nor_torch():
    code = ("import sys, singledir.figures.registry, singledir.pipeline.logs; "
            "print(sorted(m for m in sys.modules if m in ('torch', 'snakemake', 'singledir.pipeline.plan')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_io_and_table_summaries(tmp_path):
    text = logs.io_summary({"curves": ["r/a/m1/x.csv", "r/a/m2/x.csv", "r/a/m2/y.csv"], "one": "r/m3/h.csv"},
                           ["out.pdf", "out.csv"])
    assert text == "read curves: 3 files of 2 models; one: 1 files of 1 models\nwrote out.pdf, out.csv"
    (tmp_path / "s.csv").write_text("statistic,value,ci_low,ci_high,n,unit,p,p_min\nr,0.5,0.1,0.9,6,networks,0.01,0.0014\n"
                                   "epochs,100,,,1,networks,,\n")
    assert logs.table_summary(tmp_path / "s.csv").splitlines() == [
        f"2 statistics in {tmp_path / 's.csv'}:", "  r = 0.5 [0.1, 0.9] (n = 6 networks, p = 0.01)",
        "  epochs = 100 (n = 1 networks)"]
