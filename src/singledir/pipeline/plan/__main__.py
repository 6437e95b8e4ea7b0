"""``python -m singledir.pipeline.plan CONFIG...``: check a config and print its plan summary.

The program lives here, not in the package's ``__init__``, because it needs
:mod:`singledir.pipeline.config_check`, which imports :mod:`singledir.pipeline.plan` for
its semantic checks: run as ``-m``, this file is ``__main__`` and the package is loaded
once under its own name, so nothing imports back into the program.
"""

from __future__ import annotations

import argparse
import sys

from singledir.pipeline import claim_design
from singledir.pipeline.config_check import ConfigError, load_config
from singledir.pipeline.plan import count_jobs, summary


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m singledir.pipeline.plan",
                                 description="Check a config and print what it runs and what it costs.")
    ap.add_argument("configfile", nargs="+", help="config file(s), merged in order like --configfile")
    ap.add_argument("--no-jobs", action="store_true", help="skip the job count (a Snakemake dry run)")
    ap.add_argument("--bench-csv", default="results/bench.csv", help="benchmark table with the measured CPU rate")
    args = ap.parse_args(argv)
    try:
        loaded = load_config(args.configfile)
        jobs = None if args.no_jobs else count_jobs(args.configfile)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(summary(loaded.config, loaded.files, loaded.defaults, jobs, args.bench_csv))
    # which claims the design cannot decide, and why (a --json plan: claim_design.undecidable)
    print("\n".join(claim_design.summary_lines(loaded.config)))
    return 0


if __name__ == "__main__":  # imported (tests/pipeline/test_imports.py imports every module), it only defines main
    raise SystemExit(main())
