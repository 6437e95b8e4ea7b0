# Per-model rules, one set for every family ({family}: ANALYSED_FAMILIES in common.smk).
# Their inputs (_model_inputs: dataset.npz, or the image index with the recorded subset)
# and params (result_params: only what defines the numbers, singledir.pipeline.params)
# come from common.smk; the scripts read the speed knobs (chunk_size, max_rows, method,
# loader_workers, device) from the config through singledir.pipeline.params.speed_settings,
# so changing one reruns nothing.


rule ablation_curve:
    """Cumulative ablation curves (zero or mean clamping) on the training data."""
    input:
        unpack(_model_inputs),
    output:
        curve=f"{RESULTS}/analysis/{{family}}/{{model}}/ablation_{{mode}}.csv",
    wildcard_constraints:
        family=ANALYSED_FAMILIES,
    params:
        analysis=result_params("ablation_curve"),
    # On a cluster (profiles/slurm gives the GPU): an image family's ResNet curves take up
    # to ~12 h at paper scale, the in-memory families' far less; memory: the plan's estimate
    # (estimated_mem_mb). A profile's set-resources for this rule would override both.
    resources:
        runtime=job_runtime("ablation_curve", lambda w: 720 if stores_images(w.family) else 240),
        mem_mb=estimated_mem_mb("ablation_curve"),
        group_slot=1,
    threads: analysis_threads
    group: job_group("ablation_curve")
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
    wildcard_constraints:
        family=ANALYSED_FAMILIES,
    params:
        analysis=result_params("noise_curve"),
    resources:
        runtime=job_runtime("noise_curve", 240),
        mem_mb=estimated_mem_mb("noise_curve"),
        group_slot=1,
    threads: analysis_threads
    group: job_group("noise_curve")
    log:
        f"{RESULTS}/logs/noise_curve/{{family}}/{{model}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/noise_curve/{{family}}/{{model}}.tsv"
    conda:
        ENV_TORCH
    script:
        "../scripts/noise_curve.py"


rule unit_shard:
    """The per-unit table of one group of layers (singledir.analysis.unit_shards), when
    analysis.unit_shards splits a model's analysis into several jobs. The shard count is in
    the file name, so changing analysis.unit_shards makes new shards."""
    input:
        unpack(_model_inputs),
    output:
        units=f"{RESULTS}/analysis/{{family}}/{{model}}/unit_shards/{{shard}}_of_{{n}}.csv",
    wildcard_constraints:
        family=ANALYSED_FAMILIES,
        shard=r"\d+",
        n=r"\d+",
    params:
        analysis=result_params("unit_analysis"),
        shard=lambda w: int(w.shard),
        n_shards=lambda w: int(w.n),
    resources:
        mem_mb=estimated_mem_mb("unit_shard"),
    threads: analysis_threads
    log:
        f"{RESULTS}/logs/unit_shard/{{family}}/{{model}}_{{shard}}_of_{{n}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/unit_shard/{{family}}/{{model}}_{{shard}}_of_{{n}}.tsv"
    conda:
        ENV_TORCH
    script:
        "../scripts/unit_analysis.py"


rule unit_analysis:
    """Per unit: class selectivity, mutual information, single-unit ablation impact on
    test loss, and the L1 norm of its incoming weights; computed here, or merged from the
    unit_shard jobs' tables (analysis.unit_shards > 1)."""
    input:
        unpack(unit_analysis_inputs),
    output:
        units=f"{RESULTS}/analysis/{{family}}/{{model}}/units.csv",
    wildcard_constraints:
        family=ANALYSED_FAMILIES,
    params:
        analysis=result_params("unit_analysis"),
    resources:
        runtime=job_runtime("unit_analysis", 240),
        mem_mb=estimated_mem_mb("unit_analysis"),
        group_slot=1,
    threads: analysis_threads
    group: job_group("unit_analysis")
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
    wildcard_constraints:
        family=ANALYSED_FAMILIES,
    params:
        analysis=result_params("training_auc"),
    resources:
        runtime=job_runtime("training_auc", 240),
        mem_mb=estimated_mem_mb("training_auc"),
        group_slot=1,
    threads: analysis_threads
    group: job_group("training_auc")
    log:
        f"{RESULTS}/logs/training_auc/{{family}}/{{model}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/training_auc/{{family}}/{{model}}.tsv"
    conda:
        ENV_TORCH
    script:
        "../scripts/training_auc.py"
