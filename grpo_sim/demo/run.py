"""``grpo-sim demo``: PS-GRPO end to end on bundled synthetic RAG data, on CPU, no GPU, no hub.

Pipeline (:func:`run_demo`; :func:`run_seeds` for several seeds)
---------------------------------------------------------------
1. **Data** — :func:`grpo_sim.demo.world.build_demo_dataset`: paraphrase sets of template wordings over a small
   passage corpus, BM25 top-3 passages retrieved per wording (so retrieval varies too), disjoint held-out
   evaluation sets (people and answer names never seen in training). Deterministic for the seed.
2. **Warm start** — :func:`grpo_sim.demo.warmstart.warm_start`: word-level tokenizer, a tiny Qwen2 policy,
   supervised fine-tuning with *noisy supervision on three of the six wordings of every relation*. The policy
   answers clean wordings mostly right and noisy wordings mostly wrong: sensible but inconsistent across the
   wording of paraphrases. Cached by a hash of its settings and data.
3. **Four GRPO arms** from that warm start (:data:`grpo_sim.demo.settings.ARMS`, one recipe each; same data,
   steps, seed and trainer settings, different reward): ``grpo_accuracy_only`` (token F1 against the label, the
   paper's ablation), ``ps_grpo`` (cross-paraphrase consistency + accuracy), ``ps_grpo_consistency_only`` (the
   label-free arm: consistency only) and ``ps_grpo_relaxed`` (``ps_grpo`` with the relaxed consistency reward,
   kappa = 2 of the 3 other paraphrases, s = 1). Two arms train at a time, each in its own process with one
   torch thread (:func:`grpo_sim.demo.arms.run_jobs`). ``reward_labels="warmstart"`` makes the accuracy reward
   score against the warm start's own noisy labels instead of the gold answers.
4. **Evaluation** of the warm start and every arm on the held-out sets with greedy decoding, at the retriever,
   generator and end-to-end levels (:mod:`grpo_sim.demo.evaluation`), with collapse indicators and paired
   bootstrap comparisons. Written to ``summary.json`` (last, after ``answers.json`` and the arms), printed as
   a table and plotted to ``summary.png``.

Nothing is hard-coded about the outcome: the numbers are whatever this run measures.

Design notes (measured on the 2-core build machine while choosing the settings, on training-set metrics)
--------------------------------------------------------------------------------------------------------
* ``advantage: set``: per-paraphrase groups of g = 4 rollouts of this confident policy had zero reward spread
  68-75% of the time in the first steps (up to ~90% later), so the paper's per-paraphrase normalisation learned
  little; normalising over a set's n*g completions left <10% of groups without signal.
* Learning rate 1e-3 (3e-4 moved consistency a few points in 300 steps; 2e-3 lost accuracy).
* ``num_iterations=2`` (reusing each generation batch) was worse at equal steps.
* ``collapse_warn_entropy_ratio: 0`` switches off only the entropy warning: one-word answers legitimately become
  near-deterministic. The collapse penalty stays on, and collapse is measured on the held-out sets.
"""

from __future__ import annotations

import functools
import json
import os
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from ..io import atomic_write_text
from .arms import Job, JobPool, job_result, quiet_torch_process, train_arm, train_stats
from .evaluation import evaluate_policy, paired_comparisons
from .report import json_default, plot_summary, policies, print_table, write_seeds_report
from .settings import ARMS, REWARD_LABELS, demo_settings

__all__ = ["cpu_model", "demo_data", "demo_warmstart", "run_demo", "run_seeds", "training_labels"]


