"""Normalized ablation AUC of every training snapshot of one model, joined with its loss
history on ``epoch``; every family with epoch snapshots (singledir.data.access)."""
import pandas as pd

from singledir.analysis.auc import curve_aucs
from singledir.engine.ablation import cumulative_ablation_curve
from singledir.io import save_csv
from singledir.models.api import load_trained, unit_layers
from singledir.pipeline.params import speed_settings
from singledir.pipeline.logs import log_to
from singledir.pipeline.jobs import open_model_job

sm = snakemake
a = sm.params.analysis  # what defines the numbers (singledir.pipeline.params.RESULT_KEYS)
speed = speed_settings(sm.config, sm.wildcards.family)
with log_to(sm.log[0]):
    job = open_model_job(sm.input, a, speed, threads=sm.threads, gpus=sm.resources.get("gpu", 0))
    state, data, device = job.state, job.data, job.device
    x, y = data.training_examples(a.get("eval_examples", 0), a["seed"])
    epochs = sorted(state["snapshots"])
    print(f"{state['spec']['id']} on {device}: read {sm.input.model}; {len(epochs)} snapshots, "
          f"{len(x)} training examples; speed {speed}")
    rows = []
    for epoch in epochs:
        model, _ = load_trained(sm.input.model, device, snapshot=epoch)
        layers = unit_layers(model, a["ablation_layers"], x)
        curve = cumulative_ablation_curve(model, x, y, layers, n_orderings=a["orderings"], n_points=a["curve_points"], seed=a["seed"],
                                          options=job.options)
        aucs = curve_aucs(curve)
        aucs.insert(0, "epoch", epoch)
        rows.append(aucs)
        print(f"epoch {epoch}: auc {aucs['auc'].mean():.4f}")
    table = pd.concat(rows).merge(pd.read_csv(sm.input.history), on="epoch", how="left")
    table.insert(0, "model", state["spec"]["id"])
    save_csv(table, sm.output.table)
    print(f"wrote {sm.output.table}: {len(table)} rows")
