#!/usr/bin/env bash
# PS-GRPO on N training nodes plus one vLLM rollout node, with Slurm.
#
#   sbatch --nodes=3 scripts/slurm_train.sh recipes/llama3.1-8b/triviaqa_ps_grpo.yaml [extra grpo_sim.train args]
#
# The LAST node of the allocation serves rollouts (trl vllm-serve on all its GPUs, tensor parallel
# TP, data parallel GPUS_PER_NODE/TP); the other nodes train with accelerate + DeepSpeed ZeRO-3. The
# rollout node's address is handed to the trainers as training.vllm_server_host.
#SBATCH --job-name=ps-grpo
#SBATCH --gres=gpu:8
#SBATCH --ntasks-per-node=1
#SBATCH --exclusive
#SBATCH --output=logs/%x-%j.out
set -euo pipefail
RECIPE=${1:?usage: sbatch --nodes=N+1 scripts/slurm_train.sh RECIPE [args...]}
shift || true
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
TP=${TP:-1}
PORT=${VLLM_PORT:-8000}
ACCELERATE_CONFIG=${ACCELERATE_CONFIG:-configs/accelerate/multi_node.yaml}

mapfile -t NODES < <(scontrol show hostnames "$SLURM_JOB_NODELIST")
NUM_NODES=${#NODES[@]}
if (( NUM_NODES < 2 )); then
  echo "error: need at least 2 nodes (training + rollout), got $NUM_NODES" >&2; exit 2
fi
ROLLOUT_NODE=${NODES[$((NUM_NODES - 1))]}
TRAIN_NODES=("${NODES[@]:0:$((NUM_NODES - 1))}")
NUM_TRAIN=${#TRAIN_NODES[@]}
MAIN_IP=$(srun --nodes=1 --ntasks=1 -w "${TRAIN_NODES[0]}" hostname -I | awk '{print $1}')
ROLLOUT_IP=$(srun --nodes=1 --ntasks=1 -w "$ROLLOUT_NODE" hostname -I | awk '{print $1}')
mkdir -p logs
echo "[slurm] training nodes: ${TRAIN_NODES[*]} (main $MAIN_IP); rollout node: $ROLLOUT_NODE ($ROLLOUT_IP)"

MODEL=$(python -c "from grpo_sim.recipe import load_recipe; print(load_recipe('$RECIPE').model.name_or_path)")
srun --nodes=1 --ntasks=1 -w "$ROLLOUT_NODE" \
  trl vllm-serve --model "$MODEL" --tensor-parallel-size "$TP" --data-parallel-size $((GPUS_PER_NODE / TP)) \
  --host 0.0.0.0 --port "$PORT" > "logs/vllm-${SLURM_JOB_ID}.log" 2>&1 &

# wait until the server answers before training starts
for _ in $(seq 1 180); do
  curl -sf "http://${ROLLOUT_IP}:${PORT}/health/" >/dev/null && break
  sleep 5
done

python -m grpo_sim.cli plan "$RECIPE" --num-processes $((NUM_TRAIN * GPUS_PER_NODE)) --num-machines "$NUM_TRAIN"

srun --nodes="$NUM_TRAIN" --ntasks="$NUM_TRAIN" -w "$(IFS=,; echo "${TRAIN_NODES[*]}")" bash -c "
  accelerate launch --config_file $ACCELERATE_CONFIG \
    --num_machines $NUM_TRAIN --num_processes $((NUM_TRAIN * GPUS_PER_NODE)) \
    --machine_rank \$SLURM_NODEID --main_process_ip $MAIN_IP --main_process_port 29500 \
    -m grpo_sim.train --config $RECIPE \
    --set training.vllm_mode=server --set training.vllm_server_host=$ROLLOUT_IP \
    --set training.vllm_server_port=$PORT --resume auto $*
"
