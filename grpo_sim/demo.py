"""The embedded CPU demo: PS-GRPO end to end on bundled synthetic RAG data, no GPU, no hub.

Pipeline (:func:`run_demo`)
---------------------------
1. **Data** — :func:`grpo_sim.data.synthetic.build_demo_dataset`: paraphrase sets of template
   wordings over a small passage corpus, BM25 top-3 passages retrieved per wording (so retrieval
   varies too), disjoint held-out evaluation sets (people and answer names never seen in
   training). Deterministic for the seed.
2. **Warm start** — :func:`grpo_sim.warmstart.warm_start`: word-level tokenizer built on the
   bundled text, a tiny Qwen2 policy, supervised fine-tuning with *noisy supervision on two
   wordings per relation* (their labels are often the answer of a distractor passage). The policy
   answers sensibly but inconsistently across the wording of paraphrases. Cached by a hash of its
   settings and data.
3. **Two GRPO arms** from that warm start, same data, steps, seed and recipe
   (:data:`DEMO_GRPO_SETTINGS`), different reward only (:data:`ARM_REWARDS`):
   ``ps_grpo`` = cross-paraphrase consistency + accuracy against gold, and
   ``grpo_accuracy_only`` = accuracy only (the paper's ablation).
4. **Evaluation** of the warm start and both arms on the held-out sets with greedy decoding:
   accuracy (EM, F1), end-to-end consistency (BLEU-2, exact match, embedding cosine), and
   collapse indicators (``frac_empty``, ``frac_sets_identical_wrong``). Written to
   ``summary.json`` (keys ``base``, ``grpo_accuracy_only``, ``ps_grpo``, ``timings``,
   ``settings``), printed as a table and plotted to ``summary.png``.

Nothing is hard-coded about the outcome: the numbers are whatever this run measures.
"""

from __future__ import annotations

import copy
import json
import os
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from .warmstart import WarmStartConfig, warm_start

#: Data of the full demo (``quick=True`` shrinks it).
DEMO_DATA_SETTINGS: dict[str, Any] = {
    "num_train_sets": 600,
    "num_eval_sets": 100,
    "num_paraphrases": 4,
    "passages_per_prompt": 3,
}

#: Warm-start settings of the full demo (see :class:`grpo_sim.warmstart.WarmStartConfig`).
DEMO_WARMSTART_SETTINGS: dict[str, Any] = {
    "hidden_size": 64,
    "num_layers": 2,
    "num_heads": 4,
    "freeze_embeddings": True,
    "steps": 1500,
    "batch_size": 32,
    "learning_rate": 3e-3,
    "noise_rate": 0.75,
}

#: The GRPO recipe shared by BOTH arms. Everything except ``sets_per_step`` and
#: ``freeze_embeddings`` is a :class:`grpo_sim.trainer.PSGRPOConfig` field; the reward weights
#: come from :data:`ARM_REWARDS`. ``sets_per_step`` paraphrase sets (each n paraphrases x g
#: rollouts) make one generation batch = one optimizer step.
DEMO_GRPO_SETTINGS: dict[str, Any] = {
    "max_steps": 300,
    "sets_per_step": 4,
    "num_generations": 4,
    "temperature": 1.0,
    "max_completion_length": 4,
    "learning_rate": 3e-4,
    "lr_scheduler_type": "constant",
    "warmup_steps": 0,
    "beta": 0.0,
    "loss_type": "dapo",
    "scale_rewards": "group",
    "advantage_mode": "paraphrase",
    "similarity": "token_f1",
    "accuracy_metric": "token_f1",
    "relaxed_kappa": None,
    "collapse_penalty": True,
    "freeze_embeddings": True,
    "seed": 0,
}

#: The only difference between the two arms.
ARM_REWARDS: dict[str, dict[str, float]] = {
    "ps_grpo": {"consistency_weight": 1.0, "accuracy_weight": 1.0},
    "accuracy_only": {"consistency_weight": 0.0, "accuracy_weight": 1.0},
}

#: Arm names in ``summary.json`` (the issue's keys) for the ``reward`` argument of :func:`train_arm`.
ARM_KEYS = {"accuracy_only": "grpo_accuracy_only", "ps_grpo": "ps_grpo"}

