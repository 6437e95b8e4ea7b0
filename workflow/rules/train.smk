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
    threads: 1
    log:
        f"{RESULTS}/logs/train_model/{{family}}/{{model}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train_model/{{family}}/{{model}}.tsv"
    script:
        "../scripts/train_model.py"
