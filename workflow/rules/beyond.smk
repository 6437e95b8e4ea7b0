# Beyond the paper (issue 16; README "Beyond the paper"): the paper's section 5 future work
# as experiments of the same DAG. E1: cheap reliance probes on training data for model
# selection (Fig. X1) and early stopping (Fig. X2), singledir.analysis.probes. E2: regularizers aimed
# at single-direction reliance (Figs. X3, X4), singledir.training.regularizers (training options of
# the generic train_model rule). The figures (rules figX1-figX4) are in figures.smk; which
# experiments each reads: singledir.figures.registry; probe settings: families.<family>.beyond (schema).


# Its input functions: workflow/rules/beyond_common.smk.

rule beyond_probes:
    """Cheap reliance probes (one-point accuracies, a sparse and the full AUC, each with its
    cost) of one network at each snapshot, on training data; plus the held-out losses and
    the mean class selectivity the figures compare them with."""
    input:
        unpack(_model_inputs),
    output:
        probes=f"{RESULTS}/analysis/{{family}}/{{model}}/probes.csv",
        curve=f"{RESULTS}/analysis/{{family}}/{{model}}/probe_curve.csv",
    params:
        family=lambda w: w.family,
        analysis=lambda w: probe_params(w.family)["analysis"],
        beyond=lambda w: probe_params(w.family)["beyond"],
    wildcard_constraints:
        model=model_groups.ungrouped_member_regex(BEYOND_PROBE_GROUPS),
    resources:
        runtime=job_runtime("beyond_probes", 240),
        mem_mb=estimated_mem_mb("beyond_probes"),
        group_slot=1,
    threads: 1
    group: job_group("beyond_probes")
    log:
        f"{RESULTS}/logs/beyond_probes/{{family}}/{{model}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/beyond_probes/{{family}}/{{model}}.tsv"
    conda:
        ENV_TORCH
    script:
        "../scripts/beyond_probes.py"


for _name, _family, _gid, _members in model_groups.group_rules("beyond_probes_group", BEYOND_PROBE_GROUPS):
    _specs = [family_specs(_family)[m] for m in _members]

    rule:
        name:
            _name
        input:
            dataset=f"{RESULTS}/data/{_family}/dataset.npz",
            model=[f"{RESULTS}/models/{_family}/{m}/model.pt" for m in _members],
            labels=[f"{RESULTS}/data/{_family}/{plan.label_file(s)}" for s in _specs],
        output:
            probes=[f"{RESULTS}/analysis/{_family}/{m}/probes.csv" for m in _members],
            curve=[f"{RESULTS}/analysis/{_family}/{m}/probe_curve.csv" for m in _members],
        params:
            **probe_params(_family),
        resources:
            **{"runtime": 240, "mem_mb": job_mem_mb("beyond_probes", _family, _members[0]), **profile_resources("beyond_probes")},
        threads: 1
        log:
            f"{RESULTS}/logs/beyond_probes_group/{_family}/{_gid}.log",
        benchmark:
            f"{RESULTS}/benchmarks/beyond_probes_group/{_family}/{_gid}.tsv"
        conda:
            ENV_TORCH
        script:
            "../scripts/beyond_probes.py"