#: Settings that replace the above when ``quick=True`` (smoke test: seconds, not minutes).
QUICK_OVERRIDES: dict[str, dict[str, Any]] = {
    "data": {"num_train_sets": 16, "num_eval_sets": 6},
    "warmstart": {"steps": 30, "batch_size": 16, "warmup_steps": 5},
    "grpo": {"max_steps": 2, "sets_per_step": 2},
}

SUMMARY_FIELDS = (
    "accuracy_em",
    "accuracy_f1",
    "consistency_e2e_bleu2",
    "consistency_e2e_exact",
    "consistency_e2e_embedding",
    "frac_empty",
    "frac_sets_identical_wrong",
    "num_sets",
)

_DEMO_ONLY_KEYS = ("sets_per_step", "freeze_embeddings")


# ------------------------------------------------------------------------------------------
# GRPO arms
# ------------------------------------------------------------------------------------------


def grpo_config_kwargs(settings: Mapping[str, Any], num_paraphrases: int, reward: str, output_dir: str,
                       max_steps: int | None = None, progress: bool = False) -> dict[str, Any]:
    """:class:`~grpo_sim.trainer.PSGRPOConfig` keyword arguments of one arm (CPU, no saving, no reporting)."""
    if reward not in ARM_REWARDS:
        raise ValueError(f"reward must be one of {sorted(ARM_REWARDS)}, got {reward!r}")
    s = dict(settings)
    sets_per_step = int(s.pop("sets_per_step"))
    for key in _DEMO_ONLY_KEYS:
        s.pop(key, None)
    if max_steps is not None:
        s["max_steps"] = int(max_steps)
    batch = sets_per_step * num_paraphrases * int(s["num_generations"])
    kwargs = dict(
        output_dir=output_dir,
        use_cpu=True,
        bf16=False,
        report_to=[],
        per_device_train_batch_size=batch,
        gradient_accumulation_steps=1,
        save_strategy="no",
        logging_steps=10,
        disable_tqdm=not progress,
        dataloader_num_workers=0,
        gradient_checkpointing=False,  # TRL turns it on by default; pure overhead for a tiny model
    )
    kwargs.update(s)
    kwargs.update(ARM_REWARDS[reward])
    return kwargs


class _ProgressPrinter:
    """Trainer callback printing one compact line per logging step."""

    def __new__(cls, name: str, max_steps: int):
        from transformers import TrainerCallback

        class Printer(TrainerCallback):
            def on_log(self, args, state, control, logs=None, **kwargs):
                logs = logs or {}
                if "reward" not in logs or (state.global_step % 50 and state.global_step != max_steps):
                    return
                parts = [f"  [{name}] step {state.global_step}/{max_steps}"]
                for key, label in (("rewards/accuracy/mean", "acc"), ("rewards/consistency/mean", "cons"),
                                   ("ps_grpo/agreement", "agree"), ("frac_reward_zero_std", "zero-std"),
                                   ("entropy", "entropy")):
                    if key in logs:
                        parts.append(f"{label} {float(logs[key]):.3f}")
                print("  ".join(parts), flush=True)

        return Printer()


