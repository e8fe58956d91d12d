"""The long-form CPU demo (``grpo-sim demo --task longform``): consistency and accuracy come apart.

In the short-answer demo every question has one one-word answer, so making a wording right also
makes it agree with the others, and GRPO with an accuracy reward alone gains most of what PS-GRPO
gains. The paper's long-form setting (ELI5) differs: an answer can be right and still be worded
differently from the answer to a paraphrase. This demo builds exactly that, at toy scale:

1. **Data** (:mod:`grpo_sim.demo.longform_world`): the short demo's world with sentence answers that
   have three acceptable phrasings each ("they were born in Oslandia." / "their birthplace is
   Oslandia." / "Oslandia is where they were born."); held-out sets ask about unseen people and
   names. Deterministic for the seed.
2. **Warm start**: SFT with gold entities whose phrasing depends on the question wording (the
   wording's preferred phrasing with probability ``phrasing_fidelity``, else another): the policy
   is mostly right but words its answers to the paraphrases of a set differently. Cached.
3. **Two GRPO arms** from the warm start, same data, steps, seed and settings
   (:data:`LONGFORM_GRPO_SETTINGS`), different reward only (:data:`ARM_REWARD_TERMS`):
   ``grpo_accuracy_only`` = accuracy (best token F1 over the gold phrasings, which pays every
   correct phrasing the same) and ``ps_grpo`` = the same accuracy + cross-paraphrase consistency
   with BLEU-2 (the paper's choice on ELI5). The arms run in two processes (one torch thread each).
4. **Evaluation** of the warm start and both arms on the held-out sets, greedy decoding
   (:mod:`grpo_sim.eval`): accuracy as the best token F1 / ROUGE-L / exact match over the gold
   phrasings and ``accuracy_entity`` (the answer names the gold entity); end-to-end consistency
   with BLEU-2, ROUGE-L, exact match and embedding cosine (packaged MiniLM); ``phrasing_agreement``
   (share of paraphrase pairs of a set using the same phrasing, whatever name they give); collapse
   indicators (``frac_empty``, ``frac_sets_identical_wrong``). Paired bootstrap intervals
   (:func:`grpo_sim.eval.metrics.paired_difference`) for each arm minus the warm start and
   PS-GRPO minus accuracy-only; ``target`` records the issue's criterion (PS-GRPO minus
   accuracy-only: BLEU-2 consistency interval above 0, token-F1 accuracy interval's lower end
   >= -0.02).

Writes ``summary.json``, ``answers.json``, ``summary.png`` and one directory per arm under the
output directory, and prints a table. Nothing is tuned on the held-out sets.

Modules: :mod:`~grpo_sim.demo.longform_world` (world and warm start), :mod:`~grpo_sim.demo.longform_settings`
(settings and arms), :mod:`~grpo_sim.demo.longform_arms` (training the arms), :mod:`~grpo_sim.demo.longform_eval`
(evaluation, comparisons, target, table and plot) and this one (the run and several seeds).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from ..io import atomic_write_text
from .longform_arms import train_arms, train_longform_arm
from .longform_eval import (
    COLUMNS,
    ROW_LABELS,
    answer_figures,
    evaluate_policy,
    paired_comparisons,
    plot_summary,
    print_table,
    target_check,
)
from .longform_settings import (
    ACCURACY_NOT_LOWER_MARGIN,
    ARM_REWARD_TERMS,
    ARMS,
    COMPARED_KEYS,
    COMPARISONS,
    LONGFORM_DATA_SETTINGS,
    LONGFORM_GRPO_SETTINGS,
    LONGFORM_WARMSTART_SETTINGS,
    POLICIES,
    QUICK_OVERRIDES,
    longform_settings,
)
from .longform_world import LongformWarmStartConfig, build_longform_dataset, longform_text_corpus, longform_warm_start
from .report import json_default

# ------------------------------------------------------------------------------------------
# The demo
# ------------------------------------------------------------------------------------------


def run_longform_demo(
    output_dir: str | os.PathLike[str],
    quick: bool = False,
    seed: int = 0,
    progress: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
    num_threads: int | None = 1,
    parallel: bool | None = None,
) -> dict[str, Any]:
    """Run the long-form demo; returns the summary written to ``output_dir/summary.json``.

    Args:
        output_dir: receives ``summary.json``, ``summary.png``, ``answers.json`` (every held-out
            answer of every policy) and one directory per arm (model, tokenizer, ``train_log.json``).
        quick: tiny data and budgets (a smoke test; the numbers mean nothing).
        seed: seeds the data, the warm start and both arms.
        cache_dir: keeps the warm start between runs (default ``output_dir/../.cache``).
        num_threads: torch CPU threads per process (restored afterwards; ``None`` leaves them alone).
        parallel: train the two arms in two processes at once (default: yes, except with ``quick``).
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch
    from transformers.utils import logging as hf_logging

    previous_threads = torch.get_num_threads()
    bars = hf_logging.is_progress_bar_enabled()
    if num_threads:
        torch.set_num_threads(int(num_threads))
    hf_logging.disable_progress_bar()
    try:
        return _run(
            Path(output_dir),
            quick,
            seed,
            progress,
            cache_dir,
            num_threads,
            (not quick) if parallel is None else parallel,
        )
    finally:
        torch.set_num_threads(previous_threads)
        if bars:
            hf_logging.enable_progress_bar()


