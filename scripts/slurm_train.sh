#!/usr/bin/env bash
# PS-GRPO on N training nodes plus one vLLM rollout node, with Slurm. Submit from the grpo-sim checkout with its
# environment active (srun passes it on to every node):
#
#   mkdir -p logs && sbatch --nodes=N+1 --time=HH:MM:SS scripts/slurm_train.sh RECIPE [grpo_sim.train args] \
#       [-- vllm serve flags]
#   sbatch --nodes=3 scripts/slurm_train.sh recipes/llama3.1-8b/triviaqa_ps_grpo.yaml -- --max-model-len 4096
#
# The LAST node serves rollouts (scripts/vllm_server.sh: tensor parallel VLLM_TP, default all its GPUs; data
# parallel VLLM_DP, default 1, since TRL 1.16 supports data parallel > 1 only for mixture-of-experts models). The
# other nodes train with accelerate + DeepSpeed ZeRO-3 (ACCELERATE_CONFIG) and c10d rendezvous, and reach the
# server as training.vllm_server_host/port. Training starts once the server answers /health; if it does not
# within VLLM_HEALTH_TIMEOUT seconds, or exits, the job fails with the end of the server's log.
#
# Time limit: Slurm sends SIGUSR1 to this script 15 minutes before the limit (--signal below). The trainers are
# then asked to stop (each finishes its step, saves a checkpoint and exits; torchrun waits STOP_GRACE_S for them
# instead of its default 30 s), the vLLM server is kept up until they have exited, and the job is requeued; the
# requeued job resumes from the newest complete checkpoint (--resume auto). Preemption takes the same path when
# the cluster sets PreemptParameters=send_user_signal; otherwise Slurm sends SIGTERM to every step and SIGKILL
# after GraceTime/KillWait (often 30 s), too short for an 8B step plus a ZeRO-3 checkpoint.
#
# Environment: GPUS_PER_NODE (the job's GPUs per node, else 8), VLLM_TP, VLLM_DP, VLLM_PORT (8000),
# VLLM_HEALTH_TIMEOUT (1800), ACCELERATE_CONFIG (configs/accelerate/multi_node.yaml), MAIN_PROCESS_PORT (29500),
# STOP_GRACE_S (840: the --signal lead time minus a margin; raise both together).
#SBATCH --job-name=ps-grpo
#SBATCH --gres=gpu:8
#SBATCH --ntasks-per-node=1
#SBATCH --exclusive
#SBATCH --requeue
#SBATCH --signal=B:USR1@900
#SBATCH --open-mode=append
#SBATCH --output=logs/%x-%j.out
set -euo pipefail

