rule ablation_curve:
    """Cumulative ablation curves (zero or mean clamping) on the training set."""
    input:
        unpack(_model_inputs),
    output:
        curve=f"{RESULTS}/analysis/{{family}}/{{model}}/ablation_{{mode}}.csv",
    params:
        analysis=lambda w: analysis_cfg(w.family),
        seed=config["seed"],
        device=config["device"],
    threads: 1
    log:
        f"{RESULTS}/logs/ablation_curve/{{family}}/{{model}}_{{mode}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/ablation_curve/{{family}}/{{model}}_{{mode}}.tsv"
    conda:
        ENV_TORCH
    script:
        "../scripts/ablation_curve.py"


rule noise_curve:
    """Accuracy under Gaussian noise scaled by each unit's training-set variance."""
    input:
        unpack(_model_inputs),
    output:
        curve=f"{RESULTS}/analysis/{{family}}/{{model}}/noise.csv",
    params:
        analysis=lambda w: analysis_cfg(w.family),
        seed=config["seed"],
        device=config["device"],
    threads: 1
    log:
        f"{RESULTS}/logs/noise_curve/{{family}}/{{model}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/noise_curve/{{family}}/{{model}}.tsv"
    conda:
        ENV_TORCH
    script:
        "../scripts/noise_curve.py"


rule unit_analysis:
    """Per unit: class selectivity, mutual information, single-unit ablation impact on
    test loss, and the L1 norm of its incoming weights."""
    input:
        unpack(_model_inputs),
    output:
        units=f"{RESULTS}/analysis/{{family}}/{{model}}/units.csv",
    params:
        analysis=lambda w: analysis_cfg(w.family),
        device=config["device"],
    threads: 1
    log:
        f"{RESULTS}/logs/unit_analysis/{{family}}/{{model}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/unit_analysis/{{family}}/{{model}}.tsv"
    conda:
        ENV_TORCH
    script:
        "../scripts/unit_analysis.py"


rule training_auc:
    """Normalized ablation AUC of every training snapshot, joined with the loss history."""
    input:
        unpack(_model_inputs),
        history=f"{RESULTS}/models/{{family}}/{{model}}/history.csv",
    output:
        table=f"{RESULTS}/analysis/{{family}}/{{model}}/training_auc.csv",
    params:
        analysis=lambda w: analysis_cfg(w.family),
        seed=config["seed"],
        device=config["device"],
    threads: 1
    log:
        f"{RESULTS}/logs/training_auc/{{family}}/{{model}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/training_auc/{{family}}/{{model}}.tsv"
    conda:
        ENV_TORCH
    script:
        "../scripts/training_auc.py"
