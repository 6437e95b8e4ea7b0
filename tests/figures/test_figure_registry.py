"""The figure registry (singledir.figures.registry): the one place figures are declared, and
what the workflow derives from it."""
import re
import subprocess
import sys

import pytest

from conftest import REPO, write_yaml
from singledir.figures import registry
from singledir.pipeline import logs, plan
from workflow_runs import clone, planned_jobs, snakemake, tiny_config, workflow_rules


def test_plan_figures_are_the_registry_selections():
    assert plan.FIGURES["cifar10"]["fig4"] == ["early_stopping", "sweep"]
    assert plan.FIGURES["cifar10"]["figA1"] == ["batch_norm[batch_norm=true]"]
    assert list(plan.FIGURES["imagenet"]) == ["fig1", "fig7", "figA2", "figA3", "figA4"]
    for fam, figs in plan.FIGURES.items():
        assert figs == {f: registry.panel(f, fam).selections for f in registry.figures_of(fam)}


@pytest.fixture(scope="module")
def parsed_rules(tmp_path_factory):
    return {r["name"]: r for r in workflow_rules(tmp_path_factory.mktemp("figure_rules"))}


@pytest.mark.parametrize("figure", list(registry.FIGURES))
def test_each_figure_has_one_rule_named_after_it_with_the_registry_script_and_caption(figure, parsed_rules):
    fig = registry.figure(figure)
    rule = parsed_rules[figure]
    assert rule["script"] == f"../scripts/{fig.script}" and rule["local"] and rule["conda"]
    def plain(paths):  # without the `family` wildcard's constraint Snakemake writes into them
        return [re.sub(r"\{family,[^}]*\}", "{family}", p) for p in paths]

    assert plain(rule["output"]) == [
        f"results/{figure}_{{family}}.pdf", f"results/{figure}_{{family}}.csv",
        f"results/stats/{{family}}/{figure}.csv"]
    assert plain(rule["log"]) == [f"results/logs/figures/{figure}_{{family}}.log"]
    # a script is named after its figure, unless figures share it (Figs. 7 and A4 differ only in the statistic)
    sharing = [f.name for f in registry.FIGURES.values() if f.script == fig.script]
    assert fig.script.startswith(f"{figure}_") or len(sharing) > 1
    assert (REPO / "workflow" / "scripts" / fig.script).is_file()
    assert (REPO / "workflow" / "report" / fig.caption).is_file()
    assert [n for n in parsed_rules if re.fullmatch(rf"{figure}(_\w+)?", n)] == [figure]  # no per-family twin rule


@pytest.mark.slow
def test_each_figure_rule_runs_its_own_script_and_editing_it_reruns_only_that_figure(tmp_path):
    """The figure rules are made in a loop over the registry, and Snakemake evaluates a
    `script:` path again when the job runs: each rule must still run its own figure's script.
    In a clone, every figure script the tiny MNIST config draws is replaced by a stub that
    writes its own name into the rule's outputs; the figures' inputs are empty files."""
    work = clone(tmp_path / "clone")
    cfg = tiny_config()  # MNIST: Figs. 1, 2, 7 and A4 (7 and A4 share a script)
    cfgfile = write_yaml(cfg, tmp_path / "tiny.yaml")
    figures = ["fig1", "fig2", "fig7"]
    # the data file (its class count: chance) before the per-model files, which are newer
    assert registry.judges_training("fig1", "mnist")
    (work / "results/data/mnist").mkdir(parents=True)
    (work / "results/data/mnist/dataset.npz").touch()
    for name in figures:
        for files in registry.input_files(name, "mnist", lambda sel: plan.experiment_models(cfg, "mnist", sel),
                                          "results").values():
            for f in files:
                (work / f).parent.mkdir(parents=True, exist_ok=True)
                (work / f).touch()
        script = work / "workflow" / "scripts" / registry.figure(name).script
        script.write_text("from pathlib import Path\n"
                          "for out in [*snakemake.output, *snakemake.log]:\n"
                          f"    Path(out).write_text({script.name!r} + ' ' + snakemake.rule)\n")
    targets = [f"results/{name}_mnist.pdf" for name in figures]
    snakemake(work, *targets, "--allowed-rules", *figures, configfile=cfgfile)
    for name in figures:
        ran = (work / "results" / f"{name}_mnist.pdf").read_text()
        assert ran == f"{registry.figure(name).script} {name}"

    def planned():
        return planned_jobs(snakemake(work, "-n", *targets, "--allowed-rules", *figures, configfile=cfgfile))

    assert planned() == {}
    script = work / "workflow" / "scripts" / registry.figure("fig2").script
    script.write_text(script.read_text() + "# a change to the plotting code\n")
    # Snakemake's code trigger: a rule's script newer than its outputs (the other figures' scripts are not)
    assert planned() == {"fig2": 1}


def test_input_files_follow_the_panel_inputs_in_order():
    models = {"early_stopping": ["early_stopping_s0"], "sweep": ["sweep_a", "sweep_b"]}
    files = registry.input_files("fig4", "cifar10", models.__getitem__)
    assert files == {
        "snapshots": ["results/analysis/cifar10/early_stopping_s0/training_auc.csv"],
        "stopping_histories": ["results/models/cifar10/early_stopping_s0/history.csv"],
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


def test_figures_that_leave_out_failed_nets_read_the_data_class_count():
    """Chance is 1 / the data's class count: every panel judges training (issue 30: failed nets
    excluded everywhere), so each reads the data file and the histories (Fig. X1: probes) of every net it draws."""
    assert all(registry.judges_training(n, f) for n in registry.FIGURES for f in registry.families_of(n))
    for name in registry.FIGURES:
        for fam in registry.families_of(name):
            files = registry.input_files(name, fam, lambda sel: [f"{sel}_m"], "results")
            drawn = {f.split("/")[-2] for fs in files.values() for f in fs}
            judged = {f.split("/")[-2] for key, fs in files.items() for f in fs
                      if registry.panel(name, fam).inputs[key].kind in registry.TRAINING_KINDS}
            assert judged == drawn, (name, fam)  # Fig. X1 judges from its probes, the others from histories
    # Fig. 4a-b's one early-stopping net is judged apart from Fig. 4c's sweep
    assert set(registry.panel("fig4", "cifar10").inputs) == {"snapshots", "stopping_histories", "curves", "histories"}
    assert registry.panel("fig4", "mnist").inputs["stopping_histories"].selections == ("early_stopping",)
    assert registry.panel("fig7", "cifar10").inputs["histories"].selections == ("batch_norm[batch_norm=true]",)
