#!/usr/bin/env bash
# Start a one-node Slurm cluster on this machine (recipe: ../shared/SLURM.md): munged, slurmctld
# and slurmd, their PIDs kept in $STATE (default /tmp/netc-slurm) for .ci/slurm-down.sh, which
# stops exactly these processes. Needs root and Debian's slurmctld slurmd slurm-client munge.
set -euo pipefail
STATE=${NETC_SLURM_STATE:-/tmp/netc-slurm}
mkdir -p "$STATE"

if [ -f "$STATE/slurmctld.pid" ] && kill -0 "$(cat "$STATE/slurmctld.pid")" 2>/dev/null; then
  echo "slurm-up: already running (PIDs in $STATE)"; exit 0
fi

NODE=$(hostname -s)
CPUS=$(nproc)
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd
chown slurm:slurm /var/spool/slurmctld /var/spool/slurmd
cat > /etc/slurm/slurm.conf <<CONF
ClusterName=ci
SlurmctldHost=localhost
SlurmUser=slurm
AuthType=auth/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurmctld.log
SlurmdLogFile=/var/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MinJobAge=300
MaxArraySize=10001
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=4000 State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
CONF

mkdir -p /run/munge && chown munge:munge /run/munge
if ! { [ -f /run/munge/munged.pid ] && kill -0 "$(cat /run/munge/munged.pid)" 2>/dev/null; }; then
  su -s /bin/sh munge -c /usr/sbin/munged
  cp /run/munge/munged.pid "$STATE/munged.pid"
fi
slurmctld -D >"$STATE/slurmctld.out" 2>&1 &
echo $! > "$STATE/slurmctld.pid"
slurmd -D >"$STATE/slurmd.out" 2>&1 &
echo $! > "$STATE/slurmd.pid"

for _ in $(seq 1 60); do
  if [ "$(sinfo -h -o %T 2>/dev/null | head -1)" = "idle" ]; then
    echo "slurm-up: node $NODE idle ($CPUS CPUs); PIDs in $STATE"; exit 0
  fi
  sleep 1
done
echo "slurm-up: node did not become idle; see $STATE/*.out and /var/log/slurm*.log" >&2
exit 1