def cpu_model() -> str | None:
    """The CPU's model name (``/proc/cpuinfo``), for reports: exact numbers differ across CPU types."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or None


# ------------------------------------------------------------------------------------------
# Data and warm start (also the recipe sources 'demo' and 'grpo-sim:demo-warmstart')
# ------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=4)
def _built(num_train_sets: int, num_eval_sets: int, num_paraphrases: int, passages_per_prompt: int, seed: int):
    from .world import build_demo_dataset

    return build_demo_dataset(
        num_train_sets,
        num_eval_sets,
        num_paraphrases=num_paraphrases,
        passages_per_prompt=passages_per_prompt,
        seed=seed,
    )


def _built_demo(settings: Any):
    """(train_sets, eval_sets, corpus) for ``data.demo`` settings (an object or a mapping with its fields)."""
    get = settings.get if isinstance(settings, Mapping) else functools.partial(getattr, settings)
    return _built(
        int(get("num_train_sets")),
        int(get("num_eval_sets")),
        int(get("num_paraphrases")),
        int(get("passages_per_prompt")),
        int(get("seed")),
    )


def demo_data(settings: Any):
    """(train_sets, eval_sets) of the bundled synthetic data, for recipes with ``data.train: demo``."""
    train, eval_, _ = _built_demo(settings)
    return train, eval_


def demo_warmstart(
    settings: Any,
    cache_dir: str | os.PathLike[str] | None = None,
    warmstart: Mapping[str, Any] | None = None,
    progress: bool = True,
) -> Path:
    """The demo's warm-started policy for ``data.demo`` settings (built once, then cached), for
    ``grpo-sim:demo-warmstart``. ``warmstart``: :class:`~grpo_sim.demo.warmstart.WarmStartConfig` fields (default:
    the demo's, with the data's seed)."""
    from .settings import DEMO_WARMSTART_SETTINGS
    from .warmstart import WarmStartConfig, warm_start
    from .world import demo_text_corpus

    train, eval_, corpus = _built_demo(settings)
    seed = settings["seed"] if isinstance(settings, Mapping) else settings.seed
    cache = Path(cache_dir) if cache_dir is not None else Path("runs") / ".cache"
    config = WarmStartConfig(**(warmstart if warmstart is not None else {**DEMO_WARMSTART_SETTINGS, "seed": seed}))
    log = None
    if progress:

        def log(message: str) -> None:
            print(f"[warm start seed {seed}] {message}", flush=True)

    return warm_start(train, corpus, demo_text_corpus(train + eval_, corpus), cache, config, progress=progress, log=log)


def cached_demo_warmstart(
    settings: Any, cache_dir: str | os.PathLike[str], warmstart: Mapping[str, Any]
) -> Path | None:
    """The finished warm start :func:`demo_warmstart` would return without training, or None."""
    from .warmstart import WarmStartConfig, policy_dir
    from .world import demo_text_corpus

    train, eval_, corpus = _built_demo(settings)
    path = policy_dir(train, corpus, demo_text_corpus(train + eval_, corpus), cache_dir, WarmStartConfig(**warmstart))
    return path if (path / "warmstart.json").is_file() else None


def training_labels(train_sets: Sequence[Any], config: Any) -> dict[tuple[str, int], str]:
    """The warm start's (noisy) training label of every training paraphrase, ``(set_id, paraphrase_id) -> answer``."""
    from .warmstart import sft_examples

    return {(e["set_id"], e["paraphrase_id"]): e["target"] for e in sft_examples(train_sets, config)}


# ------------------------------------------------------------------------------------------
# The demo
# ------------------------------------------------------------------------------------------


