#!/usr/bin/env bash
# Start the vLLM rollout server for vllm_mode: server (needs `pip install -e .[vllm]`).
#
#   scripts/vllm_server.sh MODEL [TENSOR_PARALLEL] [DATA_PARALLEL] [PORT] [vllm serve flags...]
#   CUDA_VISIBLE_DEVICES=7 scripts/vllm_server.sh Qwen/Qwen2.5-3B-Instruct                     # 1 GPU
#   CUDA_VISIBLE_DEVICES=6,7 scripts/vllm_server.sh meta-llama/Llama-3.1-8B-Instruct 2 1 8000 \
#       --max-model-len 4096 --gpu-memory-utilization 0.85                                     # 2 GPUs
#
# Runs `vllm serve` the way TRL's trainers need it (what TRL 1.16's deprecated `trl vllm-serve` runs):
# VLLM_SERVER_DEV_MODE=1, NCCL weight transfer, processed logprobs, no logprob cap. Flags after the numbers go
# to `vllm serve` unchanged. Keep DATA_PARALLEL at 1 for dense models (TRL 1.16: above 1 "is not supported/useful
# and will error out"); spread a dense model over more GPUs with TENSOR_PARALLEL. VLLM_HOST (default 0.0.0.0)
# is the address it listens on. The server uses the GPUs it is given and NOT the trainers' GPUs; trainers find
# it through training.vllm_server_host / vllm_server_port (or --set training.vllm_server_host=HOST).
# VLLM_MAX_MODEL_LEN=N passes --max-model-len N (`grpo-sim plan` prints the run's: longest prompt + completion);
# without it vLLM sizes its KV cache for the model's whole context (131,072 tokens for Llama-3.1-8B).
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
HOST=${VLLM_HOST:-0.0.0.0}
for value in "$TP" "$DP" "$PORT"; do
  if [[ ! $value =~ ^[1-9][0-9]*$ ]]; then
    echo "error: TENSOR_PARALLEL, DATA_PARALLEL and PORT must be positive integers, got '$value'" >&2
    usage
  fi
done
if ! command -v vllm >/dev/null 2>&1; then
  echo "error: the 'vllm' command is not on PATH; install the project with: pip install -e '.[vllm]'" >&2
  exit 2
fi
VLLM_VERSION=$(vllm --version 2>/dev/null | tail -n 1) || true
if [[ ! $VLLM_VERSION =~ ^[0-9]+\.[0-9]+ ]]; then
  echo "error: cannot read vLLM's version from 'vllm --version' (got '$VLLM_VERSION'); is vllm installed?" >&2
  exit 2
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
echo "[vllm_server] vllm $VLLM_VERSION model=$MODEL tensor_parallel=$TP data_parallel=$DP host=$HOST port=$PORT" \
  "gpus=${CUDA_VISIBLE_DEVICES:-all} extra flags: ${*:-none}"
# The weight-sync and prefix-cache endpoints that TRL's trainers call live behind vLLM's dev mode.
export VLLM_SERVER_DEV_MODE=1
MAX_LEN_FLAGS=()
[[ -n ${VLLM_MAX_MODEL_LEN:-} ]] && MAX_LEN_FLAGS=(--max-model-len "$VLLM_MAX_MODEL_LEN")
exec vllm serve "$MODEL" --host "$HOST" --port "$PORT" --tensor-parallel-size "$TP" --data-parallel-size "$DP" \
  "${TRL_FLAGS[@]}" "${MAX_LEN_FLAGS[@]}" "$@"
