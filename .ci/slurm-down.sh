#!/usr/bin/env bash
# Stop the cluster that slurm-up.sh started with state under $1 (slurmd, slurmctld, munged, by their pid
# files) and remove its /etc/slurm/slurm.conf.
set -uo pipefail
state=$(realpath -m "${1:?usage: slurm-down.sh STATE_DIR}")
for pidfile in "$state/slurmd.pid" "$state/slurmctld.pid" "$state/munge/munged.pid"; do
    if [[ -s $pidfile ]]; then
        pid=$(cat "$pidfile")
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    fi
done
if grep -qs '^ClusterName=simcon-ci$' /etc/slurm/slurm.conf; then
    rm -f /etc/slurm/slurm.conf
fi
