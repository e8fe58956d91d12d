"""Measure the memory model (grpo_sim.memory) on one GPU: a Qwen2.5-3B-shaped model with random weights, built
locally from the shipped config (no download), one full fine-tuning step as a GRPO step does it (bf16 model
upcast to float32 masters, AdamW, gradient checkpointing, logits of the completion tokens only, a bf16 reference
forward when beta > 0), then ``torch.cuda.max_memory_allocated`` against the model's estimate of the same terms
(the CUDA context and vLLM are not in the allocator's count and are left out of both). Passes within 15 %.

    scripts/gpu_check.sh --memory [--batch 8 --prompt-tokens 1024 --completion-tokens 64 --beta 0.04]
    scripts/gpu_check.sh --memory --dry-run     # CPU, a tiny model of the same family: the code path only
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TOLERANCE = 0.15
#: the oldest versions this check has been read against (Qwen2 with logits_to_keep; torch's AdamW foreach)
MIN_VERSIONS = {"torch": (2, 4), "transformers": (4, 50)}


def refuse_unusable_versions() -> None:
    import importlib.metadata as md

    for name, minimum in MIN_VERSIONS.items():
        try:
            version = md.version(name)
        except md.PackageNotFoundError:
            sys.exit(f"gpu_memory_check: {name} is not installed; install {name}>={'.'.join(map(str, minimum))}")
        parts = tuple(int(p) for p in version.split("+")[0].split(".")[:2] if p.isdigit())
        if parts < minimum:
            sys.exit(
                f"gpu_memory_check: {name} {version} is too old (needs >= {'.'.join(map(str, minimum))}: Qwen2 "
                "models with logits_to_keep); install a newer one from the carried wheels"
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny model: the code path only")
    parser.add_argument("--model", default="Qwen/Qwen2.5-3B-Instruct", help="a shipped config (grpo_sim/model_configs)")
    parser.add_argument("--batch", type=int, default=8, help="completions per step (per_device_train_batch_size)")
    parser.add_argument("--prompt-tokens", type=int, default=1024)
    parser.add_argument("--completion-tokens", type=int, default=64)
    parser.add_argument("--beta", type=float, default=0.04, help="> 0: a bf16 reference forward")
    parser.add_argument("--no-checkpointing", action="store_true")
    parser.add_argument("--json", default=None, help="also write the result here")
    args = parser.parse_args(argv)
    refuse_unusable_versions()

    import torch
    from transformers import CONFIG_MAPPING, AutoModelForCausalLM

    from grpo_sim.memory import Launch, estimate_memory, shipped_config_path

    path = shipped_config_path(args.model)
    if path is None:
        sys.exit(f"gpu_memory_check: no shipped config for {args.model} in grpo_sim/model_configs")
    values = {k: v for k, v in json.loads(path.read_text()).items() if not k.startswith("_")}
    if args.dry_run:  # same family, tiny
        values.update(
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            vocab_size=512,
        )
        args.batch, args.prompt_tokens, args.completion_tokens = 2, 24, 8
    device = "cpu" if args.dry_run else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        sys.exit("gpu_memory_check: no CUDA device; run with --dry-run on CPU")
    config = CONFIG_MAPPING[values["model_type"]](**values)
    from grpo_sim.memory import ModelShape

    shape = ModelShape.from_config({**values, "_name_or_path": args.model})
    checkpointing = not args.no_checkpointing
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16).to(device)
    reference = None
    if args.beta > 0:
        reference = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16).to(device).eval()
    model.float()  # the runner's float32 masters (grpo_sim.runner.loading.load_model)
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.config.use_cache = False
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-6)
    length = args.prompt_tokens + args.completion_tokens
    ids = torch.randint(0, config.vocab_size, (args.batch, length), device=device)
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    keep = args.completion_tokens + 1
    with torch.autocast(device, dtype=torch.bfloat16):
        if reference is not None:
            with torch.no_grad():
                ref_logits = reference(input_ids=ids, logits_to_keep=keep).logits.float().log_softmax(-1)
                ref_logps = ref_logits[:, :-1].gather(-1, ids[:, -args.completion_tokens :, None]).squeeze(-1)
                del ref_logits
        logits = model(input_ids=ids, logits_to_keep=keep).logits
        logps = logits.float().log_softmax(-1)[:, :-1].gather(-1, ids[:, -args.completion_tokens :, None]).squeeze(-1)
        loss = -logps.mean() + (0.0 if reference is None else args.beta * (logps - ref_logps).pow(2).mean())
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    launch = Launch(
        shape,
        strategy="single",
        num_gpus=1,
        beta=args.beta,
        gradient_checkpointing=checkpointing,
        batch=args.batch,
        prompt_tokens=args.prompt_tokens,
        completion_tokens=args.completion_tokens,
    )
    estimate = estimate_memory(launch)
    allocator_terms = estimate.total - estimate.term("CUDA context, NCCL, allocator")
    result = {
        "model": args.model if not args.dry_run else f"{args.model} (tiny, dry run)",
        "params": shape.params,
        "estimate_gib": allocator_terms / 2**30,
        "terms_gib": {w: b / 2**30 for w, b, _ in estimate.terms},
        "torch": torch.__version__,
    }
    if device == "cuda":
        measured = torch.cuda.max_memory_allocated()
        result["measured_gib"] = measured / 2**30
        result["ratio"] = allocator_terms / measured
        result["ok"] = abs(allocator_terms - measured) <= TOLERANCE * measured
        result["gpu"] = torch.cuda.get_device_name()
    else:
        result["ok"] = bool(torch.isfinite(loss).item())
    print(json.dumps(result, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    if not result["ok"]:
        print(
            f"gpu_memory_check: measured {result.get('measured_gib', 0):.2f} GiB against the estimate "
            f"{result['estimate_gib']:.2f} GiB: more than {TOLERANCE:.0%} apart",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