def train_arm(
    policy_dir: str | os.PathLike[str],
    train_sets: Sequence[Any],
    output_dir: str | os.PathLike[str],
    reward: str = "ps_grpo",
    settings: Mapping[str, Any] = DEMO_GRPO_SETTINGS,
    max_steps: int | None = None,
    progress: bool = False,
    labels: Mapping[tuple[str, int], str] | None = None,
) -> Path:
    """Run one GRPO arm from the policy in ``policy_dir`` and save it (model + tokenizer) to
    ``output_dir``; the training log goes to ``output_dir/train_log.json``. Returns ``output_dir``.

    ``reward``: ``"ps_grpo"`` (consistency + accuracy) or ``"accuracy_only"``; every other
    setting comes from ``settings`` (identical for both arms). ``labels`` maps
    ``(set_id, paraphrase_id)`` to the answer the accuracy reward scores against (default: the
    set's gold answers); the demo passes the training labels of the warm start.
    """
    import torch
    from datasets import Dataset

    from .data.schema import to_training_rows
    from .models.tiny import load_policy
    from .trainer import PSGRPOConfig, PSGRPOTrainer

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = to_training_rows(train_sets)
    if labels is not None:
        for row in rows:
            row["answers"] = [labels[(row["set_id"], row["paraphrase_id"])]]
    num_paraphrases = len(train_sets[0].paraphrases)
    kwargs = grpo_config_kwargs(settings, num_paraphrases, reward, str(out / "trainer"), max_steps, progress)
    args = PSGRPOConfig(**kwargs)
    model, tokenizer = load_policy(str(policy_dir))
    if settings.get("freeze_embeddings", False):
        # tied input/output embeddings stay as in the warm start (see grpo_sim.warmstart)
        model.get_input_embeddings().weight.requires_grad_(False)
    train_dataset = Dataset.from_list(rows)
    t0 = time.perf_counter()
    trainer = PSGRPOTrainer(model=model, args=args, train_dataset=train_dataset, processing_class=tokenizer)
    from transformers import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # TRL's raw metric dicts; a compact line instead
    if progress:
        trainer.add_callback(_ProgressPrinter(reward, args.max_steps))
    trainer.train()
    seconds = time.perf_counter() - t0
    model = trainer.model
    model.get_input_embeddings().weight.requires_grad_(True)
    model.eval()
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    log = {
        "reward": reward,
        "rewards": ARM_REWARDS[reward],
        "settings": dict(settings),
        "max_steps": args.max_steps,
        "train_seconds": round(seconds, 2),
        "log_history": trainer.state.log_history,
    }
    (out / "train_log.json").write_text(json.dumps(log, indent=2, default=float), encoding="utf-8")
    del trainer
    torch.set_grad_enabled(True)
    return out


# ------------------------------------------------------------------------------------------
# Evaluation
# ------------------------------------------------------------------------------------------


def _collapse_stats(sets: Sequence[Any], answers: Sequence[Sequence[str]]) -> dict[str, float]:
    """``frac_empty`` (answers empty after SQuAD normalisation) and ``frac_sets_identical_wrong``
    (sets whose paraphrases all got the same normalised answer, and that answer is not gold)."""
    from .similarity.text import normalize_answer

    n_answers = n_empty = identical_wrong = 0
    for s, group in zip(sets, answers):
        norm = [normalize_answer(a) for a in group]
        n_answers += len(norm)
        n_empty += sum(a == "" for a in norm)
        gold = {normalize_answer(g) for g in s.answers}
        if len(set(norm)) == 1 and norm[0] not in gold:
            identical_wrong += 1
    return {
        "frac_empty": n_empty / max(1, n_answers),
        "frac_sets_identical_wrong": identical_wrong / max(1, len(sets)),
    }


def _generate(model, tokenizer, sets: Sequence[Any], max_new_tokens: int, batch_size: int) -> list[dict[str, Any]]:
    """Greedy answers, one row per paraphrase (fallback when :mod:`grpo_sim.eval` is missing)."""
    import torch

    from .data.schema import build_rag_prompt

    rows = [(s.set_id, p.paraphrase_id, [{"role": "user", "content": build_rag_prompt(p.question, p.passages)}])
            for s in sets for p in s.paraphrases]
    answers: list[str] = []
    old = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        for i in range(0, len(rows), batch_size):
            enc = tokenizer.apply_chat_template([r[2] for r in rows[i:i + batch_size]], add_generation_prompt=True,
                                                tokenize=True, return_dict=True, padding=True, return_tensors="pt")
            with torch.inference_mode():
                out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                                     pad_token_id=tokenizer.pad_token_id)
            answers += [t.strip() for t in tokenizer.batch_decode(out[:, enc["input_ids"].shape[1]:],
                                                                  skip_special_tokens=True)]
    finally:
        tokenizer.padding_side = old
    return [{"set_id": sid, "paraphrase_id": pid, "answer": a} for (sid, pid, _), a in zip(rows, answers)]


