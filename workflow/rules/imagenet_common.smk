# Helpers of the imagenet family's rules (workflow/rules/imagenet.smk), built from the
# config; no rules here.
from snakemake.logging import logger

import singledir.data.imagenet as imagenet_lib

IMAGENET = "imagenet"
IMAGENET_DATA = f"{RESULTS}/data/{IMAGENET}"
# Where rule imagenet_standin writes a generated stand-in (dataset.generate).
IMAGENET_STANDIN = f"{IMAGENET_DATA}/standin"


def imagenet_dataset():
    """The family's dataset section, with ``root`` pointing at the images (common.smk)."""
    return image_dataset(IMAGENET)


_IMAGENET_WARNED = []


def imagenet_images(wildcards):
    """The index rule's input: the generated stand-in, or nothing (the images are not a
    Snakemake file). A root without the expected layout is reported here as a warning,
    when the index is part of the DAG (nothing is listed or read), so a dry run still
    plans everything; the index job itself then stops with the same error."""
    ds = imagenet_dataset()
    if ds.get("generate"):
        return {"standin": IMAGENET_STANDIN}
    try:
        imagenet_lib.check_layout(ds)
    except imagenet_lib.DataError as err:
        if not _IMAGENET_WARNED:
            _IMAGENET_WARNED.append(True)
            logger.warning(f"WARNING: {err}\nJob imagenet_index will stop with this error until the images are there.")
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
    from singledir.models.resnet import checkpoint_file

    path = checkpoint_file(imagenet_spec(wildcards)["model"])
    return [path] if path else []


def imagenet_train(wildcards):
    return imagenet_spec(wildcards)["train"]


def imagenet_trains(wildcards):
    """Whether the model is trained here (no model.weights)."""
    return not imagenet_spec(wildcards)["model"].get("weights")


