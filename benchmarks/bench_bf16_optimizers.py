"""Bytes per parameter of the bf16 training options (issue #24 item 3), measured on CPU, and whether each still
trains at lr 1e-6: the share of weights whose effective value moved after 3 steps.

    .venv/bin/python -m benchmarks.bench_bf16_optimizers

Options: float32 masters + torch AdamW (what grpo_sim.runner.loading does under DDP); bf16 + torch AdamW (no
masters: updates round away); bf16 + optimi StableAdamW with Kahan summation (``training.optim: stable_adamw``);
bf16 + optimi AdamW with Kahan summation. Bytes = weights + gradients + optimizer states held between steps, per
parameter (a DDP launch adds one gradient-sized bucket copy; grpo_sim.memory counts it).
"""

from __future__ import annotations

import torch


def _model(dtype: torch.dtype) -> torch.nn.Module:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    config = Qwen2Config(
        hidden_size=256,
        intermediate_size=688,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=512,
        max_position_embeddings=64,
        tie_word_embeddings=True,
    )
    return Qwen2ForCausalLM(config).to(dtype)


def _bytes(t: torch.Tensor | None) -> int:
    return 0 if t is None or not torch.is_tensor(t) else t.numel() * t.element_size()


def measure(name: str, dtype: torch.dtype, make_optimizer) -> dict:
    model = _model(dtype)
    start = {k: v.detach().float().clone() for k, v in model.named_parameters()}
    optimizer = make_optimizer(model.parameters())
    ids = torch.randint(0, 512, (4, 32), generator=torch.Generator().manual_seed(1))
    for _ in range(3):
        optimizer.zero_grad(set_to_none=False)
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
    params = list(model.parameters())
    count = sum(p.numel() for p in params)
    held = sum(_bytes(p) + _bytes(p.grad) for p in params)
    held += sum(_bytes(v) for state in optimizer.state.values() for v in state.values() if torch.is_tensor(v))
    moved = 0
    for (key, p), before in zip(model.named_parameters(), start.values(), strict=True):
        effective = p.detach().float()
        comp = optimizer.state.get(p, {}).get("kahan_comp")
        if comp is not None and comp.shape == p.shape:
            effective = effective + comp.float()
        moved += int((effective != before).sum())
    return {"option": name, "bytes_per_param": held / count, "moved": moved / count}


def main() -> None:
    from optimi import AdamW as OptimiAdamW
    from optimi import StableAdamW

    lr = 1e-6
    rows = [
        measure("float32 masters + torch AdamW", torch.float32, lambda p: torch.optim.AdamW(p, lr=lr)),
        measure("bf16 + torch AdamW (no masters)", torch.bfloat16, lambda p: torch.optim.AdamW(p, lr=lr)),
        measure("bf16 + optimi StableAdamW, Kahan", torch.bfloat16, lambda p: StableAdamW(p, lr=lr, kahan_sum=True)),
        measure("bf16 + optimi AdamW, Kahan", torch.bfloat16, lambda p: OptimiAdamW(p, lr=lr, kahan_sum=True)),
    ]
    print("| option | bytes/param held (one GPU) | + DDP bucket | weights moved after 3 steps at lr 1e-6 |")
    print("|---|---|---|---|")
    for r in rows:
        bucket = 4 if r["option"].startswith("float32") else 2
        print(
            f"| {r['option']} | {r['bytes_per_param']:.2f} | {r['bytes_per_param'] + bucket:.2f} | {r['moved']:.1%} |"
        )


if __name__ == "__main__":
    main()
