# Training. One model per job (train_model), or a fused group of same-shaped models per
# job (train_group_*), where an experiment sets `fuse: K` in the config.
# FUSED_GROUPS and unfused_model_regex(): workflow/rules/common.smk.


rule train_model:
    """Train one model of an experiment; resumes from results/.work after a kill."""
    input:
        dataset=rules.prepare_dataset.output.dataset,
        labels=label_path,
    output:
        model=f"{RESULTS}/models/{{family}}/{{model}}/model.pt",
        history=f"{RESULTS}/models/{{family}}/{{model}}/history.csv",
    wildcard_constraints:
        model=unfused_model_regex(),
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


for _family, _groups in FUSED_GROUPS.items():
    for _gid, _members in _groups.items():
        _specs = [plan.model_specs(config, _family)[m] for m in _members]
        _labels = [f"{RESULTS}/data/{_family}/{plan.label_file(s)}" for s in _specs]

        rule:
            name:
                re.sub(r"\W", "_", f"train_group_{_family}_{_gid}")
            input:
                dataset=f"{RESULTS}/data/{_family}/dataset.npz",
                labels=sorted(set(_labels)),
            output:
                model=[f"{RESULTS}/models/{_family}/{m}/model.pt" for m in _members],
                history=[f"{RESULTS}/models/{_family}/{m}/history.csv" for m in _members],
            params:
                specs=_specs,
                labels=_labels,
                device=config["device"],
                work_dir=f"{RESULTS}/.work/train_group/{_family}/{_gid}/{plan.spec_hash(_specs)}",
            # what the profile gives train_model (gpu: 1 in the GPU profiles)
            resources:
                **profile_resources("train_model"),
            threads: 1
            log:
                f"{RESULTS}/logs/train_group/{_family}/{_gid}.log",
            benchmark:
                f"{RESULTS}/benchmarks/train_group/{_family}/{_gid}.tsv"
            conda:
                ENV_TORCH
            script:
                "../scripts/train_group.py"
