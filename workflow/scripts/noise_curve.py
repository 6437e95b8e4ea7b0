"""Accuracy of one trained model under Gaussian noise on its units, scaled by each unit's
variance over the training data (section 2.2, Fig. 2); every family (singledir.data.access)."""
from singledir.engine.noise import noise_curve
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
    model, data = job.model, job.data
    x, y = data.training_examples(a.get("eval_examples", 0), a["seed"])
    # The paper adds noise "to all units" (Fig. 2): analysis.noise_layers, default all.
    layers = unit_layers(model, a.get("noise_layers", "all"), x)
    print(f"{job.model_id} on {job.device}: read {sm.input.model}; {len(x)} training examples, layers {layers}, "
          f"scales {a['noise_scales']} x {a['noise_repeats']} repeats; speed {speed}")
    moments = activation_moments(model, data.all_training_examples()[0], layers, speed["chunk_size"])
    curve = noise_curve(model, x, y, layers, {n: m["var"] for n, m in moments.items()}, a["noise_scales"],
                        repeats=a["noise_repeats"], seed=a["seed"], options=job.options)
    curve.insert(0, "model", job.model_id)
    print(curve.groupby("scale")["accuracy"].mean().to_string())
    save_csv(curve, sm.output.curve)
    print(f"wrote {sm.output.curve}: {len(curve)} rows")
