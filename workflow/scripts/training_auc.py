import pandas as pd

from singledir.engine.ablation import cumulative_ablation_curve, curve_aucs
from singledir.engine.options import EngineOptions
from singledir.io import save_csv
from singledir.models.nets import resolve_layers
from singledir.pipeline.runtime import eval_subset, load_data, load_model, log_to, pick_device, setup_torch

a = snakemake.params.analysis
with log_to(snakemake.log[0]):
    setup_torch(snakemake.threads, gpus=snakemake.resources.get("gpu", 0))
    device = pick_device(snakemake.params.device)
    data = load_data(snakemake.input.dataset, snakemake.input.labels, device)
    _, state = load_model(snakemake.input.model, device)
    x, y = data.x_train, data.y_train
    sub = eval_subset(len(x), a["eval_examples"], snakemake.params.seed)
    if sub is not None:
        x, y = x[sub], y[sub]
    rows = []
    for epoch in sorted(state["snapshots"]):
        model, _ = load_model(snakemake.input.model, device, snapshot=epoch)
        layers = resolve_layers(model, a["ablation_layers"])
        curve = cumulative_ablation_curve(model, x, y, layers, n_orderings=a["orderings"],
                                          n_points=a["curve_points"], seed=snakemake.params.seed,
                                          options=EngineOptions.from_config(a))
        aucs = curve_aucs(curve)
        aucs.insert(0, "epoch", epoch)
        rows.append(aucs)
        print(f"epoch {epoch}: auc {aucs['auc'].mean():.4f}")
    table = pd.concat(rows).merge(pd.read_csv(snakemake.input.history), on="epoch", how="left")
    table.insert(0, "model", state["spec"]["id"])
    save_csv(table, snakemake.output.table)
