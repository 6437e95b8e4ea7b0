# The ImageNet ResNet family (appendix A.2): Figs. 1c, 7d-e, A2b, A3b and A4d-e.
#
# ImageNet does not fit in memory, so this family has its own rules (the generic
# per-model rules serve the in-memory families; FAMILIES in common.smk):
#   images on disk --imagenet_index--> index.csv.gz (every image once)
#     --imagenet_corrupt_labels--> labels_f<fraction>_s<seed>.npz
#     --imagenet_subset--> subset.csv (seeded, class-balanced, recorded)
#   imagenet_model: DDP training with torchrun inside one job (or pretrained weights)
#   imagenet_ablation / imagenet_units: per-model analyses on the subset (top-5)
#   imagenet_fig1 / fig7 / figA2 / figA3 / figA4 and imagenet_stats_table.
# The library side: singledir.imagenet (data), singledir.resnet (models and their unit
# layers), singledir.distributed (training).
import singledir.imagenet as imagenet_lib

IMAGENET = "imagenet"
IMAGENET_DATA = f"{RESULTS}/data/{IMAGENET}"
# Where rule imagenet_standin writes a generated stand-in (dataset.generate).
IMAGENET_STANDIN = f"{IMAGENET_DATA}/standin"


def imagenet_dataset():
    """The family's dataset section, with ``root`` pointing at the images."""
    ds = dict(family_cfg(IMAGENET)["dataset"])
    if ds.get("generate"):
        ds["root"] = IMAGENET_STANDIN
    return ds


def imagenet_images(wildcards):
    """The index rule's input: the generated stand-in, or nothing (the images are not a
    Snakemake file). A root without the expected layout is one clear error here, when the
    index is part of the DAG; nothing is listed or read."""
    ds = imagenet_dataset()
    if ds.get("generate"):
        return {"standin": IMAGENET_STANDIN}
    imagenet_lib.check_layout(ds)
    return {}


def imagenet_spec(wildcards):
    specs = plan.model_specs(config, IMAGENET)
    if wildcards.model not in specs:
        raise ValueError(f"model {wildcards.model!r} is not defined by families.{IMAGENET}.experiments; "
                         f"known models: {list(specs)}")
    return specs[wildcards.model]


def imagenet_labels(wildcards):
    return f"{IMAGENET_DATA}/{plan.label_file(imagenet_spec(wildcards))}"


def imagenet_checkpoint(wildcards):
    """A checkpoint file named by model.weights is an input (so a workflow output works too)."""
    from singledir.resnet import checkpoint_file

    path = checkpoint_file(imagenet_spec(wildcards)["model"])
    return [path] if path else []


def imagenet_train(wildcards):
    return imagenet_spec(wildcards)["train"]


def imagenet_trains(wildcards):
    """Whether the model is trained here (no model.weights)."""
    return not imagenet_spec(wildcards)["model"].get("weights")


def imagenet_fig_params(figure):
    return dict(
        specs=lambda w: {m: s for m, s in plan.model_specs(config, IMAGENET).items()
                         if s["experiment"] in plan.FIGURES[IMAGENET][figure]},
        scale=config["scale"],
        label=family_cfg(IMAGENET).get("label", IMAGENET) if IMAGENET in config["families"] else IMAGENET,
        bootstrap=config["bootstrap"],
        seed=config["seed"],
    )


def imagenet_fig_outputs(figure):
    return dict(
        pdf=f"{RESULTS}/{figure}_{IMAGENET}.pdf",
        csv=f"{RESULTS}/{figure}_{IMAGENET}.csv",
        stats=f"{RESULTS}/stats/{IMAGENET}/{figure}.csv",
    )


def imagenet_units_inputs(figure):
    return lambda w: figure_inputs(figure, IMAGENET, "analysis/{family}/{model}/units.csv")


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


def _imagenet_model_inputs(w):
    return {
        "model": f"{RESULTS}/models/{IMAGENET}/{w.model}/model.pt",
        "index": rules.imagenet_index.output.index,
        "labels": imagenet_labels(w),
        "subset": rules.imagenet_subset.output.subset,
    }


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


rule imagenet_units:
    """Per feature map: selectivity, mutual information, single-map ablation impact on the
    test loss, filter L1 norm."""
    input:
        unpack(_imagenet_model_inputs),
    output:
        units=f"{RESULTS}/analysis/{IMAGENET}/{{model}}/units.csv",
    params:
        analysis=lambda w: analysis_cfg(IMAGENET),
        dataset=lambda w: imagenet_dataset(),
        root=lambda w: imagenet_dataset()["root"],
        device=config["device"],
    threads: lambda w: int(analysis_cfg(IMAGENET).get("loader_workers", 0)) + 1
    log:
        f"{RESULTS}/logs/{IMAGENET}/units_{{model}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/{IMAGENET}/units_{{model}}.tsv"
    conda:
        ENV_TORCH
    script:
        "../scripts/imagenet_units.py"


