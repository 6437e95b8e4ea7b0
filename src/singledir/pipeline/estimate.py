"""What a config costs, per family and experiment: jobs, submissions, counted PFLOP (training
and analysis, :mod:`singledir.pipeline.cost`), GPU-hours (with the per-step overhead of small
batches) and the peak memory of its jobs (:mod:`singledir.pipeline.memory`); per rule the
largest peak and the ``mem_mb`` it asks for. :func:`estimate` returns it as one dict, what
``python -m singledir.pipeline.plan CONFIG --json`` prints (add keys freely: readers take
the ones they know).

Jobs per experiment are its training jobs (one per model, or per fused group) and the
per-model analysis jobs the enabled figures read (the figure registry's inputs,
:data:`singledir.figures.registry.KIND_PATHS`: one ablation curve per model and mode, noise
curve, unit analysis (+ its shards), training AUC, probes). Jobs every experiment shares
(data, labels, figures, tables) are in the total only.
"""

from __future__ import annotations

import math
from collections import Counter, OrderedDict

from singledir.data import access as data_access
from singledir.figures import registry
from singledir.pipeline import cost, memory
from singledir.pipeline import groups as model_groups
from singledir.pipeline import params as run_params
from singledir.pipeline import plan, submissions

# mem_mb of the rules without an estimate of their own (profiles/slurm default-resources).
DEFAULT_MEM_MB = 4000
# Figure-input kind -> the rule whose job writes it.
KIND_RULES = {"ablation_zero": "ablation_curve", "ablation_mean": "ablation_curve", "noise": "noise_curve",
              "units": "unit_analysis", "training_auc": "training_auc", "probes": "beyond_probes",
              "probe_curve": "beyond_probes"}


def _experiment_submissions(jobs_by_rule: Counter, dataset_cfg: dict, sizes: dict) -> int:
    """SLURM submissions of one experiment's jobs (rule -> jobs) under the profile's job
    groups (:mod:`singledir.pipeline.submissions`), as if its jobs filled group jobs of their
    own: an upper bound on its share, since a group job may also hold other experiments' jobs."""
    grouped: Counter = Counter()
    alone = 0
    for rule, n in jobs_by_rule.items():
        group = submissions.active_group(rule, dataset_cfg, sizes)
        if group is None:
            alone += n
        else:
            grouped[group] += n
    return alone + sum(math.ceil(n / sizes[g]) for g, n in grouped.items())


def analysis_jobs(config: dict, family: str) -> "OrderedDict[tuple, bool]":
    """(rule, model id, kind) -> whether a paper figure reads it (else only beyond-the-paper
    figures do), for every per-model analysis job the enabled figures of ``family`` read
    (one job per model and kind; an ablation curve's two modes are two jobs, the probes'
    two files one job)."""
    out: "OrderedDict[tuple, bool]" = OrderedDict()
    suffix = f"_{family}.pdf"
    for target in plan.figure_targets(config, ""):
        if not target.endswith(suffix):
            continue
        fig = target[1:-len(suffix)]
        paper = not registry.figure(fig).beyond
        for inp in registry.panel(fig, family).inputs.values():
            if inp.kind not in KIND_RULES:
                continue
            kind = "probes" if inp.kind == "probe_curve" else inp.kind
            for sel in inp.selections:
                for mid in plan.experiment_models(config, family, sel):
                    key = (KIND_RULES[kind], mid, kind)
                    out[key] = out.get(key, False) or paper
    return out


def _paper_experiments(config: dict, family: str) -> set:
    """Experiments of ``family`` some enabled paper (not beyond-the-paper) figure reads."""
    suffix = f"_{family}.pdf"
    return {plan.parse_selection(sel)[0] for target in plan.figure_targets(config, "") if target.endswith(suffix)
            for fig in [target[1:-len(suffix)]] if not registry.figure(fig).beyond
            for sel in registry.panel(fig, family).selections}


def _training_jobs(config: dict, family: str) -> list[list[str]]:
    """Member ids of every training job of ``family`` (fused groups, then single models)."""
    groups = model_groups.fusion_groups(config, family) if family in ("mnist", "cifar10") else {}
    grouped = {m for members in groups.values() for m in members}
    return list(groups.values()) + [[m] for m in plan.model_specs(config, family) if m not in grouped]


def _images(config: dict, family: str) -> bool:
    return data_access.data_form(config["families"][family]["dataset"]) == data_access.IMAGES


