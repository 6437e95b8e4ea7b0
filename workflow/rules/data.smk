rule prepare_dataset:
    """Load the family's dataset from its source and store it as one npz."""
    output:
        dataset=f"{RESULTS}/data/{{family}}/dataset.npz",
    params:
        spec=lambda w: family_cfg(w.family)["dataset"],
    log:
        f"{RESULTS}/logs/prepare_dataset/{{family}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/prepare_dataset/{{family}}.tsv"
    conda:
        ENV_CPU
    script:
        "../scripts/prepare_dataset.py"


rule corrupt_labels:
    """Shuffle the labels of a seeded random fraction of the training set (section 2.1)."""
    input:
        dataset=rules.prepare_dataset.output.dataset,
    output:
        labels=f"{RESULTS}/data/{{family}}/labels_f{{fraction}}_s{{seed}}.npz",
    wildcard_constraints:
        fraction=r"[0-9.]+",
        seed=r"[0-9]+",
    params:
        fraction=lambda w: float(w.fraction),
        seed=lambda w: int(w.seed),
    log:
        f"{RESULTS}/logs/corrupt_labels/{{family}}_f{{fraction}}_s{{seed}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/corrupt_labels/{{family}}_f{{fraction}}_s{{seed}}.tsv"
    conda:
        ENV_CPU
    script:
        "../scripts/corrupt_labels.py"