def _own_summary(sets: Sequence[Any], answers: Sequence[Sequence[str]]) -> dict[str, Any]:
    """Accuracy and end-to-end consistency computed directly with :mod:`grpo_sim.similarity`."""
    import numpy as np

    from .similarity import get_similarity

    out: dict[str, Any] = {}
    for key, metric in (("accuracy_em", "exact_match"), ("accuracy_f1", "token_f1")):
        sim = get_similarity(metric)
        per_set = [float(np.mean([sim.matrix([a], list(s.answers)).max() for a in group]))
                   for s, group in zip(sets, answers)]
        out[key] = float(np.mean(per_set))
    for key, metric in (("consistency_e2e_bleu2", "bleu2"), ("consistency_e2e_exact", "exact_match"),
                        ("consistency_e2e_embedding", "embedding")):
        sim = get_similarity(metric)
        per_set = []
        for group in answers:
            m = np.asarray(sim.matrix(list(group)), dtype=np.float64)
            k = len(group)
            per_set.append(float((m.sum() - np.trace(m)) / (k * (k - 1))) if k > 1 else float("nan"))
        out[key] = float(np.nanmean(per_set))
    out["num_sets"] = len(sets)
    return out


def _evaluate(model, tok, sets: Sequence[Any], max_new_tokens: int = 4, batch_size: int = 128) -> dict[str, Any]:
    """Greedy end-to-end evaluation of one policy on paraphrase sets -> flat summary dict.

    Uses :mod:`grpo_sim.eval` (``generate_predictions`` + ``summarize``) when importable, else the
    same numbers computed here (mean over sets of the mean over ordered pairs i != j of
    sim(answer_i, answer_j); accuracy = best over gold answers of exact match / token F1). Always
    adds ``frac_empty`` and ``frac_sets_identical_wrong``.
    """
    try:
        from .eval import generate_predictions, summarize
    except ImportError:  # pragma: no cover - depends on the tree
        generate_predictions = summarize = None
    if generate_predictions is not None:
        preds = generate_predictions(model, tok, sets, level="e2e", template="rag_short_answer",
                                     max_new_tokens=max_new_tokens, batch_size=batch_size, do_sample=False,
                                     progress=False)
    else:
        preds = _generate(model, tok, sets, max_new_tokens, batch_size)
    table: dict[tuple[str, int], str] = {(p["set_id"], p["paraphrase_id"]): p["answer"] for p in preds}
    answers = [[table[(s.set_id, p.paraphrase_id)] for p in s.paraphrases] for s in sets]
    if summarize is not None:
        summary = dict(summarize(sets, preds, metrics=("bleu2", "rouge_l", "exact_match", "embedding")))
        summary["evaluator"] = "grpo_sim.eval"
    else:
        summary = _own_summary(sets, answers)
        summary["evaluator"] = "grpo_sim.demo"
    summary.update(_collapse_stats(sets, answers))
    summary["num_sets"] = len(sets)
    summary["_answers"] = answers
    return summary


# ------------------------------------------------------------------------------------------
# Report: table and plot
# ------------------------------------------------------------------------------------------

_ROW_LABELS = {"base": "warm start (SFT)", "grpo_accuracy_only": "GRPO accuracy-only", "ps_grpo": "PS-GRPO"}
_COLUMNS = (
    ("accuracy_em", "EM"),
    ("accuracy_f1", "F1"),
    ("consistency_e2e_exact", "cons. exact"),
    ("consistency_e2e_bleu2", "cons. BLEU-2"),
    ("consistency_e2e_embedding", "cons. emb."),
    ("frac_empty", "empty"),
    ("frac_sets_identical_wrong", "identical-wrong"),
)


