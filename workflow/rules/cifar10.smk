# The CIFAR-10 ConvNet figures the generic rules do not draw (Figs. 3, 4b-c, 5b, 6, A1,
# A2a, A3a; the A2/A3 scripts are shared with the ImageNet family). Figs. 1b, 2b, 7b-c and
# A4b-c come from the generic rules in figures.smk. Which models feed which figure:
# singledir.pipeline.plan.FIGURES["cifar10"]; per-figure settings: families.cifar10.figures.
# Helpers (cifar10_files, cifar10_outputs, cifar10_params): workflow/rules/common.smk.


rule fig3_cifar10:
    """Fig. 3: ablation curves of the best and worst nets by generalization error, and
    normalized AUC against generalization error for every net (Spearman)."""
    input:
        curves=cifar10_files("fig3", "analysis/{family}/{model}/ablation_zero.csv"),
        histories=cifar10_files("fig3", "models/{family}/{model}/history.csv"),
    output:
        **cifar10_outputs("fig3"),
    params:
        **cifar10_params("fig3"),
    log:
        f"{RESULTS}/logs/figures/fig3_cifar10.log",
    benchmark:
        f"{RESULTS}/benchmarks/figures/fig3_cifar10.tsv"
    localrule: True
    conda:
        ENV_CPU
    script:
        "../scripts/fig3_generalization.py"


rule fig4_cifar10:
    """Fig. 4b: AUC vs test loss over the snapshots of one net; Fig. 4c: AUC vs test
    accuracy over a learning rate x batch size sweep, and AUC as a model-selection signal."""
    input:
        snapshots=lambda w: model_files("cifar10", "early_stopping", "analysis/{family}/{model}/training_auc.csv"),
        curves=lambda w: model_files("cifar10", "sweep", "analysis/{family}/{model}/ablation_zero.csv"),
        histories=lambda w: model_files("cifar10", "sweep", "models/{family}/{model}/history.csv"),
    output:
        **cifar10_outputs("fig4"),
    params:
        **cifar10_params("fig4"),
    log:
        f"{RESULTS}/logs/figures/fig4_cifar10.log",
    benchmark:
        f"{RESULTS}/benchmarks/figures/fig4_cifar10.tsv"
    localrule: True
    conda:
        ENV_CPU
    script:
        "../scripts/fig4bc_model_selection.py"


rule fig5_cifar10:
    """Fig. 5b: cumulative ablation curves of nets trained with and without batch norm."""
    input:
        curves=cifar10_files("fig5", "analysis/{family}/{model}/ablation_zero.csv"),
        histories=cifar10_files("fig5", "models/{family}/{model}/history.csv"),
    output:
        **cifar10_outputs("fig5"),
    params:
        **cifar10_params("fig5"),
    log:
        f"{RESULTS}/logs/figures/fig5_cifar10.log",
    benchmark:
        f"{RESULTS}/benchmarks/figures/fig5_cifar10.tsv"
    localrule: True
    conda:
        ENV_CPU
    script:
        "../scripts/fig5b_batchnorm.py"


rule fig6_cifar10:
    """Fig. 6: distributions of class selectivity and mutual information, with and without batch norm."""
    input:
        units=cifar10_files("fig6", "analysis/{family}/{model}/units.csv"),
    output:
        **cifar10_outputs("fig6"),
    params:
        **cifar10_params("fig6"),
    log:
        f"{RESULTS}/logs/figures/fig6_cifar10.log",
    benchmark:
        f"{RESULTS}/benchmarks/figures/fig6_cifar10.tsv"
    localrule: True
    conda:
        ENV_CPU
    script:
        "../scripts/fig6_batchnorm_selectivity.py"


rule figA1_cifar10:
    """Fig. A1: cumulative ablation to zero vs to the per-element training-set mean."""
    input:
        zero=cifar10_files("figA1", "analysis/{family}/{model}/ablation_zero.csv"),
        mean=cifar10_files("figA1", "analysis/{family}/{model}/ablation_mean.csv"),
    output:
        **cifar10_outputs("figA1"),
    params:
        **cifar10_params("figA1"),
    log:
        f"{RESULTS}/logs/figures/figA1_cifar10.log",
    benchmark:
        f"{RESULTS}/benchmarks/figures/figA1_cifar10.tsv"
    localrule: True
    conda:
        ENV_CPU
    script:
        "../scripts/figA1_ablation_methods.py"


rule figA2_cifar10:
    """Fig. A2a: class selectivity distribution per layer."""
    input:
        units=cifar10_files("figA2", "analysis/{family}/{model}/units.csv"),
    output:
        **cifar10_outputs("figA2"),
    params:
        **cifar10_params("figA2"),
    log:
        f"{RESULTS}/logs/figures/figA2_cifar10.log",
    benchmark:
        f"{RESULTS}/benchmarks/figures/figA2_cifar10.tsv"
    localrule: True
    conda:
        ENV_CPU
    script:
        "../scripts/figA2_selectivity_by_depth.py"


rule figA3_cifar10:
    """Fig. A3a: class selectivity vs the L1 norm of each feature map's filter weights."""
    input:
        units=cifar10_files("figA3", "analysis/{family}/{model}/units.csv"),
    output:
        **cifar10_outputs("figA3"),
    params:
        **cifar10_params("figA3"),
    log:
        f"{RESULTS}/logs/figures/figA3_cifar10.log",
    benchmark:
        f"{RESULTS}/benchmarks/figures/figA3_cifar10.tsv"
    localrule: True
    conda:
        ENV_CPU
    script:
        "../scripts/figA3_selectivity_vs_l1.py"
