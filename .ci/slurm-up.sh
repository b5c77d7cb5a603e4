#!/usr/bin/env bash
# Start a one-node SLURM cluster on localhost (munged, slurmctld, slurmd) with its state under $1.
# Needs root and Debian's slurm-wlm and munge; stop it with slurm-down.sh $1. Its config goes to
# /etc/slurm/slurm.conf, the one place every SLURM command finds it: the slurm plugin's job step
# drops SLURM_* variables (SLURM_CONF included) before it calls srun. An existing config is left alone.
set -euo pipefail
state=$(realpath -m "${1:?usage: slurm-up.sh STATE_DIR}")
conf=/etc/slurm/slurm.conf
if [[ -e $conf ]] && ! grep -q '^ClusterName=simcon-ci$' "$conf"; then
    echo "slurm-up.sh: $conf exists and is not this test cluster's; not touching it" >&2
    exit 1
fi
here=$(dirname "$(realpath "$0")")
mkdir -p "$state/ctld" "$state/d" "$state/munge"
chmod 755 "$state"  # munged runs as munge and needs to reach its socket under it
chown munge:munge "$state/munge"

# munged: as the munge user, its socket and pid file under $state (no systemd here)
runuser -u munge -- munged --socket="$state/munge/munge.socket.2" --pid-file="$state/munge/munged.pid" --force
node=$(slurmd -C | head -n 1)
sed -e "s|@STATE@|$state|g" -e "s|@HOST@|$(hostname -s)|g" -e "s|@NODE@|$node|" \
    -e "s|@MUNGE_SOCKET@|$state/munge/munge.socket.2|" "$here/slurm.conf.in" > "$conf"
slurmctld
slurmd

for _ in $(seq 60); do
    if sinfo -h -o %T 2>/dev/null | grep -qx idle; then
        exit 0
    fi
    sleep 1
done
echo "slurm-up.sh: the node did not become idle within 60 s; logs under $state" >&2
exit 1
