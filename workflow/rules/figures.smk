# One rule per figure, named after it: rule figN makes results/figN_<family>.pdf (with its
# tidy CSV and its statistics, results/stats/<family>/figN.csv) for every family that has
# the figure. What each reads, for which experiments, and its settings come from the figure
# registry (singledir.figures.registry) through the helpers in figures_common.smk; the
# plotting code is the rule's `script:` (one per figure, workflow/scripts/figN_*.py), so
# editing it reruns that figure only. Rules are written out, not made in a loop: a
# script: path in a loop would be read when the job runs, i.e. the loop's last value.


rule fig1:
    """Fig. 1 (a MNIST, b CIFAR-10, c ImageNet): cumulative ablation curves per fraction of corrupted labels."""
    input:
        unpack(figure_inputs("fig1")),
    output:
        **figure_outputs("fig1"),
    params:
        **figure_params("fig1"),
    wildcard_constraints:
        family=figure_families("fig1"),
    log:
        f"{RESULTS}/logs/figures/fig1_{{family}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/figures/fig1_{{family}}.tsv"
    localrule: True
    conda:
        ENV_CPU
    script:
        "../scripts/fig1_ablation_by_corruption.py"


rule fig2:
    """Fig. 2 (a MNIST, b CIFAR-10): accuracy under noise per fraction of corrupted labels."""
    input:
        unpack(figure_inputs("fig2")),
    output:
        **figure_outputs("fig2"),
    params:
        **figure_params("fig2"),
    wildcard_constraints:
        family=figure_families("fig2"),
    log:
        f"{RESULTS}/logs/figures/fig2_{{family}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/figures/fig2_{{family}}.tsv"
    localrule: True
    conda:
        ENV_CPU
    script:
        "../scripts/fig2_noise_by_corruption.py"


rule fig3:
    """Fig. 3 (CIFAR-10): ablation curves of the best and worst nets by generalization error, and
    normalized AUC against generalization error for every net (Spearman)."""
    input:
        unpack(figure_inputs("fig3")),
    output:
        **figure_outputs("fig3"),
    params:
        **figure_params("fig3"),
    wildcard_constraints:
        family=figure_families("fig3"),
    log:
        f"{RESULTS}/logs/figures/fig3_{{family}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/figures/fig3_{{family}}.tsv"
    localrule: True
    conda:
        ENV_CPU
    script:
        "../scripts/fig3_generalization.py"


rule fig4:
    """Fig. 4a (MNIST): train/test loss and ablation AUC over training (early stopping); Figs. 4b-c
    (CIFAR-10): AUC vs test loss over the snapshots of one net, and AUC vs test accuracy over a
    learning rate x batch size sweep, with AUC as a model-selection signal."""
    input:
        unpack(figure_inputs("fig4")),
    output:
        **figure_outputs("fig4"),
    params:
        **figure_params("fig4"),
    wildcard_constraints:
        family=figure_families("fig4"),
    log:
        f"{RESULTS}/logs/figures/fig4_{{family}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/figures/fig4_{{family}}.tsv"
    localrule: True
    conda:
        ENV_CPU
    script:
        "../scripts/fig4_selection_and_early_stopping.py"


rule fig5:
    """Fig. 5a (MNIST): cumulative ablation of dropout-trained MLPs, clean vs corrupted labels;
    Fig. 5b (CIFAR-10): cumulative ablation of nets trained with and without batch norm."""
    input:
        unpack(figure_inputs("fig5")),
    output:
        **figure_outputs("fig5"),
    params:
        **figure_params("fig5"),
    wildcard_constraints:
        family=figure_families("fig5"),
    log:
        f"{RESULTS}/logs/figures/fig5_{{family}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/figures/fig5_{{family}}.tsv"
    localrule: True
    conda:
        ENV_CPU
    script:
        "../scripts/fig5_regularizers.py"


rule fig6:
    """Fig. 6 (CIFAR-10): distributions of class selectivity and mutual information, with and without batch norm."""
    input:
        unpack(figure_inputs("fig6")),
    output:
        **figure_outputs("fig6"),
    params:
        **figure_params("fig6"),
    wildcard_constraints:
        family=figure_families("fig6"),
    log:
        f"{RESULTS}/logs/figures/fig6_{{family}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/figures/fig6_{{family}}.tsv"
    localrule: True
    conda:
        ENV_CPU
    script:
        "../scripts/fig6_batchnorm_selectivity.py"


rule fig7:
    """Fig. 7 (a MNIST, b-c CIFAR-10, d-e ImageNet): class selectivity vs the impact of single-unit
    ablation on test loss."""
    input:
        unpack(figure_inputs("fig7")),
    output:
        **figure_outputs("fig7"),
    params:
        **figure_params("fig7"),
    wildcard_constraints:
        family=figure_families("fig7"),
    log:
        f"{RESULTS}/logs/figures/fig7_{{family}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/figures/fig7_{{family}}.tsv"
    localrule: True
    conda:
        ENV_CPU
    script:
        "../scripts/unit_importance_scatter.py"