def _run(
    out: Path, quick: bool, seed: int, progress: bool, cache_dir, num_threads: int | None, parallel: bool
) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    cache = Path(cache_dir) if cache_dir is not None else out.resolve().parent / ".cache"
    log: Callable[[str], None] = print if progress else (lambda _m: None)
    settings = longform_settings(quick, seed)
    timings: dict[str, Any] = {}
    t_all = time.perf_counter()

    t0 = time.perf_counter()
    d = settings["data"]
    train_sets, eval_sets, corpus = build_longform_dataset(
        d["num_train_sets"],
        d["num_eval_sets"],
        num_paraphrases=d["num_paraphrases"],
        passages_per_prompt=d["passages_per_prompt"],
        seed=seed,
    )
    timings["data_s"] = time.perf_counter() - t0
    log(
        f"long-form data: {len(train_sets)} train / {len(eval_sets)} held-out sets x {d['num_paraphrases']} "
        f"paraphrases, {len(corpus)} passages"
    )

    t0 = time.perf_counter()
    before = {p.name for p in cache.glob("longform-warmstart-*")} if cache.is_dir() else set()
    ws_config = LongformWarmStartConfig(**settings["warmstart"])
    policy_dir = longform_warm_start(
        train_sets, corpus, longform_text_corpus(train_sets + eval_sets, corpus), cache, ws_config, log=log
    )
    timings["warm_start_s"] = time.perf_counter() - t0
    timings["warm_start_cached"] = policy_dir.name in before
    ws_meta = json.loads((policy_dir / "longform-warmstart.json").read_text(encoding="utf-8"))

    t0 = time.perf_counter()
    log(
        f"GRPO arms {', '.join(ARMS)}: {settings['grpo']['max_steps']} steps each"
        f"{' in two processes' if parallel else ''}"
    )
    trained = train_arms(policy_dir, train_sets, out, settings["grpo"], progress, num_threads, parallel)
    timings["train_arms_s"] = time.perf_counter() - t0
    for arm, info in trained.items():
        timings[f"train_{arm}_s"] = info["train_seconds"]

    results: dict[str, Any] = {}
    per_set: dict[str, Any] = {}
    answers: dict[str, Any] = {}
    for name, path in (("base", policy_dir), *((arm, out / arm) for arm in ARMS)):
        t0 = time.perf_counter()
        results[name], per_set[name], answers[name] = evaluate_policy(path, eval_sets)
        timings[f"eval_{name}_s"] = time.perf_counter() - t0
        r = results[name]
        log(
            f"eval {name}: accuracy F1 {r['accuracy_f1']:.3f} entity {r['accuracy_entity']:.3f}  consistency "
            f"BLEU-2 {r['consistency_e2e_bleu2']:.3f}  same phrasing {r['phrasing_agreement']:.3f}"
        )

    timings["total_s"] = time.perf_counter() - t_all
    comparisons = paired_comparisons(per_set, seed=seed)
    summary: dict[str, Any] = {name: results[name] for name in POLICIES}
    summary["comparisons"] = comparisons
    summary["target"] = target_check(comparisons)
    summary["timings"] = {k: (round(v, 2) if isinstance(v, float) else v) for k, v in timings.items()}
    summary["train_stats"] = {arm: info["stats"] for arm, info in trained.items()}
    summary["settings"] = {
        **settings,
        "task": "longform",
        "arm_reward_terms": ARM_REWARD_TERMS,
        "quick": quick,
        "parallel_arms": parallel,
        "torch_threads_per_process": num_threads,
        "warm_start_dir": str(policy_dir),
        "warm_start": {
            k: ws_meta[k] for k in ("num_examples", "num_not_preferred_phrasing", "num_parameters", "train_seconds")
        },
    }
    # answers first, summary last: a summary.json on disk always comes with the answers it summarises
    atomic_write_text(
        out / "answers.json",
        json.dumps(
            {name: {s.set_id: a for s, a in zip(eval_sets, groups)} for name, groups in answers.items()}, indent=1
        ),
    )
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2, default=json_default))
    plot_summary(summary, out / "summary.png")
    if progress:
        print_table(summary)
        for name, entry in comparisons.items():
            log(
                f"{name}: "
                + "; ".join(
                    f"{k} {v['diff']:+.3f} [{v['ci'][0]:+.3f}, {v['ci'][1]:+.3f}]"
                    for k, v in entry.items()
                    if v["ci"] is not None
                )
            )
        log(
            f"target (PS-GRPO vs accuracy-only, BLEU-2 consistency up, token-F1 not lower): "
            f"{'met' if summary['target']['met'] else 'NOT met'}"
        )
        log("timings (s): " + ", ".join(f"{k}={v}" for k, v in summary["timings"].items()))
    return summary


