# The ImageNet ResNet family (appendix A.2): Figs. 1c, 7d-e, A2b, A3b and A4d-e.
#
# ImageNet does not fit in memory, so its data stays on disk; only what is truly
# ImageNet-specific has its own rule here:
#   images on disk --imagenet_index--> index.csv.gz (every image once)
#     --imagenet_subset--> subset.csv (seeded, class-balanced, recorded)
#   imagenet_model: DDP training with torchrun inside one job (or pretrained weights)
# The per-model rules of every family serve it too (workflow/rules/data.smk, analysis.smk):
# corrupt_labels (labels_f<fraction>_s<seed>.npz from the index), ablation_curve, and
# unit_analysis (split into unit_shard jobs by analysis.unit_shards), reading the subset
# through singledir.data.access. Its figures (Figs. 1c, 7d-e, A2b, A3b, A4d-e) come from the
# figure rules in figures.smk (one rule per figure, for every family).
# The library side: singledir.data.imagenet (data), singledir.models.resnet (models and their unit
# layers), singledir.training.distributed (training), singledir.models.api (model files).


include: "imagenet_common.smk"


rule imagenet_standin:
    """The demo's offline stand-in for ImageNet: a small ImageFolder of PNGs."""
    output:
        root=directory(IMAGENET_STANDIN),
    params:
        dataset=lambda w: imagenet_dataset(),
    log:
        f"{RESULTS}/logs/{IMAGENET}/standin.log",
    benchmark:
        f"{RESULTS}/benchmarks/{IMAGENET}/standin.tsv"
    conda:
        ENV_CPU
    script:
        "../scripts/imagenet_standin.py"


rule imagenet_index:
    """Every image of the train and val splits, listed once (torchvision ImageNet/ImageFolder)."""
    input:
        unpack(imagenet_images),
    output:
        index=f"{IMAGENET_DATA}/index.csv.gz",
        classes=f"{IMAGENET_DATA}/classes.csv",
    params:
        dataset=lambda w: imagenet_dataset(),
    log:
        f"{RESULTS}/logs/{IMAGENET}/index.log",
    benchmark:
        f"{RESULTS}/benchmarks/{IMAGENET}/index.tsv"
    conda:
        ENV_CPU
    script:
        "../scripts/imagenet_index.py"


rule imagenet_subset:
    """The seeded, class-balanced analysis subset of each split, recorded."""
    input:
        index=rules.imagenet_index.output.index,
    output:
        subset=f"{IMAGENET_DATA}/subset.csv",
    params:
        analysis=lambda w: run_params.result_params(config, IMAGENET, "analysis_subset"),
    log:
        f"{RESULTS}/logs/{IMAGENET}/subset.log",
    benchmark:
        f"{RESULTS}/benchmarks/{IMAGENET}/subset.tsv"
    conda:
        ENV_CPU
    script:
        "../scripts/imagenet_subset.py"


rule imagenet_model:
    """Train one ResNet with DDP over train.nodes x train.gpus_per_node processes (torchrun
    inside this job; checkpoints every train.checkpoint_every steps in results/.work, a rerun
    resumes, SIGTERM/SIGUSR1 checkpoint before exit), or take model.weights (torchvision's
    pretrained weights or a checkpoint file) without training."""
    input:
        index=rules.imagenet_index.output.index,
        labels=imagenet_labels,
        checkpoint=imagenet_checkpoint,
    output:
        model=f"{RESULTS}/models/{IMAGENET}/{{model}}/model.pt",
        history=f"{RESULTS}/models/{IMAGENET}/{{model}}/history.csv",
    params:
        spec=imagenet_spec,
        dataset=lambda w: imagenet_dataset(),
        root=lambda w: imagenet_dataset()["root"],
        device=config["device"],
        work_dir=lambda w: f"{RESULTS}/.work/train/{IMAGENET}/{w.model}/{plan.spec_hash(imagenet_spec(w))}",
    # The job asks for every GPU its training processes use; several nodes need the
    # slurm profile (see config/config.yaml, families.imagenet.train.nodes).
    resources:
        gpu=lambda w: (int(imagenet_train(w).get("nodes", 1)) * int(imagenet_train(w).get("gpus_per_node", 0) or 0)
                       if imagenet_trains(w) else 0),
        nodes=lambda w: int(imagenet_train(w).get("nodes", 1)) if imagenet_trains(w) else 1,
        # On SLURM the CPUs of the job (image decoding); a rule's own value beats a
        # profile's default-resources.
        cpus_per_task=lambda w: int(imagenet_train(w).get("threads", 1)) if imagenet_trains(w) else 1,
    threads: lambda w: int(imagenet_train(w).get("threads", 1)) if imagenet_trains(w) else 1
    log:
        f"{RESULTS}/logs/{IMAGENET}/model_{{model}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/{IMAGENET}/model_{{model}}.tsv"
    conda:
        ENV_TORCH
    script:
        "../scripts/imagenet_model.py"
