import singledir.data.sources as data_lib

# Content digests of npz sources, remembered per file identity (singledir.data.sources.file_sha256):
# a file is hashed again only when its size, mtime, ctime or inode changed.
SOURCE_DIGESTS = f"{RESULTS}/.work/source_digests.json"


rule prepare_dataset:
    """Load the family's dataset from its source, validate it and store it as one npz.
    An npz source's content digest is part of `spec`, so a file replaced at the same path
    reruns this rule and everything downstream. A local rule: on a cluster it runs where
    Snakemake runs, never through sbatch, and it downloads (torchvision, `download: true`)
    only outside a SLURM job (singledir.data.sources.load_torchvision)."""
    output:
        dataset=f"{RESULTS}/data/{{family}}/dataset.npz",
    params:
        spec=lambda w: data_lib.with_source_digest(family_cfg(w.family)["dataset"], SOURCE_DIGESTS),
    resources:
        mem_mb=estimated_mem_mb("prepare_dataset"),
    log:
        f"{RESULTS}/logs/prepare_dataset/{{family}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/prepare_dataset/{{family}}.tsv"
    localrule: True
    conda:
        ENV_CPU
    script:
        "../scripts/prepare_dataset.py"


rule corrupt_labels:
    """Shuffle the labels of a seeded random fraction of the training set (section 2.1),
    from the family's data file (dataset.npz, or the image index)."""
    input:
        data=family_data,
    output:
        labels=f"{RESULTS}/data/{{family}}/labels_f{{fraction}}_s{{seed}}.npz",
    wildcard_constraints:
        family=ANALYSED_FAMILIES,
        fraction=r"[0-9.]+",
        seed=r"[0-9]+",
    params:
        fraction=lambda w: float(w.fraction),
        seed=lambda w: int(w.seed),
    # seconds each: on a cluster many share one CPU job (singledir.pipeline.submissions)
    resources:
        runtime=job_runtime("corrupt_labels", 30),
        group_slot=1,
    group: job_group("corrupt_labels")
    log:
        f"{RESULTS}/logs/corrupt_labels/{{family}}_f{{fraction}}_s{{seed}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/corrupt_labels/{{family}}_f{{fraction}}_s{{seed}}.tsv"
    conda:
        ENV_CPU
    script:
        "../scripts/corrupt_labels.py"


# The login-node step of a cluster run (docs/cluster.md): every in-memory family's dataset,
# downloaded where the internet is reachable, before any job goes to a compute node:
#   snakemake --profile profiles/slurm data
# Image families (ImageNet) are read in place; nothing is fetched for them.
rule data:
    """Every dataset the config needs (results/data/<family>/dataset.npz), prepared here."""
    input:
        [f"{RESULTS}/data/{f}/dataset.npz" for f in plan.enabled_families(config) if not stores_images(f)],
    localrule: True


# Image families (IMAGE_FAMILIES, e.g. imagenet): the images stay on disk. The index lists
# every image once, the subset records the seeded, class-balanced analysis examples; the
# per-model rules read both through singledir.data.access (singledir.data.imagenet).
rule image_standin:
    """The demo's offline stand-in for an image family: a small ImageFolder of PNGs."""
    output:
        root=directory(f"{RESULTS}/data/{{family}}/standin"),
    wildcard_constraints:
        family=IMAGE_FAMILIES,
    params:
        dataset=lambda w: image_dataset(w.family),
    log:
        f"{RESULTS}/logs/image_standin/{{family}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/image_standin/{{family}}.tsv"
    conda:
        ENV_CPU
    script:
        "../scripts/image_standin.py"


rule image_index:
    """Every image of the train and val splits, listed once (torchvision ImageNet/ImageFolder)
    after decoding each one on the job's threads (singledir.data.check.check_images)."""
    input:
        unpack(image_folder_inputs),
    output:
        index=f"{RESULTS}/data/{{family}}/index.csv.gz",
        classes=f"{RESULTS}/data/{{family}}/classes.csv",
    wildcard_constraints:
        family=IMAGE_FAMILIES,
    threads: 8
    params:
        dataset=lambda w: image_dataset(w.family),
    log:
        f"{RESULTS}/logs/image_index/{{family}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/image_index/{{family}}.tsv"
    conda:
        ENV_CPU
    script:
        "../scripts/image_index.py"


rule image_subset:
    """The seeded, class-balanced analysis subset of each split, recorded."""
    input:
        index=rules.image_index.output.index,
    output:
        subset=f"{RESULTS}/data/{{family}}/subset.csv",
    wildcard_constraints:
        family=IMAGE_FAMILIES,
    params:
        analysis=lambda w: run_params.result_params(config, w.family, "analysis_subset"),
    log:
        f"{RESULTS}/logs/image_subset/{{family}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/image_subset/{{family}}.tsv"
    conda:
        ENV_CPU
    script:
        "../scripts/image_subset.py"
