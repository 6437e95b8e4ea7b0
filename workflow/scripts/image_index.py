"""List every image of the train and val splits once (torchvision ImageNet/ImageFolder),
after decoding each one: a file that does not decode stops the job here, with its path in
<log>.unreadable.txt, instead of stopping training later without a file name."""
from pathlib import Path

from singledir.data.check import check_images
from singledir.data.imagenet import scan
from singledir.io import save_csv
from singledir.pipeline.logs import log_to

with log_to(snakemake.log[0]):
    index, classes = scan(snakemake.params.dataset)
    print(f"{len(classes)} classes; images per split: {index.groupby('split').size().to_dict()}")
    root = snakemake.params.dataset["root"]
    check_images(root, index["path"].tolist(), Path(snakemake.log[0]).with_suffix(".unreadable.txt"),
                 threads=snakemake.threads)
    save_csv(classes, snakemake.output.classes)
    save_csv(index, snakemake.output.index)
    print(f"read {root}; wrote {snakemake.output.index} and {snakemake.output.classes}")
