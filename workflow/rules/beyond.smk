# Beyond the paper (issue 16; README "Beyond the paper"): the paper's section 5 future work
# as experiments of the same DAG. E1: cheap reliance probes on training data for model
# selection (Fig. X1) and early stopping (Fig. X2), singledir.probes. E2: regularizers aimed
# at single-direction reliance (Figs. X3, X4), singledir.regularizers (training options of
# the generic train_model rule). Which experiments each figure reads: singledir.plan.FIGURES;
# probe settings: families.<family>.beyond (schema).


def beyond_cfg(family):
    return family_cfg(family).get("beyond", {})


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
    threads: 1
    log:
        f"{RESULTS}/logs/beyond_probes/{{family}}/{{model}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/beyond_probes/{{family}}/{{model}}.tsv"
    conda:
        ENV_TORCH
    script:
        "../scripts/beyond_probes.py"


def _beyond_figure(figure, script, doc):
    return dict(figure=figure, script=script, doc=doc)


for _fig, _script, _what in (
    ("figX1", "figX1_probe_selection.py", "Fig. X1: probe cost vs rank correlation with test accuracy (model selection)"),
    ("figX2", "figX2_probe_stopping.py", "Fig. X2: the epoch each probe stops at, and the test loss there (early stopping)"),
    ("figX3", "figX3_regularizer_curves.py", "Fig. X3: ablation curves per regularizer, clean and corrupted labels"),
    ("figX4", "figX4_regularizer_auc.py", "Fig. X4: AUC vs test accuracy per regularizer strength"),
):

    rule:
        name:
            _fig
        input:
            probes=lambda w, f=_fig: figure_inputs(f, w.family, "analysis/{family}/{model}/probes.csv"),
            curves=lambda w, f=_fig: figure_inputs(f, w.family, "analysis/{family}/{model}/probe_curve.csv"),
        output:
            **fig_outputs(_fig),
        params:
            **fig_params(_fig),
            beyond=lambda w: beyond_cfg(w.family),
        log:
            f"{RESULTS}/logs/figures/{_fig}_{{family}}.log",
        benchmark:
            f"{RESULTS}/benchmarks/figures/{_fig}_{{family}}.tsv"
        localrule: True
        conda:
            ENV_CPU
        script:
            f"../scripts/{_script}"
