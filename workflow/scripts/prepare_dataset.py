from singledir.data import load_dataset, save_prepared
from singledir.runtime import log_to

with log_to(snakemake.log[0]):
    data = load_dataset(snakemake.params.spec)
    print(f"{data.name}: train {data.x_train.shape}, test {data.x_test.shape}, {data.n_classes} classes")
    save_prepared(data, snakemake.output.dataset)
