import pandas as pd

from singledir.engine.ablation import single_unit_impact
from singledir.engine.options import EngineOptions
from singledir.io import save_csv
from singledir.models.nets import first_linear_weights, resolve_layers
from singledir.engine.activations import collect_activations
from singledir.pipeline.runtime import load_data, load_model, log_to, pick_device, setup_torch
from singledir.analysis.selectivity import class_selectivity_index, mutual_information

a = snakemake.params.analysis
with log_to(snakemake.log[0]):
    setup_torch(snakemake.threads, gpus=snakemake.resources.get("gpu", 0))
    device = pick_device(snakemake.params.device)
    data = load_data(snakemake.input.dataset, snakemake.input.labels, device)
    model, state = load_model(snakemake.input.model, device)
    layers = resolve_layers(model, a["unit_layers"])
    # Section 3.4: selectivity, information and impact are all measured on the test set.
    acts, _ = collect_activations(model, data.x_test, layers, chunk_size=a["chunk_size"])
    y = data.y_test.cpu().numpy()
    impact = single_unit_impact(model, data.x_test, data.y_test, layers, options=EngineOptions.from_config(a))
    parts = []
    for depth, name in enumerate(layers, start=1):
        act = acts[name].numpy()
        w = first_linear_weights(model, name).cpu()
        parts.append(pd.DataFrame({
            "layer": name, "depth": depth, "unit": range(act.shape[1]),
            "selectivity": class_selectivity_index(act, y, data.n_classes),
            "mutual_information": mutual_information(act, y, data.n_classes, a["mi_bins"]),
            "mean_activity": act.reshape(act.shape[0], act.shape[1], -1).mean((0, 2)),
            "l1_norm": w.abs().reshape(w.shape[0], -1).sum(1).numpy(),
        }))
    units = pd.concat(parts).merge(impact, on=["layer", "unit"])
    units.insert(0, "model", state["spec"]["id"])
    print(units.groupby("layer")[["selectivity", "mutual_information", "impact"]].mean().to_string())
    save_csv(units, snakemake.output.units)
