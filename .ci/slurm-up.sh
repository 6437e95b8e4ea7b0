#!/usr/bin/env bash
# Start a real single-node SLURM cluster on this machine (as root), for
# tests/workflow/test_workflow_slurm.py and for trying profiles/slurm by hand. Stop it with
# .ci/slurm-down.sh, which kills exactly the daemons this script started (by PID).
#
#   sudo .ci/slurm-up.sh [DIR]      DIR: state, spool, logs, pid files (default /tmp/slurm-ci)
#
# Needs Debian's slurmctld, slurmd and munge packages (.ci/run installs them).
# What must be right (measured, see the README section on profiles):
#   - the config lives at /etc/slurm/slurm.conf: SLURM_CONF alone is not enough, the
#     jobstep plugin drops SLURM_* variables before its inner srun;
#   - no accounting daemon, so Snakemake must ask squeue for job states
#     (--slurm-status-command squeue) and MinJobAge must stay >= 300;
#   - rules that ask for gpu=1 need a GPU the node declares: two fake GPUs (character
#     devices like /dev/null) are declared as gres.
set -euo pipefail

DIR=${1:-/tmp/slurm-ci}
CONF=/etc/slurm/slurm.conf
GRES=/etc/slurm/gres.conf
MARK="# written by singledir .ci/slurm-up.sh"
NGPUS=${SLURM_CI_GPUS:-2}

die() { echo "slurm-up: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (it writes $CONF and starts the daemons)"
for exe in munged slurmctld slurmd sinfo; do
    command -v "$exe" >/dev/null || [ -x "/usr/sbin/$exe" ] || die "$exe not found; apt-get install slurmctld slurmd munge"
done
if [ -e "$CONF" ] && ! grep -qF "$MARK" "$CONF"; then
    die "$CONF exists and was not written by this script; refusing to overwrite a real cluster's config"
fi
if [ -s "$DIR/run/slurmctld.pid" ] && kill -0 "$(cat "$DIR/run/slurmctld.pid")" 2>/dev/null; then
    die "a slurmctld started from $DIR is still running; run .ci/slurm-down.sh $DIR first"
fi

rm -rf "$DIR"
mkdir -p "$DIR"/{state,spool,log,run,dev}
# Pretend GPU devices (like /dev/null); where mknod is not allowed (some containers),
# plain files, which slurmd accepts with task/none and no cgroups.
for ((i = 0; i < NGPUS; i++)); do
    mknod "$DIR/dev/gpu$i" c 1 3 2>/dev/null || : >"$DIR/dev/gpu$i"
done
: >"$DIR/run/started.pids"

# The node as slurmd sees it; memory a bit below the machine's, or the node drains.
read -r CPUS BOARDS SOCKETS CORES THREADS MEM < <(
    /usr/sbin/slurmd -C 2>/dev/null | head -1 | tr ' ' '\n' | awk -F= '
        {v[$1] = $2}
        END {print v["CPUs"], v["Boards"], v["SocketsPerBoard"], v["CoresPerSocket"], v["ThreadsPerCore"], v["RealMemory"]}')
[ -n "${MEM:-}" ] || die "slurmd -C did not describe this machine"
MEM=$((MEM * 8 / 10))

mkdir -p /etc/slurm
cat >"$CONF" <<EOF
$MARK ($DIR)
ClusterName=ci
SlurmctldHost=localhost
SlurmUser=root
AuthType=auth/munge
CryptoType=crypto/munge
MpiDefault=none
GresTypes=gpu
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
# Cores only: memory requests are checked against the node, not consumed, so the
# profile's per-job memory does not serialize this small node.
SelectTypeParameters=CR_Core
ReturnToService=2
# >= 300, else the SLURM plugin silently goes back to sacct, which has no data here.
MinJobAge=300
KillWait=5
InactiveLimit=0
SchedulerParameters=sched_interval=1
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$CPUS Boards=$BOARDS SocketsPerBoard=$SOCKETS CoresPerSocket=$CORES ThreadsPerCore=$THREADS RealMemory=$MEM Gres=gpu:$NGPUS State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
# the profile's CPU partition (profiles/slurm: set-resources, *cpu_partition), on the same node
PartitionName=cpu Nodes=localhost MaxTime=INFINITE State=UP
EOF
{
    echo "$MARK ($DIR)"
    echo "AutoDetect=off"
    for ((i = 0; i < NGPUS; i++)); do echo "NodeName=localhost Name=gpu File=$DIR/dev/gpu$i"; done
} >"$GRES"

wait_pidfile() {  # wait until a daemon wrote its pid file, then record the pid
    local f=$1 name=$2
    for _ in $(seq 100); do
        if [ -s "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null; then
            echo "$name $(cat "$f")" >>"$DIR/run/started.pids"
            return 0
        fi
        sleep 0.1
    done
    die "$name did not start; see $DIR/log"
}

# munge: reuse a running munged (e.g. a system service), else start our own.
if ! (munge -n </dev/null | unmunge >/dev/null) 2>/dev/null; then
    if [ ! -s /etc/munge/munge.key ]; then
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
        chown munge:munge /etc/munge/munge.key
        chmod 0400 /etc/munge/munge.key
    fi
    install -d -o munge -g munge -m 0755 /run/munge
    runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/munged.pid
    wait_pidfile /run/munge/munged.pid munged
fi

/usr/sbin/slurmctld
wait_pidfile "$DIR/run/slurmctld.pid" slurmctld
/usr/sbin/slurmd -N localhost
wait_pidfile "$DIR/run/slurmd.pid" slurmd

for _ in $(seq 300); do
    if sinfo -h -o %T 2>/dev/null | grep -qx idle; then
        echo "slurm-up: cluster ready (partitions debug and cpu, $CPUS CPUs, $NGPUS fake GPUs; state in $DIR)"
        exit 0
    fi
    sleep 0.2
done
sinfo -R >&2 || true
die "the node did not become idle within 60 s; see $DIR/log"
