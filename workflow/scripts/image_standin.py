"""The demo's offline stand-in of an image family (ImageNet): a small ImageFolder of PNGs (singledir.data.imagenet)."""
from singledir.data.imagenet import GENERATED
from singledir.pipeline.logs import log_to

spec = snakemake.params.dataset
with log_to(snakemake.log[0]):
    counts = GENERATED[spec["generate"]](snakemake.output.root, spec)
    print(f"wrote {spec['generate']} stand-in images to {snakemake.output.root}: {counts}")
