# Input functions and target lists of the Beyond-the-paper rules (workflow/rules/beyond.smk),
# kept apart from the rules (snakemake --lint: no functions beside rules).


def probe_params(family):
    """Params of a probe job of `family`: the family (whose speed settings the script reads
    from the config, singledir.pipeline.params.speed_settings) and only the config values
    the probes' numbers depend on (RESULT_KEYS and BEYOND_RESULT_KEYS of beyond_probes);
    never a speed knob or the device."""
    return dict(family=family, analysis=run_params.result_params(config, family, "beyond_probes"),
                beyond=run_params.beyond_result_params(config, family, "beyond_probes"))


# Probe jobs: one per network, or (families.<family>.beyond.probe_group: K > 1) one per
# group of up to K networks needed by the same figX figures, in one process: a small
# network is probed in far less time than a job takes to start (the demo's 24 nets).
# Grouping by the figures that need them keeps `snakemake results/figX1_<family>.pdf`
# (clean nets only) from training anything else (singledir.pipeline.groups.probe_groups).
# beyond_probes' `model` wildcard excludes grouped networks (ungrouped_member_regex).
BEYOND_PROBE_GROUPS = {fam: model_groups.probe_groups(config, fam) for fam in plan.enabled_families(config)
                       if fam in FAMILIES.split("|")}
