"""Beyond the paper: the cheap reliance probes of one network (singledir.analysis.probes), at every
training snapshot (or the final weights when there are none), and what the figures
compare them with.

probes.csv: one row per (epoch, probe) with the probe's value and cost, and per epoch
the training accuracy (memorization), the loss/accuracy on the whole test set, on its
validation half (the validation-loss stop) and on its report half (what the stops are
judged by; disjoint from the validation half), and the mean class selectivity of the
ablated layers on the test set (true classes). curve.csv: the final weights' full
cumulative ablation curve (Fig. X3). A job probes one network, or a group of
beyond.probe_group networks of one experiment (one process: the demo's networks are probed
in well under the time it takes to start a job)."""
import numpy as np
import pandas as pd
import torch

from singledir.analysis import probes
from singledir.data.access import eval_subset
from singledir.data.sources import load_data
from singledir.io import save_csv
from singledir.models.nets import resolve_layers
from singledir.models.activations import collect_activations
from singledir.training.regularizers import mean_selectivity
from singledir.models.api import load_trained
from singledir.pipeline.logs import log_to
from singledir.pipeline.params import engine_options, speed_settings
from singledir.pipeline.runtime import pick_device, setup_torch
from singledir.training.loop import evaluate

# Params are what defines the numbers (singledir.pipeline.params: RESULT_KEYS and
# BEYOND_RESULT_KEYS of beyond_probes); the speed knobs and the device come from the config,
# so changing them reruns no probe job.
a, b = snakemake.params.analysis, snakemake.params.beyond
seed = a["seed"]
speed = speed_settings(snakemake.config, snakemake.params.family)


def probe_one(device, dataset, labels, model_path, out_probes, out_curve):
    data = load_data(dataset, labels, device)
    _, state = load_trained(model_path, device)
    x, y = data.x_train, data.y_train  # training data only, with the labels it was trained on
    sub = eval_subset(len(x), a["eval_examples"], seed)
    if sub is not None:
        x, y = x[sub], y[sub]
    # the test set split once, seeded: a validation half and a report half
    order = np.random.default_rng(seed).permutation(len(data.x_test))
    half = len(order) // 2
    val, rep = (torch.as_tensor(np.sort(i), device=device) for i in (order[:half], order[half:]))
    epochs = sorted(state["snapshots"]) or [None]
    rows, curve = [], None
    for epoch in epochs:
        model, _ = load_trained(model_path, device, snapshot=epoch)
        layers = resolve_layers(model, a["ablation_layers"])
        tab, full = probes.measure_probes(model, x, y, layers, b["probe_fractions"], b["sparse_fractions"],
                                          a["orderings"], a["curve_points"], seed,
                                          options=engine_options(a, speed))
        ev = {}
        for name, (xs, ys) in {"train": (data.x_train, data.y_train), "test": (data.x_test, data.y_test),
                               "val": (data.x_test[val], data.y_test[val]),
                               "report": (data.x_test[rep], data.y_test[rep])}.items():
            ev[f"{name}_loss"], ev[f"{name}_accuracy"] = evaluate(model, xs, ys)
        # one pass over the whole test set (the engine's one activation collector)
        acts, _ = collect_activations(model, data.x_test, layers, chunk_size=len(data.x_test))
        ev["mean_selectivity"] = float(mean_selectivity(acts, data.y_test.cpu()))
        tab.insert(0, "epoch", state["spec"]["train"]["epochs"] if epoch is None else epoch)
        for k, v in ev.items():
            tab[k] = v
        rows.append(tab)
        curve = full
        print(f"{state['spec']['id']} epoch {tab['epoch'].iloc[0]}: "
              + ", ".join(f"{p}={v:.4f}" for p, v in zip(tab["probe"], tab["value"]))
              + f"; test acc {ev['test_accuracy']:.4f}; selectivity {ev['mean_selectivity']:.3f}")
    spec = state["spec"]
    table = pd.concat(rows, ignore_index=True)
    meta = {"model": spec["id"], "experiment": spec["experiment"],
            "regularizer": spec["train"].get("regularizer", "none") or "none",
            "strength": float(spec["train"].get("reg_strength", 0.0) or 0.0),
            "dropout": float(spec["model"].get("dropout", 0.0) or 0.0),
            "batch_norm": bool(spec["model"].get("batch_norm", spec["model"].get("arch") == "convnet")),
            "corrupted_fraction": float(spec["labels"]["fraction"]), "seed": int(spec["train"]["seed"])}
    for i, (k, v) in enumerate(meta.items()):
        table.insert(i, k, v)
        curve.insert(i, k, v)
    save_csv(table, out_probes)
    save_csv(curve, out_curve)


with log_to(snakemake.log[0]):
    setup_torch(snakemake.threads, gpus=snakemake.resources.get("gpu", 0))
    device = pick_device(speed["device"])
    # one network (rule beyond_probes) or a group of them (beyond_probes_group_*, beyond.probe_group)
    models, labels = snakemake.input.model, snakemake.input.labels
    out_p, out_c = snakemake.output.probes, snakemake.output.curve
    if isinstance(models, str):
        models, labels, out_p, out_c = [models], [labels], [out_p], [out_c]
    for m, lab, op, oc in zip(models, labels, out_p, out_c):
        probe_one(device, snakemake.input.dataset, lab, m, op, oc)
