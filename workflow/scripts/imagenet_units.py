"""Per feature map of every analysed layer (section 3.4, appendices A.3-A.5): class
selectivity and mutual information on the test subset, the impact of ablating it alone on
the test loss (its first ``impact_per_class`` images per class), and its filter's L1 norm."""
import pandas as pd
import torch
from torch.utils.data import DataLoader

from singledir.ablation import single_unit_impact
from singledir.imagenet import IndexedImages, dataset_transform, load_images, spatial_mean_activations
from singledir.io import save_csv
from singledir.resnet import analysis_layers, load_trained, unit_weights
from singledir.runtime import engine_options, log_to, pick_device, setup_torch
from singledir.selectivity import class_selectivity_index, mutual_information

sm = snakemake
a = sm.params.analysis
with log_to(sm.log[0]):
    setup_torch(sm.threads, gpus=sm.resources.get("gpu", 0))
    device = pick_device(sm.params.device)
    model, state = load_trained(sm.input.model, device)
    n_classes = int(state["n_classes"])
    size = int(state["image_size"])
    layers = analysis_layers(model, a["unit_layers"], torch.zeros(1, 3, size, size, device=device))
    test = pd.read_csv(sm.input.subset).query("split == 'val'")
    tf = dataset_transform(sm.params.dataset, augment=False)
    workers = a.get("loader_workers", 0)
    loader = DataLoader(IndexedImages(sm.params.root, test["path"], test["target"], tf), batch_size=a["chunk_size"],
                        num_workers=workers)
    means, y = spatial_mean_activations(model, loader, layers, device)
    imp = test[test["rank"] < a["impact_per_class"]] if a["impact_per_class"] else test
    x_imp, y_imp = load_images(IndexedImages(sm.params.root, imp["path"], imp["target"], tf), a["chunk_size"], workers)
    print(f"{state['spec']['id']}: {len(layers)} layers; selectivity on {len(y)} test images, impact on "
          f"{len(y_imp)}, top-{a['topk']}")
    impact = single_unit_impact(model, x_imp.to(device), y_imp.to(device), layers, chunk_size=a["chunk_size"],
                                max_rows=a["max_rows"], topk=a["topk"], **engine_options(a))
    parts = []
    for depth, name in enumerate(layers, start=1):
        act = means[name]
        w = unit_weights(model, name).float().cpu()
        parts.append(pd.DataFrame({
            "layer": name, "depth": depth, "unit": range(act.shape[1]),
            "selectivity": class_selectivity_index(act, y, n_classes),
            "mutual_information": mutual_information(act, y, n_classes, a["mi_bins"]),
            "mean_activity": act.mean(0),
            "l1_norm": w.abs().reshape(w.shape[0], -1).sum(1).numpy(),
        }))
    units = pd.concat(parts).merge(impact, on=["layer", "unit"])
    units.insert(0, "model", state["spec"]["id"])
    print(units.groupby("depth")[["selectivity", "mutual_information", "impact"]].mean().to_string())
    save_csv(units, sm.output.units)
