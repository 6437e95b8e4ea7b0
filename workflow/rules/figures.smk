# One rule per paper figure. Each writes the PDF, the tidy CSV behind it, and its
# statistics (results/stats/<family>/<figure>.csv, gathered by rule stats_table).
# The plotting code is the rule's `script:`, so editing it reruns that figure only.


rule fig1:
    """Fig. 1: cumulative ablation curves per fraction of corrupted labels."""
    input:
        curves=lambda w: figure_inputs("fig1", w.family, "analysis/{family}/{model}/ablation_zero.csv"),
        histories=lambda w: figure_inputs("fig1", w.family, "models/{family}/{model}/history.csv"),
    output:
        **fig_outputs("fig1"),
    params:
        **fig_params("fig1"),
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
    """Fig. 2: accuracy under noise per fraction of corrupted labels."""
    input:
        curves=lambda w: figure_inputs("fig2", w.family, "analysis/{family}/{model}/noise.csv"),
        histories=lambda w: figure_inputs("fig2", w.family, "models/{family}/{model}/history.csv"),
    output:
        **fig_outputs("fig2"),
    params:
        **fig_params("fig2"),
    log:
        f"{RESULTS}/logs/figures/fig2_{{family}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/figures/fig2_{{family}}.tsv"
    localrule: True
    conda:
        ENV_CPU
    script:
        "../scripts/fig2_noise_by_corruption.py"


rule fig4_mnist:
    """Fig. 4a: train/test loss and ablation AUC over training (early stopping)."""
    input:
        tables=lambda w: figure_inputs("fig4", "mnist", "analysis/{family}/{model}/training_auc.csv"),
    output:
        pdf=report(f"{RESULTS}/fig4_mnist.pdf", caption="../report/fig4.rst", category="Figures", subcategory="mnist"),
        csv=f"{RESULTS}/fig4_mnist.csv",
        stats=f"{RESULTS}/stats/mnist/fig4.csv",
    params:
        scale=config["scale"],
        label=lambda w: family_cfg("mnist").get("label", "mnist"),
        bootstrap=config["bootstrap"],
        seed=config["seed"],
    log:
        f"{RESULTS}/logs/figures/fig4_mnist.log",
    benchmark:
        f"{RESULTS}/benchmarks/figures/fig4_mnist.tsv"
    localrule: True
    conda:
        ENV_CPU
    script:
        "../scripts/fig4a_early_stopping.py"


rule fig5_mnist:
    """Fig. 5a: cumulative ablation of dropout-trained MLPs, clean vs corrupted labels."""
    input:
        curves=lambda w: figure_inputs("fig5", "mnist", "analysis/{family}/{model}/ablation_zero.csv"),
    output:
        pdf=report(f"{RESULTS}/fig5_mnist.pdf", caption="../report/fig5.rst", category="Figures", subcategory="mnist"),
        csv=f"{RESULTS}/fig5_mnist.csv",
        stats=f"{RESULTS}/stats/mnist/fig5.csv",
    params:
        specs=specs_for("fig5", "mnist"),
        scale=config["scale"],
        label=lambda w: family_cfg("mnist").get("label", "mnist"),
        bootstrap=config["bootstrap"],
        seed=config["seed"],
    log:
        f"{RESULTS}/logs/figures/fig5_mnist.log",
    benchmark:
        f"{RESULTS}/benchmarks/figures/fig5_mnist.tsv"
    localrule: True
    conda:
        ENV_CPU
    script:
        "../scripts/fig5a_dropout.py"


rule fig7:
    """Fig. 7: class selectivity vs impact of single-unit ablation on test loss."""
    input:
        units=lambda w: figure_inputs("fig7", w.family, "analysis/{family}/{model}/units.csv"),
    output:
        **fig_outputs("fig7"),
    params:
        **fig_params("fig7"),
        predictor="selectivity",
        xlabel="Selectivity index",
        title="Class selectivity vs ablation impact",
    log:
        f"{RESULTS}/logs/figures/fig7_{{family}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/figures/fig7_{{family}}.tsv"
    localrule: True
    conda:
        ENV_CPU
    script:
        "../scripts/unit_importance.py"


rule figA4:
    """Fig. A4: mutual information vs impact of single-unit ablation on test loss."""
    input:
        units=lambda w: figure_inputs("figA4", w.family, "analysis/{family}/{model}/units.csv"),
    output:
        **fig_outputs("figA4"),
    params:
        **fig_params("figA4"),
        predictor="mutual_information",
        xlabel="Mutual information (bits)",
        title="Mutual information vs ablation impact",
    log:
        f"{RESULTS}/logs/figures/figA4_{{family}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/figures/figA4_{{family}}.tsv"
    localrule: True
    conda:
        ENV_CPU
    script:
        "../scripts/unit_importance.py"


rule stats_table:
    """results/stats/<family>.csv: every statistic of the family's figures."""
    input:
        lambda w: [f"{RESULTS}/stats/{w.family}/{os.path.basename(f).split('_')[0]}.csv" for f in figures_of(w.family)],
    output:
        table=f"{RESULTS}/stats/{{family}}.csv",
    log:
        f"{RESULTS}/logs/stats_table/{{family}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/stats_table/{{family}}.tsv"
    localrule: True
    conda:
        ENV_CPU
    script:
        "../scripts/stats_table.py"
