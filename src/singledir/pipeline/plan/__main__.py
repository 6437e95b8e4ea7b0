"""``python -m singledir.pipeline.plan CONFIG...``: check a config and print its plan summary.

The program lives here, not in the package's ``__init__``, because it needs
:mod:`singledir.pipeline.config_check`, which imports :mod:`singledir.pipeline.plan` for
its semantic checks: run as ``-m``, this file is ``__main__`` and the package is loaded
once under its own name, so nothing imports back into the program.
"""

from __future__ import annotations

import argparse
import json
import sys

from singledir.pipeline import claim_design
from singledir.pipeline.config_check import ConfigError, load_config
from singledir.pipeline import submissions, training_length
from singledir.pipeline.estimate import estimate
from singledir.pipeline.plan import ConfigError as PlanError, enabled_families, summary


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m singledir.pipeline.plan",
                                 description="Check a config and print what it runs and what it costs.")
    ap.add_argument("configfile", nargs="+", help="config file(s), merged in order like --configfile")
    ap.add_argument("--no-jobs", action="store_true", help="skip the job count (a Snakemake dry run)")
    ap.add_argument("--bench-csv", default="results/bench.csv", help="benchmark table with the measured CPU rate")
    ap.add_argument("--json", action="store_true",
                    help="print one JSON object (jobs, submissions, pflop, gpu_hours, peak_mem_mb, mem_mb, "
                         "gpu_flops_source, ...) instead of the text")
    ap.add_argument("--profile", default=str(submissions.DEFAULT_PROFILE),
                    help="cluster profile whose job groups count the submissions (default: profiles/slurm)")
    args = ap.parse_args(argv)
    try:
        loaded = load_config(args.configfile)
        jobs = counts = None
        if not args.no_jobs:
            by_rule = submissions.jobs_by_rule(args.configfile, families=enabled_families(loaded.config))
            jobs = sum(sum(n.values()) for n in by_rule.values())
            counts = submissions.submission_counts(loaded.config, by_rule, args.profile)
    except (ConfigError, PlanError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    estimated = estimate(loaded.config, jobs, args.bench_csv, submission_counts=counts, profile=args.profile)
    estimated["undecidable_claims"] = claim_design.undecidable(loaded.config)
    estimated["convergence_warnings"] = training_length.convergence_warnings(loaded.config)
    if args.json:
        print(json.dumps(estimated))
    else:
        print(summary(loaded.config, loaded.files, loaded.defaults, jobs, args.bench_csv, estimated, counts))
        # which claims the design cannot decide, and why
        print("\n".join(claim_design.summary_lines(loaded.config)))
        # experiments whose training is likely too short to converge (a heuristic)
        print("\n".join(training_length.summary_lines(loaded.config)))
    return 0


if __name__ == "__main__":  # imported (tests/pipeline/test_imports.py imports every module), it only defines main
    raise SystemExit(main())
