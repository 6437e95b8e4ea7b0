# Beyond the paper (issue 16; README "Beyond the paper"): the paper's section 5 future work
# as experiments of the same DAG. E1: cheap reliance probes on training data for model
# selection (Fig. X1) and early stopping (Fig. X2), singledir.analysis.probes. E2: regularizers aimed
# at single-direction reliance (Figs. X3, X4), singledir.training.regularizers (training options of
# the generic train_model rule). Which experiments each figure reads: singledir.pipeline.plan.FIGURES;
# probe settings: families.<family>.beyond (schema).


# Its input functions: workflow/rules/beyond_common.smk.

rule beyond_probes:
    """Cheap reliance probes (one-point accuracies, a sparse and the full AUC, each with its
    cost) of one network at each snapshot, on training data; plus the held-out losses and
    the mean class selectivity the figures compare them with."""
    input:
        unpack(_model_inputs),
    output:
        probes=f"{RESULTS}/analysis/{{family}}/{{model}}/probes.csv",
        curve=f"{RESULTS}/analysis/{{family}}/{{model}}/probe_curve.csv",
    params:
        analysis=lambda w: analysis_cfg(w.family),
        beyond=lambda w: beyond_cfg(w.family),
        seed=config["seed"],
        device=config["device"],
    wildcard_constraints:
        model=ungrouped_probe_regex(),
    threads: 1
    log:
        f"{RESULTS}/logs/beyond_probes/{{family}}/{{model}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/beyond_probes/{{family}}/{{model}}.tsv"
    conda:
        ENV_TORCH
    script:
        "../scripts/beyond_probes.py"


for _family, _groups in BEYOND_PROBE_GROUPS.items():
    for _gid, _members in _groups.items():
        _specs = [plan.model_specs(config, _family)[m] for m in _members]

        rule:
            name:
                re.sub(r"\W", "_", f"beyond_probes_group_{_family}_{_gid}")
            input:
                dataset=f"{RESULTS}/data/{_family}/dataset.npz",
                model=[f"{RESULTS}/models/{_family}/{m}/model.pt" for m in _members],
                labels=[f"{RESULTS}/data/{_family}/{plan.label_file(s)}" for s in _specs],
            output:
                probes=[f"{RESULTS}/analysis/{_family}/{m}/probes.csv" for m in _members],
                curve=[f"{RESULTS}/analysis/{_family}/{m}/probe_curve.csv" for m in _members],
            params:
                analysis=analysis_cfg(_family),
                beyond=beyond_cfg(_family),
                seed=config["seed"],
                device=config["device"],
            resources:
                **profile_resources("beyond_probes"),
            threads: 1
            log:
                f"{RESULTS}/logs/beyond_probes_group/{_family}/{_gid}.log",
            benchmark:
                f"{RESULTS}/benchmarks/beyond_probes_group/{_family}/{_gid}.tsv"
            conda:
                ENV_TORCH
            script:
                "../scripts/beyond_probes.py"


# The four figures (written out, not made in a loop: a script: path in a loop would be
# read when the job runs, i.e. the loop's last value).


rule figX1:
    """Fig. X1: probe cost vs rank correlation with test accuracy (model selection)."""
    input:
        probes=lambda w: figure_inputs("figX1", w.family, "analysis/{family}/{model}/probes.csv"),
        curves=lambda w: figure_inputs("figX1", w.family, "analysis/{family}/{model}/probe_curve.csv"),
    output:
        **fig_outputs("figX1"),
    params:
        **fig_params("figX1"),
        beyond=lambda w: beyond_cfg(w.family),
    log:
        f"{RESULTS}/logs/figures/figX1_{{family}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/figures/figX1_{{family}}.tsv"
    localrule: True
    conda:
        ENV_CPU
    script:
        "../scripts/figX1_probe_selection.py"


rule figX2:
    """Fig. X2: the epoch each probe stops at, and the test loss there (early stopping)."""
    input:
        probes=lambda w: figure_inputs("figX2", w.family, "analysis/{family}/{model}/probes.csv"),
        curves=lambda w: figure_inputs("figX2", w.family, "analysis/{family}/{model}/probe_curve.csv"),
    output:
        **fig_outputs("figX2"),
    params:
        **fig_params("figX2"),
        beyond=lambda w: beyond_cfg(w.family),
    log:
        f"{RESULTS}/logs/figures/figX2_{{family}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/figures/figX2_{{family}}.tsv"
    localrule: True
    conda:
        ENV_CPU
    script:
        "../scripts/figX2_probe_stopping.py"


rule figX3:
    """Fig. X3: ablation curves per regularizer, clean and corrupted labels."""
    input:
        probes=lambda w: figure_inputs("figX3", w.family, "analysis/{family}/{model}/probes.csv"),
        curves=lambda w: figure_inputs("figX3", w.family, "analysis/{family}/{model}/probe_curve.csv"),
    output:
        **fig_outputs("figX3"),
    params:
        **fig_params("figX3"),
        beyond=lambda w: beyond_cfg(w.family),
    log:
        f"{RESULTS}/logs/figures/figX3_{{family}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/figures/figX3_{{family}}.tsv"
    localrule: True
    conda:
        ENV_CPU
    script:
        "../scripts/figX3_regularizer_curves.py"


rule figX4:
    """Fig. X4: AUC vs test accuracy per regularizer strength; selectivity."""
    input:
        probes=lambda w: figure_inputs("figX4", w.family, "analysis/{family}/{model}/probes.csv"),
        curves=lambda w: figure_inputs("figX4", w.family, "analysis/{family}/{model}/probe_curve.csv"),
    output:
        **fig_outputs("figX4"),
    params:
        **fig_params("figX4"),
        beyond=lambda w: beyond_cfg(w.family),
    log:
        f"{RESULTS}/logs/figures/figX4_{{family}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/figures/figX4_{{family}}.tsv"
    localrule: True
    conda:
        ENV_CPU
    script:
        "../scripts/figX4_regularizer_auc.py"
