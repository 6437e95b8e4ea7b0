"""One shard of the per-feature-map analysis (section 3.4, appendices A.3-A.5; see
singledir.analysis.unit_shards): for the layers of shard ``shard`` of ``n_shards``, class selectivity
and mutual information on the test subset, the impact of ablating each map alone on the
test loss (its first ``impact_per_class`` images per class), and its filter's L1 norm."""
import pandas as pd
import torch
from torch.utils.data import DataLoader

from singledir.engine.ablation import layer_sizes
from singledir.data.imagenet import IndexedImages, dataset_transform, load_images
from singledir.io import save_csv
from singledir.models.resnet import analysis_layers, load_trained, unit_weights
from singledir.pipeline.runtime import log_to, pick_device, setup_torch
from singledir.analysis.unit_shards import shard_layers, unit_table

sm = snakemake
a = sm.params.analysis
shard, n_shards = int(sm.params.shard), int(sm.params.n_shards)
with log_to(sm.log[0]):
    setup_torch(sm.threads, gpus=sm.resources.get("gpu", 0))
    device = pick_device(sm.params.device)
    model, state = load_trained(sm.input.model, device)
    n_classes = int(state["n_classes"])
    size = int(state["image_size"])
    example = torch.zeros(1, 3, size, size, device=device)
    layers = analysis_layers(model, a["unit_layers"], example)
    mine = shard_layers(layer_sizes(model, layers, example), n_shards)[shard]
    test = pd.read_csv(sm.input.subset).query("split == 'val'")
    tf = dataset_transform(sm.params.dataset, augment=False)
    workers = a.get("loader_workers", 0)
    loader = DataLoader(IndexedImages(sm.params.root, test["path"], test["target"], tf), batch_size=a["chunk_size"],
                        num_workers=workers)
    imp = test[test["rank"] < a["impact_per_class"]] if a["impact_per_class"] else test
    x_imp, y_imp = load_images(IndexedImages(sm.params.root, imp["path"], imp["target"], tf), a["chunk_size"], workers)
    print(f"{state['spec']['id']}: shard {shard + 1} of {n_shards}: {len(mine)} of {len(layers)} layers "
          f"({mine[:1]} .. {mine[-1:]}); selectivity on {len(test)} test images, impact on {len(y_imp)}, "
          f"top-{a['topk']}")
    units = unit_table(model, loader, x_imp, y_imp, layers, mine, n_classes, a, device, unit_weights)
    units.insert(0, "model", state["spec"]["id"])
    if len(units):
        print(units.groupby("depth")[["selectivity", "mutual_information", "impact"]].mean().to_string())
    save_csv(units, sm.output.units)