def estimate(config: dict, jobs_total: int | None = None, bench_csv: str = "results/bench.csv",
             gpu_csvs=cost.GPU_CHECK_CSVS, submission_counts: dict | None = None,
             profile=submissions.DEFAULT_PROFILE) -> dict:
    """The cost and memory of a validated config (module docstring), as one JSON-ready dict.

    ``submission_counts``: :func:`singledir.pipeline.submissions.submission_counts` of the
    run's dry run, for the total; without it the total is the sum of the experiments'
    submissions (training and per-model analysis jobs only). Per experiment the submissions
    come from ``profile``'s job groups (:func:`_experiment_submissions`)."""
    sizes = submissions.group_components(profile)
    rates = cost.throughputs(config, bench_csv, gpu_csvs)
    gpu_rate, gpu_source = rates["gpu"]
    overhead, overhead_source = cost.gpu_step_overhead(config, gpu_csvs)
    pflop: dict = OrderedDict()
    gpu_hours: dict = OrderedDict()
    experiments = []
    peak: dict = {}
    mem: dict = {}
    counted_jobs = 0

    def note(rule, peak_bytes):
        mb = peak_bytes / memory.MB
        peak[rule] = max(peak.get(rule, 0.0), mb)
        mem[rule] = max(mem.get(rule, 0), memory.mem_mb(mb))
        return mb

    for family in plan.enabled_families(config):
        fam = config["families"][family]
        analysis = fam.get("analysis", {}) or {}
        data = cost.dataset_size(fam["dataset"])
        images = _images(config, family)
        specs = plan.model_specs(config, family)
        note("prepare_dataset", memory.prepare_dataset_peak_bytes(data) if not images else memory.small_peak_bytes())
        per_exp = OrderedDict((exp, {"jobs": 0, "rules": Counter(), "training": 0.0, "analysis": 0.0, "analysis_paper": 0.0,
                                     "seconds": 0.0, "peak_mb": 0.0})
                              for exp in plan.enabled_experiments(config, family))
        paper_exps = _paper_experiments(config, family)
        for members in _training_jobs(config, family):
            member_specs = [specs[m] for m in members]
            exp = member_specs[0]["experiment"]
            row = per_exp[exp]
            options = run_params.training_run_options(config, family, exp)
            rule = "train_group" if len(members) > 1 else "train_model"
            mb = note(rule, memory.training_peak_bytes(member_specs, data, images, options))
            row["peak_mb"] = max(row["peak_mb"], mb)
            row["jobs"] += 1
            row["rules"][rule] += 1
            for s in member_specs:
                if s["model"].get("weights"):
                    continue  # pretrained: nothing trained
                row["training"] += cost.training_flops(s, data)
            # one fused step serves all members: its overhead is paid once per group
            trained = [s for s in member_specs if not s["model"].get("weights")]
            if trained:
                row["seconds"] += (sum(cost.training_flops(s, data) for s in trained) / gpu_rate
                                   + cost.training_steps(trained[0], data) * overhead)
        shards = int(analysis.get("unit_shards", 1) or 1)
        for (rule, mid, kind), for_paper in analysis_jobs(config, family).items():
            spec = specs[mid]
            row = per_exp[spec["experiment"]]
            flops = cost.analysis_job_flops(kind, spec, data, analysis)
            row["analysis"] += flops
            row["analysis_paper"] += flops if for_paper else 0.0
            row["seconds"] += flops / gpu_rate
            if rule == "unit_analysis":
                mb = note("unit_shard" if shards > 1 else rule,
                          memory.unit_analysis_peak_bytes(spec, data, analysis, images))
                if shards > 1:
                    note(rule, memory.small_peak_bytes())  # the merge of the shards' tables
            else:
                mb = note(rule, memory.curve_peak_bytes(spec, data, analysis, images))
            row["peak_mb"] = max(row["peak_mb"], mb)
            n_jobs = shards + 1 if rule == "unit_analysis" and shards > 1 else 1
            row["jobs"] += n_jobs
            row["rules"][rule] += n_jobs
        pflop[family] = OrderedDict()
        gpu_hours[family] = OrderedDict()
        for exp, row in per_exp.items():
            paper = exp in paper_exps
            pflop[family][exp] = {"training": row["training"] / 1e15, "analysis": row["analysis"] / 1e15,
                                  "total": (row["training"] + row["analysis"]) / 1e15,
                                  # what the paper's figures need of it (its training, if a paper
                                  # figure reads it, and the analyses they read)
                                  "paper": ((row["training"] if paper else 0.0) + row["analysis_paper"]) / 1e15}
            gpu_hours[family][exp] = row["seconds"] / 3600
            counted_jobs += row["jobs"]
            experiments.append({"family": family, "experiment": exp, "jobs": row["jobs"],
                                "submissions": _experiment_submissions(row["rules"], fam["dataset"], sizes),
                                "gpu_hours": row["seconds"] / 3600, "peak_mem_mb": round(row["peak_mb"]),
                                "pflop": pflop[family][exp]["total"]})
    for rule in ("corrupt_labels", "figures", "stats_table", "claims"):  # the profile's default-resources
        peak[rule] = memory.SMALL_MB
        mem[rule] = DEFAULT_MEM_MB
    jobs = jobs_total if jobs_total is not None else counted_jobs
    return OrderedDict([
        ("jobs", jobs),
        ("jobs_source", "snakemake -n --forceall all_figures" if jobs_total is not None
         else "counted: training and per-model analysis jobs only (run without --no-jobs for all)"),
        ("submissions", submission_counts["total"] if submission_counts is not None
         else sum(e["submissions"] for e in experiments)),
        ("submissions_source", f"job groups of {profile}" + (" (snakemake -n --forceall all_figures)"
                                                             if submission_counts is not None else
                                                             " (training and per-model analysis jobs only)")),
        ("pflop", pflop),
        ("pflop_total", sum(v["total"] for f in pflop.values() for v in f.values())),
        ("pflop_paper", {f: sum(v["paper"] for v in exps.values()) for f, exps in pflop.items()}),
        ("gpu_hours", gpu_hours),
        ("gpu_hours_total", sum(h for f in gpu_hours.values() for h in f.values())),
        ("gpu_flops_per_s", gpu_rate),
        ("gpu_flops_source", gpu_source),
        ("gpu_step_overhead_s", overhead),
        ("gpu_step_overhead_source", overhead_source),
        ("cpu_flops_per_s", rates["cpu"][0]),
        ("cpu_flops_source", rates["cpu"][1]),
        ("peak_mem_mb", {r: round(v) for r, v in sorted(peak.items())}),
        ("mem_mb", dict(sorted(mem.items()))),
        ("experiments", experiments),
    ])