log() { echo "[slurm_train $(date +%H:%M:%S)] $*"; }
die() {
  echo "[slurm_train $(date +%H:%M:%S)] error: $1" >&2
  exit "${2:-1}"
}
USAGE="usage: sbatch --nodes=N+1 scripts/slurm_train.sh RECIPE [grpo_sim.train args] [-- vllm serve flags]"
[[ $# -ge 1 ]] || die "$USAGE" 2
RECIPE=$1
shift
TRAIN_ARGS=()
SERVER_ARGS=()
while [[ $# -gt 0 ]]; do
  if [[ $1 == -- ]]; then
    shift
    SERVER_ARGS=("$@")
    break
  fi
  TRAIN_ARGS+=("$1")
  shift
done
OVERRIDES=() # the key=value of every --set, to read the recipe as the trainers will
for ((i = 0; i < ${#TRAIN_ARGS[@]}; i++)); do
  case ${TRAIN_ARGS[i]} in
    --set)
      OVERRIDES+=("${TRAIN_ARGS[i + 1]:-}")
      i=$((i + 1))
      ;;
    --set=*) OVERRIDES+=("${TRAIN_ARGS[i]#--set=}") ;;
    --overwrite) die "--overwrite would delete the run's checkpoints again when the job is requeued; empty the \
output directory before submitting instead" 2 ;;
    --resume | --resume=*) die "the script resumes by itself (--resume auto); leave --resume out" 2 ;;
  esac
done
[[ -f scripts/vllm_server.sh && -f scripts/slurm_node.sh ]] ||
  die "run from the grpo-sim checkout (cd grpo-sim && sbatch scripts/slurm_train.sh ...); cwd is $PWD" 2
[[ -f $RECIPE ]] || die "recipe not found: $RECIPE (paths are relative to $PWD)" 2
[[ -n ${SLURM_JOB_ID:-} && -n ${SLURM_JOB_NODELIST:-} ]] || die "not inside a Slurm job: submit with sbatch" 2

GPUS_PER_NODE=${GPUS_PER_NODE:-${SLURM_GPUS_ON_NODE:-8}}
VLLM_TP=${VLLM_TP:-$GPUS_PER_NODE}
VLLM_DP=${VLLM_DP:-1}
VLLM_PORT=${VLLM_PORT:-8000}
VLLM_HEALTH_TIMEOUT=${VLLM_HEALTH_TIMEOUT:-1800}
ACCELERATE_CONFIG=${ACCELERATE_CONFIG:-configs/accelerate/multi_node.yaml}
MAIN_PROCESS_PORT=${MAIN_PROCESS_PORT:-29500}
STOP_GRACE_S=${STOP_GRACE_S:-840}
for name in GPUS_PER_NODE VLLM_TP VLLM_DP VLLM_PORT VLLM_HEALTH_TIMEOUT MAIN_PROCESS_PORT STOP_GRACE_S; do
  [[ ${!name} =~ ^[1-9][0-9]*$ ]] || die "$name must be a positive integer, got '${!name}'" 2
done
((VLLM_TP * VLLM_DP <= GPUS_PER_NODE)) ||
  die "VLLM_TP x VLLM_DP = $((VLLM_TP * VLLM_DP)) GPUs, but the rollout node has $GPUS_PER_NODE" 2
[[ -f $ACCELERATE_CONFIG ]] || die "accelerate config not found: $ACCELERATE_CONFIG" 2
# c10d rendezvous needs main_process_ip:port as its endpoint; with same_network accelerate passes none.
if grep -Eq '^[[:space:]]*same_network:[[:space:]]*true' "$ACCELERATE_CONFIG"; then
  die "$ACCELERATE_CONFIG sets same_network: true, which leaves c10d rendezvous without an endpoint; set it false" 2
fi
# torchrun waits this long for its trainers after passing on a stop, instead of 30 s.
export TORCH_ELASTIC_SHUTDOWN_TIMEOUT=$STOP_GRACE_S

mapfile -t NODES < <(scontrol show hostnames "$SLURM_JOB_NODELIST")
NUM_NODES=${#NODES[@]}
((NUM_NODES >= 2)) || die "need at least 2 nodes (training + rollout), got $NUM_NODES: sbatch --nodes=N+1" 2
ROLLOUT_NODE=${NODES[NUM_NODES - 1]}
TRAIN_NODES=("${NODES[@]:0:NUM_NODES-1}")
NUM_TRAIN=${#TRAIN_NODES[@]}
node_address() { srun --nodes=1 --ntasks=1 -w "$1" hostname -I | awk '{print $1}'; }
MAIN_IP=$(node_address "${TRAIN_NODES[0]}") || MAIN_IP=
ROLLOUT_IP=$(node_address "$ROLLOUT_NODE") || ROLLOUT_IP=
[[ -n $MAIN_IP && -n $ROLLOUT_IP ]] || die "could not read the nodes' addresses with 'srun -w NODE hostname -I'"
log "job $SLURM_JOB_ID (restart ${SLURM_RESTART_COUNT:-0}): training nodes ${TRAIN_NODES[*]} (main $MAIN_IP)," \
  "rollout node $ROLLOUT_NODE ($ROLLOUT_IP)"

# The recipe path and overrides travel as arguments, never inside Python source. Read without validating
# (loading trl for that takes seconds); the plan below validates the recipe.
RECIPE_INFO=$(
  python - "$RECIPE" "${OVERRIDES[@]}" <<'PY'
import sys
from grpo_sim.recipe import apply_overrides, load_raw
try:
    raw = apply_overrides(load_raw(sys.argv[1]), sys.argv[2:])
except (ValueError, OSError) as exc:
    sys.exit(f"error: {exc}")
model = raw.get("model")
model = model.get("name_or_path") if isinstance(model, dict) else None
if not model:
    sys.exit(f"error: {sys.argv[1]}: model.name_or_path is not set")
print(model)
training = raw.get("training")
print(isinstance(training, dict) and training.get("use_vllm") is True)
PY
) || die "cannot read the model from $RECIPE (message above)" 2
MODEL=$(sed -n 1p <<<"$RECIPE_INFO")
if [[ $(sed -n 2p <<<"$RECIPE_INFO") != True ]]; then
  log "warning: $RECIPE does not set training.use_vllm: true, so the trainers generate themselves and the" \
    "rollout node's server stays idle"
fi
SERVER_SETTINGS=(--set training.vllm_mode=server --set "training.vllm_server_host=$ROLLOUT_IP"
  --set "training.vllm_server_port=$VLLM_PORT")
SET_ARGS=()
for override in "${OVERRIDES[@]}"; do SET_ARGS+=(--set "$override"); done
python -m grpo_sim.cli plan "$RECIPE" --num-processes $((NUM_TRAIN * GPUS_PER_NODE)) --num-machines "$NUM_TRAIN" \
  --vllm-data-parallel "$VLLM_DP" "${SET_ARGS[@]}" "${SERVER_SETTINGS[@]}" ||
  die "the recipe's batch settings do not fit this launch (problems above)" 2

STOP_SIGNAL= # USR1: the time limit is near (stop, then requeue); TERM: cancelled or preempted (Slurm decides)
SERVER_PID=
TRAIN_PID=
ask_trainers_to_stop() {
  # srun forwards SIGUSR1 to every task; scripts/slurm_node.sh turns it into one SIGTERM for its launcher.
  # (A SIGTERM to srun itself would make it SIGKILL the trainers at once.)
  if [[ -n $TRAIN_PID ]] && kill -0 "$TRAIN_PID" 2>/dev/null; then kill -USR1 "$TRAIN_PID" 2>/dev/null || true; fi
}
# shellcheck disable=SC2317 # run by the traps below
on_signal() {
  [[ -n $STOP_SIGNAL ]] && return
  STOP_SIGNAL=$1
  log "SIG$1 received: asking the trainers to finish the step, save a checkpoint and stop; the vLLM server stays" \
    "up until they have exited"
  ask_trainers_to_stop
}
trap 'on_signal USR1' USR1
trap 'on_signal TERM' TERM
stop_server() {
  if [[ -n $SERVER_PID ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    log "stopping the vLLM server"
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
}
# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
  [[ -n $TRAIN_PID ]] && kill -0 "$TRAIN_PID" 2>/dev/null && kill -TERM "$TRAIN_PID" 2>/dev/null
  stop_server
}
trap cleanup EXIT
pause() { # an interruptible second: a trapped signal is handled at once
  sleep 1 &
  wait $! || true
}

mkdir -p logs
SERVER_LOG=logs/vllm-$SLURM_JOB_ID.log
server_failed() {
  echo "[slurm_train] error: $1. Last lines of $SERVER_LOG:" >&2
  tail -n 40 "$SERVER_LOG" >&2 || true
  echo "[slurm_train] error: $1 (see $SERVER_LOG); not training, not requeueing" >&2
  exit 1
}
log "starting the vLLM server on $ROLLOUT_NODE: $MODEL, tensor parallel $VLLM_TP, data parallel $VLLM_DP," \
  "port $VLLM_PORT (log: $SERVER_LOG)"
srun --nodes=1 --ntasks=1 -w "$ROLLOUT_NODE" --kill-on-bad-exit=1 \
  env VLLM_HOST="${VLLM_HOST:-$ROLLOUT_IP}" bash scripts/vllm_server.sh "$MODEL" "$VLLM_TP" "$VLLM_DP" "$VLLM_PORT" "${SERVER_ARGS[@]}" >>"$SERVER_LOG" 2>&1 &
SERVER_PID=$!

HEALTH_URL=http://$ROLLOUT_IP:$VLLM_PORT/health
healthy() { python -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=5)' "$1" 2>/dev/null; }
deadline=$((SECONDS + VLLM_HEALTH_TIMEOUT))
until healthy "$HEALTH_URL"; do
  kill -0 "$SERVER_PID" 2>/dev/null || server_failed "the vLLM server exited before it answered $HEALTH_URL"
  ((SECONDS < deadline)) || server_failed "the vLLM server did not answer $HEALTH_URL within $VLLM_HEALTH_TIMEOUT s"
  [[ -z $STOP_SIGNAL ]] || break
  pause
done

TRAIN_RC=0
SERVER_LOST=0
if [[ -z $STOP_SIGNAL ]]; then
  log "vLLM server healthy; starting $NUM_TRAIN training node(s) x $GPUS_PER_NODE processes"
  srun --nodes="$NUM_TRAIN" --ntasks="$NUM_TRAIN" --ntasks-per-node=1 -w "$(IFS=,; echo "${TRAIN_NODES[*]}")" \
    --kill-on-bad-exit=1 \
    bash scripts/slurm_node.sh --config_file "$ACCELERATE_CONFIG" --num_machines "$NUM_TRAIN" \
    --num_processes $((NUM_TRAIN * GPUS_PER_NODE)) --main_process_ip "$MAIN_IP" \
    --main_process_port "$MAIN_PROCESS_PORT" --rdzv_backend c10d \
    -m grpo_sim.train --config "$RECIPE" "${TRAIN_ARGS[@]}" "${SERVER_SETTINGS[@]}" --resume auto &
  TRAIN_PID=$!
  while kill -0 "$TRAIN_PID" 2>/dev/null; do
    if ((!SERVER_LOST)) && ! kill -0 "$SERVER_PID" 2>/dev/null; then
      SERVER_LOST=1
      echo "[slurm_train] error: the vLLM server exited while training (see $SERVER_LOG); asking the trainers" \
        "to save a checkpoint and stop" >&2
      ask_trainers_to_stop
    fi
    pause
  done
  wait "$TRAIN_PID" || TRAIN_RC=$?
  log "trainers exited with status $TRAIN_RC"
fi
stop_server
trap - EXIT

if ((SERVER_LOST)); then
  die "the vLLM server was lost during training; resubmit to resume from the last checkpoint (see $SERVER_LOG)"
fi
if [[ $STOP_SIGNAL == USR1 ]]; then
  # Requeued even if the trainers had just finished (their nodes exit 0 after any stop request, see
  # slurm_node.sh): the requeued job then resumes at the last step and only writes the final model again.
  log "requeueing job $SLURM_JOB_ID; it resumes from the newest complete checkpoint"
  scontrol requeue "$SLURM_JOB_ID" || die "scontrol requeue $SLURM_JOB_ID failed; resubmit the same command to resume"
  exit 0
fi
exit "$TRAIN_RC"
