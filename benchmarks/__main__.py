"""`make bench`: every benchmark in one run, printed as tables with ratios against baselines
measured in the same run. ``python -m benchmarks --quick`` runs a shorter version.

Threads are pinned to one core so the numbers compare code, not parallelism.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import warnings  # noqa: E402

import torch  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

TARGETS = {("rouge_l", 128): 100.0, ("bleu2", 128): 20.0}
SHARDING_EFFICIENCY_TARGET = 0.8


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("--quick", action="store_true", help="fewer sizes and steps")
    parser.add_argument("--only", choices=["rewards", "trainer", "data", "soak", "vllm"], default=None)
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    # keep the output to the tables: transformers' per-load progress bars and its deprecation
    # notices about TRL's gradient_checkpointing field say nothing about speed
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"transformers\.")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    console = Console(width=200)
    results: dict = {}
    failed = []

    if args.only in (None, "rewards"):
        from . import bench_rewards

        rows = bench_rewards.run(quick=args.quick)
        table = Table(title=f"PS-GRPO set rewards, n={bench_rewards.N} g={bench_rewards.G}, one core")
        for col in (
            "metric",
            "tokens",
            "sets",
            "pairs",
            "naive loop",
            "naive ms",
            "exact ms",
            "relaxed ms",
            "exact speed-up",
            "target",
        ):
            table.add_column(col, justify="right")
        for r in rows:
            target = TARGETS.get((r["metric"], r["tokens"]))
            ok = "" if target is None else (f">= {target:.0f}x " + ("ok" if r["speedup_exact"] >= target else "MISSED"))
            if target is not None and r["speedup_exact"] < target:
                failed.append(f"{r['metric']} {r['tokens']} tokens {r['sets']} sets: {r['speedup_exact']:.1f}x")
            table.add_row(
                r["metric"],
                str(r["tokens"]),
                str(r["sets"]),
                str(r["pairs"]),
                r["naive"],
                f"{r['naive_ms']:.1f}",
                f"{r['exact_ms']:.2f}",
                f"{r['relaxed_ms']:.2f}",
                f"{r['speedup_exact']:.0f}x",
                ok,
            )
        console.print(table)
        emb = bench_rewards.run_embedding()
        console.print(
            f"embedding reward (packaged MiniLM, CPU, {emb['tokens']}-token completions): "
            f"exact {emb['exact_ms_per_completion']:.2f} ms/completion, "
            f"relaxed {emb['relaxed_ms_per_completion']:.2f} ms/completion "
            "(encoding dominates; each completion is encoded once either way)"
        )
        results["rewards"] = rows
        results["embedding"] = emb

        shard_rows = bench_rewards.run_sharding(quick=args.quick)
        table = Table(
            title=f"Set rewards sharded over P processes (simulated in one process, one core, CPU time): "
            f"P x {bench_rewards.N * bench_rewards.G} completions x {shard_rows[0]['tokens']} "
            f"tokens, exact {shard_rows[0]['metric']}; efficiency = (T_1 / P) / T_share(process 0)"
        )
        for col in (
            "P",
            "completions",
            "T_1 whole batch s (every process, before)",
            "T_share s (process 0)",
            "slowest share s",
            "per-process speed-up",
            "efficiency",
            "target",
        ):
            table.add_column(col, justify="right")
        for r in shard_rows:
            ok = r["efficiency"] >= SHARDING_EFFICIENCY_TARGET
            if not ok:
                failed.append(f"sharding efficiency at P={r['processes']}: {r['efficiency']:.2f}")
            table.add_row(
                str(r["processes"]),
                str(r["completions"]),
                f"{r['whole_batch_s']:.3f}",
                f"{r['share_s']:.4f}",
                "-" if r["slowest_share_s"] is None else f"{r['slowest_share_s']:.4f}",
                f"{r['speedup_per_process']:.1f}x",
                f"{r['efficiency']:.2f}",
                f">= {SHARDING_EFFICIENCY_TARGET} " + ("ok" if ok else "MISSED"),
            )
        console.print(table)
        results["sharding"] = shard_rows

    if args.only in (None, "trainer"):
        from . import bench_trainer

        res = bench_trainer.run(steps=5 if args.quick else 10, rounds=2 if args.quick else 4)
        table = Table(title="Training step time, same work (tiny policy, 24 completions x 32 tokens, one core)")
        for col in ("PSGRPOTrainer s/step", "trl.GRPOTrainer s/step", "ratio", "target"):
            table.add_column(col, justify="right")
        table.add_row(
            f"{res['psgrpo_step_s']:.3f}",
            f"{res['trl_step_s']:.3f}",
            f"{res['ratio']:.3f}",
            "<= 1.05 " + ("ok" if res["ratio"] <= 1.05 else "MISSED"),
        )
        console.print(table)
        results["trainer"] = res

    if args.only in (None, "data"):
        from . import bench_data

        torch.set_num_threads(2)  # the data benchmarks are specified on the machine's 2 cores
        res = bench_data.run(quick=args.quick)
        table = Table(title=f"Data pipeline on 2 cores (load average {res.get('load_avg_1min', float('nan')):.1f})")
        table.add_column("what")
        table.add_column("value", justify="right")
        table.add_row(f"BM25 index build, {res['bm25_passages']:,} passages", f"{res['bm25_build_s']:.1f} s")
        table.add_row(f"BM25 top-{res['bm25_k']} retrieval", f"{res['bm25_qps']:.0f} queries/s")
        for key, value in res.items():
            if key.startswith("dense_") and isinstance(value, float) and ("per_s" in key or key.endswith("qps")):
                table.add_row(key.replace("_", " "), f"{value:.1f}")
        console.print(table)
        results["data"] = res
        torch.set_num_threads(1)

    if args.only in (None, "soak"):
        from . import bench_soak

        res = bench_soak.run(quick=args.quick)
        rew, tr = res["rewards"], res["training"]
        table = Table(title=f"Memory soak ({'--quick: too short to reach the plateau' if args.quick else 'full'})")
        for col in (
            "what",
            "run",
            "traced MiB start -> end",
            "RSS MiB start -> end",
            "traced MiB / 1,000",
            "peak MiB / 1,000 (2nd -> 4th quarter)",
            "target",
        ):
            table.add_column(col, justify="right")
        bounded = rew["traced_peak_mb_per_1000"] < 1.0
        if not args.quick and not bounded:
            failed.append(f"reward memory grows {rew['traced_peak_mb_per_1000']:.1f} MiB per 1,000 batches")
        table.add_row(
            f"lexical rewards ({', '.join(bench_soak.METRICS)})",
            f"{rew['batches']} batches x {rew['completions_per_batch']}, {rew['fresh_tokens']:,} new tokens",
            f"{rew['traced_mb_start']:.1f} -> {rew['traced_mb_end']:.1f}",
            f"{rew['rss_mb_start']:.0f} -> {rew['rss_mb_end']:.0f}",
            f"{rew['traced_mb_per_1000']:.1f}",
            f"{rew['traced_peak_mb_per_1000']:.1f}",
            "bounded: < 1 " + ("n/a" if args.quick else "ok" if bounded else "MISSED"),
        )
        table.add_row(
            "PSGRPOTrainer steps (tiny policy)",
            f"{tr['steps']} steps",
            f"{tr['traced_mb_start']:.1f} -> {tr['traced_mb_end']:.1f}",
            f"{tr['rss_mb_start']:.0f} -> {tr['rss_mb_end']:.0f}",
            f"{tr['traced_mb_per_1000']:.1f}",
            "",
            "",
        )
        console.print(table)
        console.print(
            "vocabulary entries held at the end: " + ", ".join(f"{k} {v:,}" for k, v in rew["vocab_entries"].items())
        )
        results["soak"] = res

    if args.only in (None, "vllm"):
        from . import bench_vllm

        reason = bench_vllm.skip_reason()
        if reason is not None:
            console.print(f"rollout step with the real vLLM engine: skipped ({reason})")
        else:
            torch.set_num_threads(2)  # the engine and the trainer share the machine's 2 cores
            res = bench_vllm.run(steps=5 if args.quick else 8, rounds=2)
            table = Table(
                title="Rollout step with the real vLLM engine on CPU (server mode, reload sync, tiny untied policy, "
                "24 completions x 32 tokens, 2 cores)"
            )
            for col in (
                "PSGRPOTrainer s/step",
                "trl.GRPOTrainer s/step",
                "ratio",
                "target",
                "sync share",
                "reward share",
            ):
                table.add_column(col, justify="right")
            ok = res["ratio"] <= 1.05
            if not ok:
                failed.append(f"vLLM rollout step ratio {res['ratio']:.3f}")
            table.add_row(
                f"{res['psgrpo_step_s']:.3f}",
                f"{res['trl_step_s']:.3f}",
                f"{res['ratio']:.3f}",
                "<= 1.05 " + ("ok" if ok else "MISSED"),
                f"{res['sync_share']:.1%}",
                f"{res['reward_share']:.1%}",
            )
            console.print(table)
            results["vllm"] = res
            torch.set_num_threads(1)

    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)
    if failed:
        console.print("[red]targets missed:[/red] " + "; ".join(failed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
