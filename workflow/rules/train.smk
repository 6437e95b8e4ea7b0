# Training: one rule set and one script (workflow/scripts/train.py, which calls
# singledir.training.api.train) for every family. train_model trains one model (the epoch
# loop on in-memory data, or step-based DDP on an image folder); where an experiment sets
# `fuse: K`, a rule per group of up to K same-shaped models (defined in a loop below from
# singledir.pipeline.groups) trains the group in one job, writing each member's usual
# model.pt and history.csv. train_model's `model` wildcard excludes grouped models, so no
# file has two producing rules. Speed settings (singledir.training.options.RUN_OPTION_KEYS,
# `device`) are read by the script from the config, never params: editing them reruns nothing.


rule train_model:
    """Train one model of an experiment (or take model.weights); resumes from results/.work after a kill."""
    input:
        unpack(training_inputs),
    output:
        model=f"{RESULTS}/models/{{family}}/{{model}}/model.pt",
        history=f"{RESULTS}/models/{{family}}/{{model}}/history.csv",
    wildcard_constraints:
        family=ANALYSED_FAMILIES,
        model=unfused_model_regex(),
    params:
        specs=lambda w: [spec_of(w)],
        labels=lambda w: [label_path(w)],
        # an image family's dataset section (root, transforms); nothing for in-memory data
        dataset=lambda w: image_dataset(w.family) if stores_images(w.family) else {},
        work_dir=lambda w: f"{RESULTS}/.work/train/{w.family}/{w.model}/{plan.spec_hash(spec_of(w))}",
        # Snakemake forbids a benchmark: directive on a rule eligible for the between-workflow
        # cache, so the script writes the same benchmark file itself (not when taken from cache).
        benchmark=lambda w: f"{RESULTS}/benchmarks/train_model/{w.family}/{w.model}.tsv",
    # GPUs from the config (nodes x gpus_per_node of the experiment's train section; none
    # with device: cpu); runtime per kind of data; memory from the plan's estimate. A profile's set-resources
    # for train_model would override these for every family.
    resources:
        gpu=lambda w: training_resources(w.family, spec_of(w))["gpu"],
        nodes=lambda w: training_resources(w.family, spec_of(w))["nodes"],
        cpus_per_task=lambda w: training_resources(w.family, spec_of(w))["cpus_per_task"],
        runtime=job_runtime("train_model", lambda w: training_resources(w.family, spec_of(w))["runtime"]),
        mem_mb=lambda w: training_resources(w.family, spec_of(w))["mem_mb"],
        group_slot=1,
    threads: lambda w: training_resources(w.family, spec_of(w))["cpus_per_task"]
    group: job_group("train_model")
    log:
        f"{RESULTS}/logs/train_model/{{family}}/{{model}}.log",
    # Trained models can be shared between clones: --cache with SNAKEMAKE_OUTPUT_CACHE set.
    cache: True
    conda:
        ENV_TORCH
    script:
        "../scripts/train.py"


for _name, _family, _gid, _members in model_groups.group_rules("train_group", FUSED_GROUPS):
    _specs = [family_specs(_family)[m] for m in _members]

    rule:
        name:
            _name
        input:
            dataset=f"{RESULTS}/data/{_family}/dataset.npz",
            labels=sorted({f"{RESULTS}/data/{_family}/{plan.label_file(s)}" for s in _specs}),
        output:
            model=[f"{RESULTS}/models/{_family}/{m}/model.pt" for m in _members],
            history=[f"{RESULTS}/models/{_family}/{m}/history.csv" for m in _members],
        params:
            specs=_specs,
            labels=[f"{RESULTS}/data/{_family}/{plan.label_file(s)}" for s in _specs],
            work_dir=f"{RESULTS}/.work/train_group/{_family}/{_gid}/{plan.spec_hash(_specs)}",
        resources:
            **{**profile_resources("train_model"), **training_resources(_family, _specs[0], len(_specs))},
        threads: 1
        log:
            f"{RESULTS}/logs/train_group/{_family}/{_gid}.log",
        benchmark:
            f"{RESULTS}/benchmarks/train_group/{_family}/{_gid}.tsv"
        conda:
            ENV_TORCH
        script:
            "../scripts/train.py"
