"""List every image of the train and val splits once (torchvision ImageNet/ImageFolder)."""
from singledir.data.imagenet import scan
from singledir.io import save_csv
from singledir.pipeline.logs import log_to

with log_to(snakemake.log[0]):
    index, classes = scan(snakemake.params.dataset)
    print(f"{len(classes)} classes; images per split: {index.groupby('split').size().to_dict()}")
    save_csv(classes, snakemake.output.classes)
    save_csv(index, snakemake.output.index)
    print(f"read {snakemake.params.dataset.get('root')}; wrote {snakemake.output.index} and {snakemake.output.classes}")
