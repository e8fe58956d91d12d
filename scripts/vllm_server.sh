#!/usr/bin/env bash
# Start TRL's vLLM rollout server for vllm_mode: server (needs `pip install -e .[vllm]`).
#
#   scripts/vllm_server.sh MODEL [TENSOR_PARALLEL] [DATA_PARALLEL] [PORT]
#   CUDA_VISIBLE_DEVICES=7 scripts/vllm_server.sh Qwen/Qwen2.5-3B-Instruct            # 1 GPU
#   CUDA_VISIBLE_DEVICES=4,5,6,7 scripts/vllm_server.sh meta-llama/Llama-3.1-8B-Instruct 2 2
#
# The server uses the GPUs it is given and NOT the trainers' GPUs. Trainers find it through
# training.vllm_server_host / vllm_server_port in the recipe (or --set training.vllm_server_host=HOST).
set -euo pipefail
if [[ $# -lt 1 ]]; then
  sed -n '2,10p' "$0"; exit 2
fi
MODEL=$1
TP=${2:-1}
DP=${3:-1}
PORT=${4:-8000}
if ! command -v trl >/dev/null 2>&1; then
  echo "error: the 'trl' command is not on PATH; install the project with: pip install -e '.[vllm]'" >&2
  exit 2
fi
python -c "import vllm" 2>/dev/null || { echo "error: vllm is not installed: pip install -e '.[vllm]'" >&2; exit 2; }
echo "[vllm_server] model=$MODEL tensor_parallel=$TP data_parallel=$DP port=$PORT gpus=${CUDA_VISIBLE_DEVICES:-all}"
exec trl vllm-serve --model "$MODEL" --tensor-parallel-size "$TP" --data-parallel-size "$DP" \
  --port "$PORT" --host 0.0.0.0
