"""Cumulative ablation of feature maps (Fig. 1c: the last three layers) on the recorded
class-balanced subset of the training images, with the labels the net was trained on."""
import pandas as pd

from singledir.engine.ablation import cumulative_ablation_curve
from singledir.engine.options import EngineOptions
from singledir.data.imagenet import IndexedImages, dataset_transform, load_images, read_index, train_labels
from singledir.io import save_csv
from singledir.models.resnet import analysis_layers, load_trained
from singledir.pipeline.runtime import log_to, pick_device, setup_torch

sm = snakemake
a = sm.params.analysis
with log_to(sm.log[0]):
    setup_torch(sm.threads, gpus=sm.resources.get("gpu", 0))
    device = pick_device(sm.params.device)
    model, state = load_trained(sm.input.model, device)
    subset = pd.read_csv(sm.input.subset)
    train = subset[subset["split"] == "train"]
    labels = train_labels(read_index(sm.input.index), sm.input.labels)[train["index"].to_numpy()]
    images = IndexedImages(sm.params.root, train["path"], labels, dataset_transform(sm.params.dataset, augment=False))
    x, y = load_images(images, a["chunk_size"], a.get("loader_workers", 0))
    layers = analysis_layers(model, a["ablation_layers"], x[:1].to(device))
    print(f"{state['spec']['id']}: {len(x)} training images, layers {layers}, top-{a['topk']}")
    curve = cumulative_ablation_curve(model, x.to(device), y.to(device), layers, n_orderings=a["orderings"],
                                      n_points=a["curve_points"], seed=sm.params.seed,
                                      options=EngineOptions.from_config(a))
    curve.insert(0, "model", state["spec"]["id"])
    curve.insert(1, "mode", "zero")
    print(curve.groupby("n_ablated")["accuracy"].mean().to_string())
    save_csv(curve, sm.output.curve)
