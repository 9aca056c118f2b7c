#!/usr/bin/env bash
# A throw-away single-node SLURM on this machine, for the tests of `grmu sweep --backend slurm`.
#   tools/slurm_local.sh start [DIR]   start munged (unless one answers), slurmctld and slurmd as root,
#                                       wait until the node is idle, print `export SLURM_CONF=...`
#   tools/slurm_local.sh stop [DIR]    stop what start started and remove DIR
# DIR (default /tmp/grmu-slurm) holds slurm.conf, state, spool, logs and pid files; nothing is
# written to /etc. Ports 16817/16818 (not SLURM's defaults), so a system SLURM is left alone.
# Needs Debian's slurm-wlm and munge (apt-get install slurm-wlm munge) and root. Exit status 3:
# SLURM cannot be started here (the first line says why); 1: it was started but did not come up.
set -euo pipefail
cmd=${1:-}
dir=${2:-/tmp/grmu-slurm}
node=grmu-node
conf=$dir/slurm.conf

stop() {
    for name in slurmd slurmctld munged; do
        if [[ -f $dir/$name.pid ]]; then
            pid=$(cat "$dir/$name.pid")
            kill "$pid" 2>/dev/null || true
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -9 "$pid" 2>/dev/null || true
        fi
    done
    rm -rf "$dir"
}

case $cmd in
start) ;;
stop) stop; exit 0 ;;
*) echo "usage: $0 start|stop [DIR]" >&2; exit 2 ;;
esac

for exe in munged munge slurmctld slurmd sinfo sbatch; do
    command -v "$exe" >/dev/null || { echo "no $exe on PATH: apt-get install slurm-wlm munge"; exit 3; }
done
[[ $(id -u) == 0 ]] || { echo "slurmd runs jobs as their user, so it needs root; this is uid $(id -u)"; exit 3; }
[[ -f $dir/slurmctld.pid ]] && stop
mkdir -p "$dir/state" "$dir/spool"
cpus=$(nproc)
host=$(hostname -s)
cat >"$conf" <<EOF
ClusterName=grmu-test
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=16817
SlurmdPort=16818
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/builtin
MpiDefault=none
ReturnToService=2
KillWait=5
NodeName=$node NodeHostname=$host NodeAddr=127.0.0.1 CPUs=$cpus State=UNKNOWN
PartitionName=debug Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF=$conf

# munge: reuse one that answers, else start our own (as root: --force)
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    mkdir -p /run/munge
    munged --force --pid-file="$dir/munged.pid" --log-file="$dir/munged.log" \
        || { echo "munged did not start: $(tail -1 "$dir/munged.log" 2>/dev/null)"; exit 3; }
    munge -n | unmunge >/dev/null || { echo "munge does not answer after starting munged"; exit 3; }
fi
slurmctld -f "$conf" || { echo "slurmctld did not start: $(tail -1 "$dir/slurmctld.log" 2>/dev/null)"; exit 1; }
slurmd -f "$conf" -N "$node" || { echo "slurmd did not start: $(tail -1 "$dir/slurmd.log" 2>/dev/null)"; exit 1; }
for _ in $(seq 150); do
    [[ $(sinfo -h -n "$node" -o %T 2>/dev/null) == idle ]] && { echo "export SLURM_CONF=$conf"; exit 0; }
    sleep 0.2
done
echo "the node did not become idle in 30 s: $(sinfo -h -o '%T %E' 2>&1 | head -1); logs in $dir"
exit 1
