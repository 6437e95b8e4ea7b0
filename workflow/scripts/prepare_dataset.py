from singledir.data.check import check_dataset
from singledir.data.sources import load_dataset, save_prepared
from singledir.pipeline.logs import log_to

with log_to(snakemake.log[0]):
    spec = snakemake.params.spec
    if spec.get("content_sha256"):
        print(f"{spec['path']}: sha256 {spec['content_sha256']}")
    check_dataset(spec, read_all=True)  # the workflow-start checks again (the file may have changed), and every checksum
    data = load_dataset(spec)  # validates the values (singledir.data.sources); save_prepared checks again before writing
    print(f"{data.name}: train {data.x_train.shape}, test {data.x_test.shape}, {data.n_classes} classes")
    save_prepared(data, snakemake.output.dataset)
    print(f"wrote {snakemake.output.dataset}")