rule figA1:
    """Fig. A1 (CIFAR-10): cumulative ablation to zero vs to the per-element training-set mean."""
    input:
        unpack(figure_inputs("figA1")),
    output:
        **figure_outputs("figA1"),
    params:
        **figure_params("figA1"),
    wildcard_constraints:
        family=figure_families("figA1"),
    log:
        f"{RESULTS}/logs/figures/figA1_{{family}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/figures/figA1_{{family}}.tsv"
    localrule: True
    conda:
        ENV_CPU
    script:
        "../scripts/figA1_ablation_methods.py"


rule figA2:
    """Fig. A2 (a CIFAR-10, b ImageNet): class selectivity distribution per layer."""
    input:
        unpack(figure_inputs("figA2")),
    output:
        **figure_outputs("figA2"),
    params:
        **figure_params("figA2"),
    wildcard_constraints:
        family=figure_families("figA2"),
    log:
        f"{RESULTS}/logs/figures/figA2_{{family}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/figures/figA2_{{family}}.tsv"
    localrule: True
    conda:
        ENV_CPU
    script:
        "../scripts/figA2_selectivity_by_depth.py"


rule figA3:
    """Fig. A3 (a CIFAR-10, b ImageNet): class selectivity vs the L1 norm of each feature map's filter weights."""
    input:
        unpack(figure_inputs("figA3")),
    output:
        **figure_outputs("figA3"),
    params:
        **figure_params("figA3"),
    wildcard_constraints:
        family=figure_families("figA3"),
    log:
        f"{RESULTS}/logs/figures/figA3_{{family}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/figures/figA3_{{family}}.tsv"
    localrule: True
    conda:
        ENV_CPU
    script:
        "../scripts/figA3_selectivity_vs_l1.py"


rule figA4:
    """Fig. A4 (a MNIST, b-c CIFAR-10, d-e ImageNet): mutual information vs the impact of single-unit
    ablation on test loss."""
    input:
        unpack(figure_inputs("figA4")),
    output:
        **figure_outputs("figA4"),
    params:
        **figure_params("figA4"),
    wildcard_constraints:
        family=figure_families("figA4"),
    log:
        f"{RESULTS}/logs/figures/figA4_{{family}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/figures/figA4_{{family}}.tsv"
    localrule: True
    conda:
        ENV_CPU
    script:
        "../scripts/unit_importance_scatter.py"


rule figX1:
    """Fig. X1 (beyond the paper): probe cost vs rank correlation with test accuracy (model selection)."""
    input:
        unpack(figure_inputs("figX1")),
    output:
        **figure_outputs("figX1"),
    params:
        **figure_params("figX1"),
    wildcard_constraints:
        family=figure_families("figX1"),
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
    """Fig. X2 (beyond the paper): the epoch each probe stops at, and the test loss there (early stopping)."""
    input:
        unpack(figure_inputs("figX2")),
    output:
        **figure_outputs("figX2"),
    params:
        **figure_params("figX2"),
    wildcard_constraints:
        family=figure_families("figX2"),
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
    """Fig. X3 (beyond the paper): ablation curves per regularizer, clean and corrupted labels."""
    input:
        unpack(figure_inputs("figX3")),
    output:
        **figure_outputs("figX3"),
    params:
        **figure_params("figX3"),
    wildcard_constraints:
        family=figure_families("figX3"),
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
    """Fig. X4 (beyond the paper): AUC vs test accuracy per regularizer strength; selectivity."""
    input:
        unpack(figure_inputs("figX4")),
    output:
        **figure_outputs("figX4"),
    params:
        **figure_params("figX4"),
    wildcard_constraints:
        family=figure_families("figX4"),
    log:
        f"{RESULTS}/logs/figures/figX4_{{family}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/figures/figX4_{{family}}.tsv"
    localrule: True
    conda:
        ENV_CPU
    script:
        "../scripts/figX4_regularizer_auc.py"


rule stats_table:
    """results/stats/<family>.csv: every statistic of the family's figures."""
    input:
        family_stats_parts,
    output:
        table=f"{RESULTS}/stats/{{family}}.csv",
    wildcard_constraints:
        family="|".join(figure_registry.FAMILIES),
    log:
        f"{RESULTS}/logs/stats_table/{{family}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/stats_table/{{family}}.tsv"
    localrule: True
    conda:
        ENV_CPU
    script:
        "../scripts/stats_table.py"


rule unknown_figure:
    """A results/fig*_*.pdf or .csv this project does not draw: stops before any job with
    the figures and families it knows (input function unknown_figure in figures_common.smk)."""
    input:
        unknown_figure,
    output:
        f"{RESULTS}/{{target}}.{{ext}}",
    wildcard_constraints:
        target=unknown_figure_regex(),
        ext="pdf|csv",
    log:
        f"{RESULTS}/logs/unknown_figure/{{target}}.{{ext}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/unknown_figure/{{target}}.{{ext}}.tsv"
    localrule: True
    conda:
        ENV_CPU
    shell:
        "echo '{output} is not a figure of this project' > {log}; exit 1"
