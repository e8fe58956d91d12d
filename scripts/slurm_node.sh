#!/usr/bin/env bash
# One training node under scripts/slurm_train.sh (srun runs it once per training node):
#
#   accelerate launch --machine_rank $SLURM_NODEID --rdzv_conf is_host=1|0 ARGS...
#
# The first node hosts the c10d rendezvous store (is_host): torch's own guess compares the endpoint with the
# node's addresses, which goes wrong on multi-homed nodes and when several "nodes" share one machine.
# Graceful stop: slurm_train.sh sends SIGUSR1 to its srun, which forwards it to every process of the step. Only
# this script acts on it: the launcher and the trainers inherit "ignore SIGUSR1", and the launcher (torchrun's
# elastic agent) gets ONE SIGTERM, which it passes on to its trainers (they finish the step, save a checkpoint and
# exit) while it waits up to TORCH_ELASTIC_SHUTDOWN_TIMEOUT seconds before killing them. A second SIGTERM would
# cut that wait short, so a SIGTERM from Slurm itself (which reaches the launcher directly) is not passed on.
# After a stop request this script exits 0 whatever the launcher returns: srun --kill-on-bad-exit would otherwise
# kill the nodes still writing their part of the checkpoint as soon as the first node's launcher exits non-zero.
set -uo pipefail
if [[ -z ${SLURM_NODEID:-} ]]; then
  echo "error: $0 is run by srun inside scripts/slurm_train.sh (SLURM_NODEID is not set)" >&2
  exit 2
fi
trap '' USR1 # inherited as "ignored" by the launcher and the trainers
accelerate launch --machine_rank "$SLURM_NODEID" --rdzv_conf "is_host=$((SLURM_NODEID == 0 ? 1 : 0))" "$@" &
launcher=$!
stopping=0
# shellcheck disable=SC2317 # run by the USR1 trap
stop_launcher() {
  ((stopping)) && return
  stopping=1
  echo "[slurm_node $SLURM_NODEID] graceful stop: SIGTERM to the launcher (pid $launcher)" >&2
  kill -TERM "$launcher" 2>/dev/null || true
}
trap stop_launcher USR1
trap ':' TERM # stay alive until the launcher has shut its trainers down; Slurm signalled it already
while kill -0 "$launcher" 2>/dev/null; do
  sleep 1 &
  wait $! || true
done
status=0
wait "$launcher" || status=$?
if ((stopping && status != 0)); then
  echo "[slurm_node $SLURM_NODEID] the launcher exited with status $status after the stop request (expected: the" \
    "trainers stopped early); exiting 0 so that srun lets the other nodes finish their checkpoint" >&2
  status=0
fi
exit "$status"
