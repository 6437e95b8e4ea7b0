#!/usr/bin/env bash
# Stop the single-node SLURM cluster started by .ci/slurm-up.sh: cancel its jobs, then
# kill exactly the daemons that script started, by the PIDs it recorded, and remove the
# config files it wrote (only those that carry its mark).
#
#   sudo .ci/slurm-down.sh [DIR]    DIR as given to slurm-up.sh (default /tmp/slurm-ci)
set -uo pipefail

DIR=${1:-/tmp/slurm-ci}
PIDS="$DIR/run/started.pids"
MARK="# written by singledir .ci/slurm-up.sh"

# A config left behind points every SLURM client at a controller that is gone:
# `scontrol show config` then waits 9 s, and the Snakemake SLURM plugin runs it when
# it is imported, i.e. at the start of every snakemake command on this machine.
remove_config() {
    for conf in /etc/slurm/slurm.conf /etc/slurm/gres.conf; do
        if [ -f "$conf" ] && grep -qF "$MARK ($DIR)" "$conf"; then
            rm -f "$conf" || echo "slurm-down: could not remove $conf" >&2
        fi
    done
}

if [ ! -f "$PIDS" ]; then
    # Nothing running from DIR (e.g. a machine where an earlier run was killed): only
    # the config slurm-up.sh wrote for DIR, if any, is left to remove.
    remove_config
    echo "slurm-down: nothing started from $DIR" >&2
    exit 0
fi

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
remove_config
echo "slurm-down: stopped the daemons started from $DIR and removed its config"
