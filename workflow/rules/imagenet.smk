# The ImageNet ResNet family (appendix A.2): Figs. 1c, 7d-e, A2b, A3b and A4d-e.
#
# ImageNet does not fit in memory, so this family has its own rules (the generic
# per-model rules serve the in-memory families; FAMILIES in common.smk):
#   images on disk --imagenet_index--> index.csv.gz (every image once)
#     --imagenet_corrupt_labels--> labels_f<fraction>_s<seed>.npz
#     --imagenet_subset--> subset.csv (seeded, class-balanced, recorded)
#   imagenet_model: DDP training with torchrun inside one job (or pretrained weights)
#   imagenet_ablation / imagenet_units: per-model analyses on the subset (top-5); the per-map
#   analysis runs as analysis.unit_shards jobs (imagenet_units_shard) merged by imagenet_units
# Its figures (Figs. 1c, 7d-e, A2b, A3b, A4d-e) come from the figure rules in figures.smk.
# The library side: singledir.data.imagenet (data), singledir.models.resnet (models and their unit
# layers), singledir.training.distributed (training).


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


rule imagenet_corrupt_labels:
    """Shuffle the labels of a seeded random fraction of the training images (section 2.1)."""
    input:
        index=rules.imagenet_index.output.index,
    output:
        labels=f"{IMAGENET_DATA}/labels_f{{fraction}}_s{{seed}}.npz",
    wildcard_constraints:
        fraction=r"[0-9.]+",
        seed=r"[0-9]+",
    params:
        fraction=lambda w: float(w.fraction),
        seed=lambda w: int(w.seed),
    log:
        f"{RESULTS}/logs/{IMAGENET}/corrupt_labels_f{{fraction}}_s{{seed}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/{IMAGENET}/corrupt_labels_f{{fraction}}_s{{seed}}.tsv"
    conda:
        ENV_CPU
    script:
        "../scripts/imagenet_corrupt_labels.py"


rule imagenet_subset:
    """The seeded, class-balanced analysis subset of each split, recorded."""
    input:
        index=rules.imagenet_index.output.index,
    output:
        subset=f"{IMAGENET_DATA}/subset.csv",
    params:
        analysis=lambda w: analysis_cfg(IMAGENET),
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


rule imagenet_ablation:
    """Cumulative ablation curves (zero) of analysis.ablation_layers on the training subset."""
    input:
        unpack(_imagenet_model_inputs),
    output:
        curve=f"{RESULTS}/analysis/{IMAGENET}/{{model}}/ablation_zero.csv",
    params:
        analysis=lambda w: analysis_cfg(IMAGENET),
        dataset=lambda w: imagenet_dataset(),
        root=lambda w: imagenet_dataset()["root"],
        seed=config["seed"],
        device=config["device"],
    threads: lambda w: int(analysis_cfg(IMAGENET).get("loader_workers", 0)) + 1
    log:
        f"{RESULTS}/logs/{IMAGENET}/ablation_{{model}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/{IMAGENET}/ablation_{{model}}.tsv"
    conda:
        ENV_TORCH
    script:
        "../scripts/imagenet_ablation.py"


rule imagenet_units_shard:
    """Per feature map of one group of layers (singledir.analysis.unit_shards): selectivity, mutual
    information, single-map ablation impact on the test loss, filter L1 norm. The shard
    count is in the file name, so changing analysis.unit_shards makes new shards."""
    input:
        unpack(_imagenet_model_inputs),
    output:
        units=f"{RESULTS}/analysis/{IMAGENET}/{{model}}/unit_shards/{{shard}}_of_{{n}}.csv",
    wildcard_constraints:
        shard=r"\d+",
        n=r"\d+",
    params:
        analysis=lambda w: analysis_cfg(IMAGENET),
        dataset=lambda w: imagenet_dataset(),
        root=lambda w: imagenet_dataset()["root"],
        device=config["device"],
        shard=lambda w: int(w.shard),
        n_shards=lambda w: int(w.n),
    threads: lambda w: int(analysis_cfg(IMAGENET).get("loader_workers", 0)) + 1
    log:
        f"{RESULTS}/logs/{IMAGENET}/units_{{model}}_shard{{shard}}_of_{{n}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/{IMAGENET}/units_{{model}}_shard{{shard}}_of_{{n}}.tsv"
    conda:
        ENV_TORCH
    script:
        "../scripts/imagenet_units.py"


rule imagenet_units:
    """The shards' tables concatenated (cheap): the per-map table of one model."""
    input:
        shards=lambda w: [f"{RESULTS}/analysis/{IMAGENET}/{w.model}/unit_shards/{i}_of_{imagenet_unit_shards()}.csv"
                          for i in range(imagenet_unit_shards())],
    output:
        units=f"{RESULTS}/analysis/{IMAGENET}/{{model}}/units.csv",
    log:
        f"{RESULTS}/logs/{IMAGENET}/units_{{model}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/{IMAGENET}/units_{{model}}.tsv"
    localrule: True
    conda:
        ENV_CPU
    script:
        "../scripts/imagenet_units_merge.py"
