#!/usr/bin/env bash
# Run by Snakemake inside a freshly created conda environment (envs/cuda.yaml): install
# this checkout's singledir package into it, editable, so the rules' scripts import the
# library of the checkout that runs them. SINGLEDIR_ROOT is set by
# workflow/rules/common.smk to the directory of the Snakefile.
set -euo pipefail
root=${SINGLEDIR_ROOT:-$PWD}
if [ ! -f "$root/pyproject.toml" ] || ! grep -q '^name = "singledir"' "$root/pyproject.toml"; then
    echo "post-deploy: $root is not a singledir checkout; set SINGLEDIR_ROOT to the repository root" >&2
    exit 1
fi
python -m pip install --no-deps --no-build-isolation -e "$root"
