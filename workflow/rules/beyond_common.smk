# Input functions and target lists of the Beyond-the-paper rules (workflow/rules/beyond.smk),
# kept apart from the rules (snakemake --lint: no functions beside rules).
import re

def beyond_cfg(family):
    return family_cfg(family).get("beyond", {})


# Probe jobs: one per network, or (families.<family>.beyond.probe_group: K > 1) one per
# group of up to K networks needed by the same figX figures, in one process: a small
# network is probed in far less time than a job takes to start (the demo's 24 nets).
# Grouping by the figures that need them keeps `snakemake results/figX1_<family>.pdf`
# (clean nets only) from training anything else. beyond_probes' `model` wildcard excludes
# grouped networks.
def beyond_probe_groups(family):
    """Group id -> member model ids: networks needed by the same figX figures, in chunks of K."""
    k = int(family_cfg(family).get("beyond", {}).get("probe_group", 1) or 1)
    if k <= 1:
        return {}
    enabled = set(plan.enabled_experiments(config, family))
    drawn = plan.beyond_figures(config, family)
    needed_by = {}
    for fig, needs in plan.FIGURES.get(family, {}).items():
        if fig in drawn and all(plan.parse_selection(n)[0] in enabled for n in needs):
            for sel in needs:
                for m in plan.experiment_models(config, family, sel):
                    needed_by.setdefault(m, set()).add(fig)
    by_figures = {}
    for m, figs in needed_by.items():
        by_figures.setdefault("_".join(sorted(figs)), []).append(m)
    return {f"{figs}_p{i // k}": ids[i:i + k] for figs, ids in by_figures.items() for i in range(0, len(ids), k)}


BEYOND_PROBE_GROUPS = {fam: beyond_probe_groups(fam) for fam in plan.enabled_families(config)
                       if fam in FAMILIES.split("|")}


def ungrouped_probe_regex():
    alts = [f"(?<={re.escape(fam)}/)(?:{'|'.join(re.escape(m) for ms in groups.values() for m in ms)})"
            for fam, groups in BEYOND_PROBE_GROUPS.items() if groups]
    base = r"[A-Za-z0-9_.\-]+"
    return f"(?!(?:{'|'.join(alts)})/){base}" if alts else base