def run_longform_seeds(
    output_dir: str | os.PathLike[str],
    seeds: Sequence[int],
    quick: bool = False,
    progress: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
    num_threads: int | None = 1,
) -> dict[str, Any]:
    """:func:`run_longform_demo` for each seed into ``output_dir/seed-<k>`` (one seed after the other; each trains
    its two arms in two processes), then ``output_dir/seeds.json`` and ``seeds.md``: the figures by seed with their
    spread, the paired differences with their intervals by seed, and the issue's target at each seed."""
    from .report import write_seeds_report
    from .run import cpu_model

    seeds = list(dict.fromkeys(int(s) for s in seeds))
    if not seeds:
        raise ValueError("--seeds needs at least one seed, e.g. --seeds 0,1,2")
    out = Path(output_dir)
    cache = Path(cache_dir) if cache_dir is not None else out.resolve().parent / ".cache"
    (out / "seeds.md").unlink(missing_ok=True)
    summaries = {
        s: run_longform_demo(
            out / f"seed-{s}", quick=quick, seed=s, progress=progress, cache_dir=cache, num_threads=num_threads
        )
        for s in seeds
    }
    notes = [
        f"Target (PS-GRPO minus accuracy-only: BLEU-2 consistency interval above 0, token-F1 interval's lower "
        f"end >= {ACCURACY_NOT_LOWER_MARGIN}): "
        + ", ".join(f"seed {s} {'met' if summaries[s]['target']['met'] else 'not met'}" for s in seeds)
    ]
    combined = write_seeds_report(
        out,
        summaries,
        cpu_model(),
        figures=COLUMNS,
        labels=ROW_LABELS,
        title="PS-GRPO long-form CPU demo",
        notes=notes,
        extra={"target": {s: summaries[s]["target"] for s in seeds}},
    )
    if progress:
        print((out / "seeds.md").read_text(encoding="utf-8"), flush=True)
    return combined


__all__ = [
    "ARMS",
    "ARM_REWARD_TERMS",
    "COLUMNS",
    "COMPARED_KEYS",
    "COMPARISONS",
    "POLICIES",
    "ROW_LABELS",
    "LONGFORM_DATA_SETTINGS",
    "LONGFORM_GRPO_SETTINGS",
    "LONGFORM_WARMSTART_SETTINGS",
    "QUICK_OVERRIDES",
    "ACCURACY_NOT_LOWER_MARGIN",
    "answer_figures",
    "plot_summary",
    "print_table",
    "train_arms",
    "evaluate_policy",
    "longform_settings",
    "paired_comparisons",
    "run_longform_demo",
    "run_longform_seeds",
    "target_check",
    "train_longform_arm",
]