def run_demo(
    output_dir: str | os.PathLike[str],
    quick: bool = False,
    seed: int = 0,
    progress: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
    reward_labels: str = "gold",
    num_threads: int | None = 1,
    workers: int = 2,
    arms: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Run the whole demo; returns the summary written to ``output_dir/summary.json``.

    Args:
        output_dir: receives ``summary.json``, ``summary.png``, ``answers.json`` (every held-out answer of every
            policy) and one directory per arm (model, tokenizer, ``train_log.json``).
        quick: tiny data and budgets (a smoke test of the pipeline; the numbers mean nothing).
        seed: seeds the data, the warm start and every arm.
        cache_dir: keeps the warm-started policy between runs (default ``output_dir/../.cache``).
        reward_labels: what GRPO's accuracy reward scores against: ``"gold"`` (the training sets' gold answers)
            or ``"warmstart"`` (the same noisy labels the warm start was trained on).
        num_threads: torch CPU threads of each process (``None`` leaves them alone). One thread: the tiny model
            gains ~20% from a second thread on an idle 2-core machine but runs 2-3x slower with it when other
            jobs share the cores, and two arms at a time use both cores.
        workers: arms trained at a time, each in its own process (1: one after the other in this process).
        arms: the arms to train (default all of :data:`~grpo_sim.demo.settings.ARMS`).
    """
    out = Path(output_dir)
    return _run_many({seed: out}, quick, progress, cache_dir, reward_labels, num_threads, workers, arms)[seed]


def run_seeds(
    output_dir: str | os.PathLike[str],
    seeds: Sequence[int],
    quick: bool = False,
    progress: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
    reward_labels: str = "gold",
    num_threads: int | None = 1,
    workers: int = 2,
    arms: Sequence[str] | None = None,
) -> dict[str, Any]:
    """:func:`run_demo` for each seed into ``output_dir/seed-<k>``, then the combined table of the seeds,
    ``output_dir/seeds.json`` and ``seeds.md`` (paired-bootstrap intervals per seed, spread across seeds).
    Warm starts and arms of all seeds share the ``workers`` processes. Returns the combined view."""
    seeds = list(dict.fromkeys(int(s) for s in seeds))
    if not seeds:
        raise ValueError("--seeds needs at least one seed, e.g. --seeds 0,1,2")
    out = Path(output_dir)
    cache = Path(cache_dir) if cache_dir is not None else out.resolve().parent / ".cache"
    (out / "seeds.md").unlink(missing_ok=True)
    summaries = _run_many(
        {s: out / f"seed-{s}" for s in seeds}, quick, progress, cache, reward_labels, num_threads, workers, arms
    )
    combined = write_seeds_report(out, summaries, cpu_model())
    if progress:
        print((out / "seeds.md").read_text(encoding="utf-8"), flush=True)
    return combined


def _run_many(
    dirs: Mapping[int, Path],
    quick: bool,
    progress: bool,
    cache_dir,
    reward_labels: str,
    num_threads: int | None,
    workers: int,
    arms: Sequence[str] | None,
) -> dict[int, dict[str, Any]]:
    if reward_labels not in REWARD_LABELS:
        raise ValueError(f"reward_labels must be one of {REWARD_LABELS}, got {reward_labels!r}")
    arms = list(ARMS) if arms is None else list(arms)
    unknown = [a for a in arms if a not in ARMS]
    if unknown:
        raise ValueError(f"unknown demo arm(s) {unknown}; the arms are {sorted(ARMS)}")
    import torch
    from transformers.utils import logging as hf_logging

    previous_threads = torch.get_num_threads()
    bars = hf_logging.is_progress_bar_enabled()
    import warnings

    try:
        with warnings.catch_warnings():
            quiet_torch_process(num_threads)
            return _run(dirs, quick, progress, cache_dir, reward_labels, num_threads, workers, arms)
    finally:
        torch.set_num_threads(previous_threads)
        if bars:
            hf_logging.enable_progress_bar()


def _run(
    dirs: Mapping[int, Path],
    quick: bool,
    progress: bool,
    cache_dir,
    reward_labels: str,
    num_threads: int | None,
    workers: int,
    arms: list[str],
) -> dict[int, dict[str, Any]]:
    from concurrent.futures import FIRST_COMPLETED, wait

    from .warmstart import WarmStartConfig

    log: Callable[[str], None] = (lambda m: print(m, flush=True)) if progress else (lambda _m: None)
    t_all = time.perf_counter()
    seeds = list(dirs)
    first_out = next(iter(dirs.values()))
    cache = Path(cache_dir) if cache_dir is not None else first_out.resolve().parent / ".cache"
    settings = {s: demo_settings(quick, s) for s in seeds}
    timings: dict[int, dict[str, Any]] = {s: {} for s in seeds}
    for s, out in dirs.items():
        out.mkdir(parents=True, exist_ok=True)
        (out / "summary.json").unlink(missing_ok=True)  # a failed run leaves no summary of an earlier one

    # 1. data
    data = {}
    for s in seeds:
        t0 = time.perf_counter()
        d = settings[s]["data"]
        data[s] = _built_demo(d)
        timings[s]["data_s"] = time.perf_counter() - t0
        log(
            f"seed {s} data: {len(data[s][0])} train / {len(data[s][1])} held-out sets x {d['num_paraphrases']} "
            f"paraphrases, {len(data[s][2])} passages ({timings[s]['data_s']:.1f}s)"
        )

    # 2. warm starts (cached) and 3. arms share `workers` processes: a seed's arms start once its warm start is there
    # (identical settings and budget, different reward), and its summary is written as soon as they are done
    ws_configs = {s: WarmStartConfig(**settings[s]["warmstart"]) for s in seeds}
    before = {p.name for p in cache.glob("warmstart-*")} if cache.is_dir() else set()
    log(
        f"GRPO arms {', '.join(arms)} ({'quick' if quick else 'recipe'} budget, accuracy against {reward_labels} "
        f"labels), {workers} job(s) at a time, seed(s) {', '.join(map(str, seeds))}"
    )
    summaries: dict[int, dict[str, Any]] = {}
    # Jobs wait in `ready` and start `workers` at a time in seed order (a seed's warm start, then its arms, then the
    # next seed's), so that the first seeds' summaries come first; all seeds use both workers throughout.
    ready: list[tuple[tuple[int, int], Job, tuple[int, str | None]]] = []
    started = {s: time.perf_counter() for s in seeds}
    policy_dirs: dict[int, Path] = {}

    def warm_started(s: int, path: Path) -> None:  # the seed's arms become ready
        policy_dirs[s] = path
        timings[s]["warm_start_s"] = time.perf_counter() - started[s]
        timings[s]["warm_start_cached"] = path.name in before
        started[s] = time.perf_counter()
        labels = training_labels(data[s][0], ws_configs[s]) if reward_labels == "warmstart" else None
        for a in arms:
            label = a if len(seeds) == 1 else f"{a} seed {s}"
            ready.append(
                (
                    (s, 1),
                    Job(
                        f"arm {label}",
                        train_arm,
                        {
                            "arm": a,
                            "policy_dir": str(path),
                            "output_dir": str(dirs[s] / a),
                            "settings": settings[s],
                            "progress": progress,
                            "labels": labels,
                            "label": label,
                        },
                    ),
                    (s, a),
                )
            )

    for s in seeds:  # a cached warm start needs no job (it would hold a worker that an arm could use)
        cached = cached_demo_warmstart(settings[s]["data"], cache, settings[s]["warmstart"])
        if cached is not None:
            log(f"warm start seed {s}: cached policy {cached}")
            warm_started(s, cached)
        else:
            ready.append(
                (
                    (s, 0),
                    Job(
                        f"warm start (seed {s})",
                        demo_warmstart,
                        {
                            "settings": settings[s]["data"],
                            "cache_dir": cache,
                            "warmstart": settings[s]["warmstart"],
                            "progress": progress,
                        },
                    ),
                    (s, None),
                )
            )
    with JobPool(workers, num_threads) as pool:
        owner: dict[Any, tuple[int, str | None]] = {}
        arms_left = {s: len(arms) for s in seeds}
        while ready or owner:
            ready.sort(key=lambda item: item[0])
            while ready and len(owner) < max(1, workers):
                # an arm waits while a lower seed's warm start runs (that seed's arms go first once it is there)
                warming = [seed for seed, arm in owner.values() if arm is None]
                eligible = [
                    k
                    for k, (_, _, (seed, arm)) in enumerate(ready)
                    if arm is None or not any(w < seed for w in warming)
                ]
                if not eligible:
                    break
                _, job, key = ready.pop(eligible[0])
                owner[pool.submit(job)] = key
            done, _ = wait(list(owner), return_when=FIRST_COMPLETED)
            for future in done:
                s, arm = owner.pop(future)
                result = job_result(future)
                if arm is None:
                    warm_started(s, Path(result))
                    continue
                arms_left[s] -= 1
                if arms_left[s]:
                    continue
                timings[s]["arms_s"] = time.perf_counter() - started[s]
                log(f"seed {s}: arms trained in {timings[s]['arms_s']:.0f}s")
                summaries[s] = _evaluate_seed(
                    dirs[s],
                    s,
                    data[s],
                    settings[s],
                    timings[s],
                    policy_dirs[s],
                    ws_configs[s].noisy_map(),
                    arms,
                    reward_labels,
                    quick,
                    num_threads,
                    workers,
                    log,
                    t_all,
                )
                if progress:
                    _print_summary(summaries[s], log)
    return {s: summaries[s] for s in seeds}


def _evaluate_seed(
    out: Path,
    s: int,
    data,
    settings,
    timings,
    policy_dir: Path,
    noisy,
    arms,
    reward_labels,
    quick,
    num_threads,
    workers,
    log,
    t_all,
) -> dict[str, Any]:
    """Evaluate the warm start and the arms of one seed and write its summary."""
    from ..models import load_policy

    _, eval_sets, _ = data
    results: dict[str, Any] = {}
    answers: dict[str, Any] = {}
    per_set: dict[str, Any] = {}
    for name, path in [("base", policy_dir)] + [(a, out / a) for a in arms]:
        t = time.perf_counter()
        model, tok = load_policy(str(path))
        row = evaluate_policy(model, tok, eval_sets, noisy)
        answers[name] = row.pop("_answers")
        per_set[name] = row.pop("_per_set")
        results[name] = row
        timings[f"eval_{name}_s"] = time.perf_counter() - t
        log(
            f"seed {s} eval {name}: EM {row['accuracy_em']:.3f}  consistency e2e {row['consistency_e2e_exact']:.3f}"
            f" generator {row['consistency_generator_exact']:.3f}  EM clean/noisy wordings "
            f"{row['accuracy_em_clean_wordings']:.3f}/{row['accuracy_em_noisy_wordings']:.3f}"
        )
    timings["total_s"] = time.perf_counter() - t_all
    return _write_summary(
        out,
        s,
        results,
        answers,
        per_set,
        eval_sets,
        settings,
        timings,
        policy_dir,
        noisy,
        arms,
        reward_labels,
        quick,
        num_threads,
        workers,
    )


def _write_summary(
    out: Path,
    seed: int,
    results,
    answers,
    per_set,
    eval_sets,
    settings,
    timings,
    policy_dir,
    noisy,
    arms,
    reward_labels,
    quick,
    num_threads,
    workers,
) -> dict[str, Any]:
    ws_meta = json.loads((Path(policy_dir) / "warmstart.json").read_text(encoding="utf-8"))
    timings = {k: (round(v, 2) if isinstance(v, float) else v) for k, v in timings.items()}
    summary: dict[str, Any] = {name: results[name] for name in ["base", *arms]}
    summary["timings"] = timings
    summary["settings"] = {
        **settings,
        "arm_recipes": {arm: ARMS[arm] for arm in arms},
        "reward_labels": reward_labels,
        "noisy_templates": {rel: sorted(t) for rel, t in noisy.items()},
        "quick": quick,
        "torch_threads": num_threads,
        "workers": workers,
        "cpu": cpu_model(),
        "warm_start_dir": str(policy_dir),
        "warm_start": {
            k: ws_meta[k]
            for k in ("num_examples", "num_noisy_wording", "num_corrupted_labels", "num_parameters", "train_seconds")
        },
    }
    summary["comparisons"] = paired_comparisons(per_set, seed=seed)
    summary["train_stats"] = {arm: train_stats(out / arm) for arm in arms}
    # answers first, summary last: a summary.json on disk always comes with the answers and arms it summarises
    atomic_write_text(
        out / "answers.json",
        json.dumps(
            {name: {s.set_id: a for s, a in zip(eval_sets, groups)} for name, groups in answers.items()}, indent=1
        ),
    )
    plot_summary(summary, out / "summary.png")
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2, default=json_default))
    return summary


def _print_summary(summary: Mapping[str, Any], log: Callable[[str], None]) -> None:
    print_table(summary)
    for name, entry in summary["comparisons"].items():
        log(
            f"{name}: "
            + "; ".join(f"{k} {v['diff']:+.3f} [{v['ci'][0]:+.3f}, {v['ci'][1]:+.3f}]" for k, v in entry.items())
        )
    seconds = {k: summary["train_stats"][k].get("reward_seconds") for k in policies(summary) if k != "base"}
    log("reward time (s): " + ", ".join(f"{k}={v}" for k, v in seconds.items()))
    log("timings (s): " + ", ".join(f"{k}={v}" for k, v in summary["timings"].items()))
