"""Cumulative ablation curves (zero or mean clamping) of one trained model on its training
data, with the labels it was trained on; every family (singledir.data.access)."""
from singledir.engine.ablation import cumulative_ablation_curve
from singledir.models.activations import activation_moments
from singledir.io import save_csv
from singledir.models.api import unit_layers
from singledir.pipeline.params import speed_settings
from singledir.pipeline.logs import log_to
from singledir.pipeline.jobs import open_model_job

sm = snakemake
a = sm.params.analysis  # what defines the numbers (singledir.pipeline.params.RESULT_KEYS)
speed = speed_settings(sm.config, sm.wildcards.family)
with log_to(sm.log[0]):
    job = open_model_job(sm.input, a, speed, threads=sm.threads, gpus=sm.resources.get("gpu", 0))
    model, spec, data = job.model, job.state["spec"], job.data
    x, y = data.training_examples(a.get("eval_examples", 0), a["seed"])
    # Fig. 3 (experiment "generalization") may ablate another layer set than Fig. 1b
    # (analysis.fig3_ablation_layers; see config/config.yaml for why).
    key = "fig3_ablation_layers" if spec.get("experiment") == "generalization" and "fig3_ablation_layers" in a \
        else "ablation_layers"
    layers = unit_layers(model, a[key], x)
    # Dropout nets: a point exactly at round(p * N) units, where Fig. 5a reads the curve.
    p = float(spec.get("model", {}).get("dropout", 0.0) or 0.0)
    mode = sm.wildcards.mode
    print(f"{spec['id']} on {job.device}: read {sm.input.model}; {len(x)} training examples, layers {layers}, "
          f"{mode} ablation, top-{a.get('topk', 1)}; speed {speed}")
    moments = (activation_moments(model, data.all_training_examples()[0], layers, speed["chunk_size"])
               if mode == "mean" else None)
    curve = cumulative_ablation_curve(model, x, y, layers, n_orderings=a["orderings"], n_points=a["curve_points"], seed=a["seed"],
                                      mode=mode, moments=moments, extra_fractions=(p,) if p > 0 else (),
                                      options=job.options)
    curve.insert(0, "model", spec["id"])
    curve.insert(1, "mode", mode)
    print(curve.groupby("n_ablated")["accuracy"].mean().to_string())
    save_csv(curve, sm.output.curve)
    print(f"wrote {sm.output.curve}: {len(curve)} rows")
