#!/usr/bin/env bash
# Stop the daemons .ci/slurm-up.sh started, by the PIDs it kept (never by name).
set -uo pipefail
STATE=${NETC_SLURM_STATE:-/tmp/netc-slurm}
for d in slurmd slurmctld munged; do
  f="$STATE/$d.pid"
  if [ -f "$f" ]; then
    pid=$(cat "$f")
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid" && echo "slurm-down: stopped $d ($pid)"
      for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    fi
    rm -f "$f"
  fi
done
