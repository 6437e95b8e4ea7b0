rule train_model:
    """Train one model of an experiment; resumes from results/.work after a kill."""
    input:
        dataset=rules.prepare_dataset.output.dataset,
        labels=label_path,
    output:
        model=f"{RESULTS}/models/{{family}}/{{model}}/model.pt",
        history=f"{RESULTS}/models/{{family}}/{{model}}/history.csv",
    params:
        spec=spec_of,
        device=config["device"],
        work_dir=lambda w: f"{RESULTS}/.work/train/{w.family}/{w.model}/{plan.spec_hash(spec_of(w))}",
        # Snakemake forbids a benchmark: directive on a rule eligible for the between-workflow
        # cache, so the script writes the same benchmark file itself (not when taken from cache).
        benchmark=lambda w: f"{RESULTS}/benchmarks/train_model/{w.family}/{w.model}.tsv",
    threads: 1
    log:
        f"{RESULTS}/logs/train_model/{{family}}/{{model}}.log",
    # Trained models can be shared between clones: --cache with SNAKEMAKE_OUTPUT_CACHE set.
    cache: True
    conda:
        ENV_TORCH
    script:
        "../scripts/train_model.py"
