#!/usr/bin/env bash
# Stop the single-node SLURM cluster started by .ci/slurm-up.sh: cancel its jobs, then
# kill exactly the daemons that script started, by the PIDs it recorded.
#
#   sudo .ci/slurm-down.sh [DIR]    DIR as given to slurm-up.sh (default /tmp/slurm-ci)
set -uo pipefail

DIR=${1:-/tmp/slurm-ci}
PIDS="$DIR/run/started.pids"
[ -f "$PIDS" ] || { echo "slurm-down: nothing started from $DIR" >&2; exit 0; }

# Jobs still queued or running on this private cluster would outlive slurmd.
if command -v scancel >/dev/null && grep -q '^slurmctld ' "$PIDS"; then
    scancel --user "$(id -un)" 2>/dev/null || true
    for _ in $(seq 50); do
        [ -z "$(squeue -h 2>/dev/null)" ] && break
        sleep 0.2
    done
fi

# Stop in reverse start order: slurmd, slurmctld, munged.
tac "$PIDS" | while read -r name pid; do
    kill "$pid" 2>/dev/null || continue
    for _ in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "slurm-down: $name ($pid) ignored SIGTERM; sending SIGKILL" >&2
        kill -9 "$pid" 2>/dev/null || true
    fi
done
rm -f "$PIDS"
echo "slurm-down: stopped the daemons started from $DIR"