rule imagenet_fig1:
    """Fig. 1c: cumulative ablation of feature maps in the last layers per corrupted fraction."""
    input:
        curves=lambda w: figure_inputs("fig1", IMAGENET, "analysis/{family}/{model}/ablation_zero.csv"),
    output:
        **imagenet_fig_outputs("fig1"),
    params:
        **imagenet_fig_params("fig1"),
        layers_note=lambda w: (f"last {-analysis_cfg(IMAGENET)['ablation_layers']} layers"
                               if isinstance(analysis_cfg(IMAGENET).get("ablation_layers"), int) else "chosen layers"),
    log:
        f"{RESULTS}/logs/figures/fig1_{IMAGENET}.log",
    benchmark:
        f"{RESULTS}/benchmarks/figures/fig1_{IMAGENET}.tsv"
    localrule: True
    conda:
        ENV_CPU
    script:
        "../scripts/imagenet_fig1_ablation.py"


rule imagenet_fig7:
    """Figs. 7d-e: class selectivity vs single-map ablation impact on test loss."""
    input:
        units=imagenet_units_inputs("fig7"),
    output:
        **imagenet_fig_outputs("fig7"),
    params:
        **imagenet_fig_params("fig7"),
        predictor="selectivity",
        xlabel="Class selectivity index",
        short="selectivity",
        title="ResNet: class selectivity vs ablation impact",
    log:
        f"{RESULTS}/logs/figures/fig7_{IMAGENET}.log",
    benchmark:
        f"{RESULTS}/benchmarks/figures/fig7_{IMAGENET}.tsv"
    localrule: True
    conda:
        ENV_CPU
    script:
        "../scripts/imagenet_fig_unit_importance.py"


rule imagenet_figA4:
    """Figs. A4d-e: mutual information vs single-map ablation impact on test loss."""
    input:
        units=imagenet_units_inputs("figA4"),
    output:
        **imagenet_fig_outputs("figA4"),
    params:
        **imagenet_fig_params("figA4"),
        predictor="mutual_information",
        xlabel="Mutual information (bits)",
        short="MI",
        title="ResNet: mutual information vs ablation impact",
    log:
        f"{RESULTS}/logs/figures/figA4_{IMAGENET}.log",
    benchmark:
        f"{RESULTS}/benchmarks/figures/figA4_{IMAGENET}.tsv"
    localrule: True
    conda:
        ENV_CPU
    script:
        "../scripts/imagenet_fig_unit_importance.py"


rule imagenet_figA2:
    """Fig. A2b: class selectivity distributions by depth."""
    input:
        units=imagenet_units_inputs("figA2"),
    output:
        **imagenet_fig_outputs("figA2"),
    params:
        **imagenet_fig_params("figA2"),
    log:
        f"{RESULTS}/logs/figures/figA2_{IMAGENET}.log",
    benchmark:
        f"{RESULTS}/benchmarks/figures/figA2_{IMAGENET}.tsv"
    localrule: True
    conda:
        ENV_CPU
    script:
        "../scripts/figA2_selectivity_by_depth.py"


rule imagenet_figA3:
    """Fig. A3b: class selectivity vs the L1 norm of the filter weights."""
    input:
        units=imagenet_units_inputs("figA3"),
    output:
        **imagenet_fig_outputs("figA3"),
    params:
        **imagenet_fig_params("figA3"),
    log:
        f"{RESULTS}/logs/figures/figA3_{IMAGENET}.log",
    benchmark:
        f"{RESULTS}/benchmarks/figures/figA3_{IMAGENET}.tsv"
    localrule: True
    conda:
        ENV_CPU
    script:
        "../scripts/figA3_selectivity_vs_l1.py"


rule imagenet_stats_table:
    """results/stats/imagenet.csv: every statistic of the family's figures."""
    input:
        lambda w: [f"{RESULTS}/stats/{IMAGENET}/{f.split('/')[-1].split('_')[0]}.csv" for f in figures_of(IMAGENET)],
    output:
        table=f"{RESULTS}/stats/{IMAGENET}.csv",
    log:
        f"{RESULTS}/logs/stats_table/{IMAGENET}.log",
    benchmark:
        f"{RESULTS}/benchmarks/stats_table/{IMAGENET}.tsv"
    localrule: True
    conda:
        ENV_CPU
    script:
        "../scripts/stats_table.py"