def print_table(summary: Mapping[str, Any]) -> None:
    """A rich table of the three rows of ``summary``."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"PS-GRPO CPU demo — held-out sets (n={summary['base'].get('num_sets')})")
    table.add_column("policy")
    for _, label in _COLUMNS:
        table.add_column(label, justify="right")
    for key in ("base", "grpo_accuracy_only", "ps_grpo"):
        row = summary[key]
        cells = []
        for k, _ in _COLUMNS:
            v = row.get(k)
            cells.append("-" if v is None else f"{v:.3f}")
        table.add_row(_ROW_LABELS[key], *cells)
    Console().print(table)


def plot_summary(summary: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Grouped bar chart of accuracy and consistency for the three policies."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    cols = _COLUMNS[:5]
    keys = ("base", "grpo_accuracy_only", "ps_grpo")
    x = np.arange(len(cols))
    width = 0.26
    fig, ax = plt.subplots(figsize=(8, 4))
    for i, key in enumerate(keys):
        vals = [float(summary[key].get(k) or 0.0) for k, _ in cols]
        bars = ax.bar(x + (i - 1) * width, vals, width, label=_ROW_LABELS[key])
        ax.bar_label(bars, fmt="%.2f", fontsize=7)
    ax.set_xticks(x, [label for _, label in cols])
    ax.set_ylim(0, 1.08)
    ax.set_ylabel("held-out score")
    ax.set_title("PS-GRPO CPU demo: accuracy and end-to-end consistency")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# ------------------------------------------------------------------------------------------
# The demo
# ------------------------------------------------------------------------------------------


def demo_settings(quick: bool = False, seed: int = 0) -> dict[str, dict[str, Any]]:
    """``{"data", "warmstart", "grpo"}`` settings of a run."""
    s = {
        "data": dict(DEMO_DATA_SETTINGS),
        "warmstart": dict(DEMO_WARMSTART_SETTINGS),
        "grpo": copy.deepcopy(DEMO_GRPO_SETTINGS),
    }
    if quick:
        for part, over in QUICK_OVERRIDES.items():
            s[part].update(over)
    s["data"]["seed"] = seed
    s["warmstart"]["seed"] = seed
    s["grpo"]["seed"] = seed
    return s


def run_demo(
    output_dir: str | os.PathLike[str],
    quick: bool = False,
    seed: int = 0,
    progress: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Run the whole demo; returns the summary written to ``output_dir/summary.json``.

    ``cache_dir`` (default ``output_dir/../.cache``) keeps the warm-started policy between runs.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from .data.synthetic import build_demo_dataset, demo_text_corpus
    from .models.tiny import load_policy

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    cache = Path(cache_dir) if cache_dir is not None else out.resolve().parent / ".cache"
    log: Callable[[str], None] = print if progress else (lambda _m: None)
    settings = demo_settings(quick, seed)
    timings: dict[str, Any] = {}
    t_all = time.perf_counter()

    # 1. data
    t0 = time.perf_counter()
    d = settings["data"]
    train_sets, eval_sets, corpus = build_demo_dataset(
        d["num_train_sets"], d["num_eval_sets"], num_paraphrases=d["num_paraphrases"],
        passages_per_prompt=d["passages_per_prompt"], seed=d["seed"],
    )
    timings["data_s"] = time.perf_counter() - t0
    log(f"data: {len(train_sets)} train / {len(eval_sets)} held-out sets x {d['num_paraphrases']} paraphrases, "
        f"{len(corpus)} passages ({timings['data_s']:.1f}s)")

    # 2. warm start (cached)
    t0 = time.perf_counter()
    ws_config = WarmStartConfig(**settings["warmstart"])
    texts = demo_text_corpus(train_sets + eval_sets, corpus)
    key_dir_before = {p.name for p in cache.glob("warmstart-*")} if cache.is_dir() else set()
    policy_dir = warm_start(train_sets, corpus, texts, cache, ws_config, progress=progress, log=log)
    timings["warm_start_s"] = time.perf_counter() - t0
    timings["warm_start_cached"] = policy_dir.name in key_dir_before
    ws_meta = json.loads((policy_dir / "warmstart.json").read_text(encoding="utf-8"))

    results: dict[str, Any] = {}
    answers: dict[str, Any] = {}

    def evaluate(name: str, path: Path) -> None:
        t = time.perf_counter()
        model, tok = load_policy(str(path))
        summary = _evaluate(model, tok, eval_sets)
        answers[name] = summary.pop("_answers")
        results[name] = summary
        timings[f"eval_{name}_s"] = time.perf_counter() - t
        log(f"eval {name}: EM {summary['accuracy_em']:.3f}  cons. exact {summary['consistency_e2e_exact']:.3f}"
            f"  ({timings[f'eval_{name}_s']:.0f}s)")

    evaluate("base", policy_dir)

    # 3. the two arms: identical settings, different reward
    for reward in ("accuracy_only", "ps_grpo"):
        name = ARM_KEYS[reward]
        t = time.perf_counter()
        log(f"GRPO arm {name}: {settings['grpo']['max_steps']} steps, rewards {ARM_REWARDS[reward]}")
        arm_dir = train_arm(policy_dir, train_sets, out / name, reward=reward, settings=settings["grpo"],
                            progress=False)
        timings[f"train_{name}_s"] = time.perf_counter() - t
        log(f"  trained in {timings[f'train_{name}_s']:.0f}s")
        evaluate(name, arm_dir)

    timings["total_s"] = time.perf_counter() - t_all
    timings = {k: (round(v, 2) if isinstance(v, float) else v) for k, v in timings.items()}
    summary: dict[str, Any] = {name: results[name] for name in ("base", "grpo_accuracy_only", "ps_grpo")}
    summary["timings"] = timings
    summary["settings"] = {
        **settings,
        "arm_rewards": ARM_REWARDS,
        "quick": quick,
        "warm_start_dir": str(policy_dir),
        "warm_start": {k: ws_meta[k] for k in ("num_examples", "num_noisy_wording", "num_corrupted_labels",
                                               "num_parameters", "train_seconds")},
    }
    summary["train_stats"] = {ARM_KEYS[r]: _train_stats(out / ARM_KEYS[r]) for r in ARM_REWARDS}
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=_json_default), encoding="utf-8")
    (out / "answers.json").write_text(
        json.dumps({name: {s.set_id: a for s, a in zip(eval_sets, groups)} for name, groups in answers.items()},
                   indent=1),
        encoding="utf-8",
    )
    plot_summary(summary, out / "summary.png")
    if progress:
        print_table(summary)
        log("timings (s): " + ", ".join(f"{k}={v}" for k, v in timings.items()))
    return summary


def _train_stats(arm_dir: Path) -> dict[str, Any]:
    """Mean of a few logged GRPO metrics over the first and the last logged tenth of training."""
    try:
        history = json.loads((arm_dir / "train_log.json").read_text(encoding="utf-8"))["log_history"]
    except (OSError, ValueError, KeyError):
        return {}
    logged = [h for h in history if "frac_reward_zero_std" in h]
    if not logged:
        return {}
    keys = ("frac_reward_zero_std", "ps_grpo/frac_reward_zero_std_paraphrase", "ps_grpo/frac_reward_zero_std_set",
            "ps_grpo/agreement", "rewards/accuracy/mean", "rewards/consistency/mean", "entropy")
    k = max(1, len(logged) // 10)
    out: dict[str, Any] = {}
    for name, part in (("first", logged[:k]), ("last", logged[-k:])):
        out[name] = {key: round(sum(h[key] for h in part) / len(part), 4) for key in keys if all(key in h for h in part)}
    out["train_seconds"] = json.loads((arm_dir / "train_log.json").read_text(encoding="utf-8")).get("train_seconds")
    return out


def _json_default(o: Any) -> Any:
    try:
        import numpy as np

        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


__all__ = [
    "ARM_REWARDS",
    "DEMO_DATA_SETTINGS",
    "DEMO_GRPO_SETTINGS",
    "DEMO_WARMSTART_SETTINGS",
    "SUMMARY_FIELDS",
    "demo_settings",
    "plot_summary",
    "print_table",
    "run_demo",
    "train_arm",
]


# ------------------------------------------------------------------------------------------
# The demo through recipes: `grpo-sim train recipes/demo/ps_grpo.yaml`
# ------------------------------------------------------------------------------------------


def _built_demo(settings: Any):
    """(train_sets, eval_sets, corpus) for a recipe's ``data.demo`` section (cached per settings)."""
    from .data.synthetic import build_demo_dataset

    key = (settings.num_train_sets, settings.num_eval_sets, settings.num_paraphrases,
           settings.passages_per_prompt, settings.seed)
    if key not in _BUILT:
        _BUILT[key] = build_demo_dataset(key[0], key[1], num_paraphrases=key[2], passages_per_prompt=key[3],
                                         seed=key[4])
    return _BUILT[key]


_BUILT: dict[tuple, Any] = {}


def demo_data(settings: Any):
    """(train_sets, eval_sets) of the bundled synthetic data, for recipes with ``data.train: demo``."""
    train, eval_, _ = _built_demo(settings)
    return train, eval_


def demo_warmstart(settings: Any, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The demo's warm-started policy (built once, then cached), for ``grpo-sim:demo-warmstart``."""
    from .data.synthetic import demo_text_corpus

    train, eval_, corpus = _built_demo(settings)
    cache = Path(cache_dir) if cache_dir is not None else Path("runs") / ".cache"
    config = WarmStartConfig(**{**DEMO_WARMSTART_SETTINGS, "seed": settings.seed})
    return warm_start(train, corpus, demo_text_corpus(train + eval_, corpus), cache, config)
