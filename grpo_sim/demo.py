"""The embedded CPU demo: PS-GRPO end to end on bundled synthetic RAG data, no GPU, no hub.

Pipeline (:func:`run_demo`)
---------------------------
1. **Data** — :func:`grpo_sim.data.synthetic.build_demo_dataset`: paraphrase sets of template
   wordings over a small passage corpus, BM25 top-3 passages retrieved per wording (so retrieval
   varies too), disjoint held-out evaluation sets (people and answer names never seen in
   training). Deterministic for the seed.
2. **Warm start** — :func:`grpo_sim.warmstart.warm_start`: word-level tokenizer built on the
   bundled text, a tiny Qwen2 policy, supervised fine-tuning with *noisy supervision on three
   of the six wordings of every relation* (their labels are often the answer of a distractor
   passage, :data:`grpo_sim.warmstart.NOISY_TEMPLATES`). The policy answers clean wordings
   mostly right and noisy wordings mostly wrong: sensible but inconsistent across the wording of
   paraphrases. Cached by a hash of its settings and data.
3. **Two GRPO arms** from that warm start, same data, steps, seed and recipe
   (:data:`DEMO_GRPO_SETTINGS`), different reward only (:data:`ARM_REWARDS`):
   ``ps_grpo`` = cross-paraphrase consistency (token F1 between the answers to different
   wordings of a set) + accuracy (token F1 against the label), and ``grpo_accuracy_only`` =
   accuracy only (the paper's ablation). By default the accuracy reward scores against the
   training sets' gold answers (``reward_labels="gold"``: the warm start learned from noisily
   labelled data, GRPO runs on verified answers); ``reward_labels="warmstart"`` reuses the warm
   start's own noisy labels instead.
4. **Evaluation** of the warm start and both arms on the held-out sets with greedy decoding:
   accuracy (EM, F1), end-to-end consistency (BLEU-2, exact match, embedding cosine), collapse
   indicators (``frac_empty``, ``frac_sets_identical_wrong``) and accuracy on clean vs noisy
   wordings. Written to ``summary.json`` (keys ``base``, ``grpo_accuracy_only``, ``ps_grpo``,
   ``comparisons`` with paired bootstrap intervals, ``timings``, ``settings``,
   ``train_stats``), printed as a table and plotted to ``summary.png``.

Nothing is hard-coded about the outcome: the numbers are whatever this run measures.

Design notes (measured on the 2-core build machine while choosing the settings)
-------------------------------------------------------------------------------
* ``advantage_mode="set"``: per-paraphrase groups of g = 4 rollouts of this confident policy had
  zero reward spread 68-75% of the time in the first steps (up to ~90% later), so the paper's
  per-paraphrase normalisation learned little; normalising over a set's n*g completions left <10%
  of groups without signal.
* Learning rate 1e-3 (3e-4 moved consistency a few points in 300 steps; 2e-3 lost accuracy).
* ``num_iterations=2`` (reusing each generation batch) was worse at equal steps.
* With ``reward_labels="warmstart"`` the accuracy-only arm learns the label noise (consistency
  does not improve) while PS-GRPO still improves it, by less than with gold labels.
"""

from __future__ import annotations

import copy
import json
import os
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from .io import atomic_open, atomic_write_text
from .sources import DemoDataSettings
from .warmstart import WarmStartConfig, warm_start

#: Data of the full demo (``quick=True`` shrinks it): the recipe schema's ``data.demo`` defaults, one source for
#: ``grpo-sim demo`` and recipes with ``data.train: demo`` (the seed is the demo's --seed).
DEMO_DATA_SETTINGS: dict[str, Any] = DemoDataSettings().model_dump(exclude={"seed"})

#: Warm-start settings of the full demo (see :class:`grpo_sim.warmstart.WarmStartConfig`; the
#: noisy wordings are :data:`grpo_sim.warmstart.NOISY_TEMPLATES`).
DEMO_WARMSTART_SETTINGS: dict[str, Any] = {
    "hidden_size": 64,
    "num_layers": 2,
    "num_heads": 8,
    "freeze_embeddings": True,
    "embedding_std": 0.5,
    "kind_scale": 1.0,
    "name_redraw": True,
    "curriculum_steps": 300,
    "steps": 4000,
    "batch_size": 32,
    "learning_rate": 3e-3,
    "warmup_steps": 100,
    "noise_rate": 0.75,
}

#: The GRPO recipe shared by BOTH arms. Everything except ``sets_per_step`` and
#: ``freeze_embeddings`` is a :class:`grpo_sim.trainer.PSGRPOConfig` field; the reward weights
#: come from :data:`ARM_REWARDS`. ``sets_per_step`` paraphrase sets (each n paraphrases x g
#: rollouts) make one generation batch = one optimizer step (4 x 4 x 4 = 64 completions).
#:
#: ``advantage_mode="set"``: the warm start is confident per wording, so the g = 4 rollouts of one
#: paraphrase usually agree (68-75% of paraphrase groups had zero reward spread at the start,
#: ``ps_grpo/frac_reward_zero_std_paraphrase``) while the wordings of a set disagree; normalising
#: over the n*g completions of a set leaves under 10% of groups without signal at the start
#: (``frac_reward_zero_std``) and learned faster in every comparison we ran.
#: ``collapse_warn_entropy_ratio=0`` switches off only the entropy warning: one-word answers
#: legitimately become near-deterministic (per-step entropy dips to ~0.01 while accuracy and
#: consistency rise). The empty-answer and identical-answer guards keep their defaults, the
#: collapse penalty stays on, and collapse is measured directly on the held-out sets
#: (``frac_empty``, ``frac_sets_identical_wrong``).
DEMO_GRPO_SETTINGS: dict[str, Any] = {
    "max_steps": 400,
    "sets_per_step": 4,
    "num_generations": 4,
    "temperature": 1.0,
    "max_completion_length": 4,
    "learning_rate": 1e-3,
    "lr_scheduler_type": "constant",
    "warmup_steps": 0,
    "beta": 0.0,
    "loss_type": "dapo",
    "scale_rewards": "group",
    "advantage_mode": "set",
    "similarity": "token_f1",
    "accuracy_metric": "token_f1",
    "relaxed_kappa": None,
    "collapse_penalty": True,
    "collapse_warn_entropy_ratio": 0.0,
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
    "warmstart": {"steps": 30, "curriculum_steps": 10, "batch_size": 16, "warmup_steps": 5},
    "grpo": {"max_steps": 2, "sets_per_step": 2},
}

#: What the accuracy reward of GRPO scores against: ``gold`` (the training sets' gold answers)
#: or ``warmstart`` (the warm start's own noisy training labels, see :func:`run_demo`).
REWARD_LABELS = ("gold", "warmstart")

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
                       max_steps: int | None = None) -> dict[str, Any]:
    """:class:`~grpo_sim.trainer.PSGRPOConfig` keyword arguments of one arm (CPU, no saving, no reporting)."""
    if reward not in ARM_REWARDS:
        raise ValueError(f"reward must be one of {sorted(ARM_REWARDS)}, got {reward!r}")
    s = dict(settings)
    sets_per_step = s.pop("sets_per_step", None)
    for key in _DEMO_ONLY_KEYS:
        s.pop(key, None)
    if max_steps is not None:
        s["max_steps"] = int(max_steps)
    if sets_per_step is not None:
        batch = int(sets_per_step) * num_paraphrases * int(s.get("num_generations", 8))
    elif "per_device_train_batch_size" in s:
        batch = int(s.pop("per_device_train_batch_size"))
    else:
        raise ValueError("settings need sets_per_step (or per_device_train_batch_size, a multiple of n*g)")
    kwargs = dict(
        output_dir=output_dir,
        use_cpu=True,
        bf16=False,
        report_to=[],
        per_device_train_batch_size=batch,
        gradient_accumulation_steps=1,
        save_strategy="no",
        logging_steps=10,
        disable_tqdm=True,  # progress: one compact line every 50 steps (_ProgressPrinter)
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
            start = time.perf_counter()

            def on_log(self, args, state, control, logs=None, **kwargs):
                logs = logs or {}
                if "reward" not in logs or (state.global_step % 50 and state.global_step != max_steps):
                    return
                parts = [f"  [{name}] step {state.global_step}/{max_steps} ({time.perf_counter() - self.start:.0f}s)"]
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
    kwargs = grpo_config_kwargs(settings, num_paraphrases, reward, str(out / "trainer"), max_steps)
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
    atomic_write_text(out / "train_log.json", json.dumps(log, indent=2, default=float))
    del trainer
    return out


# ------------------------------------------------------------------------------------------
# Evaluation
# ------------------------------------------------------------------------------------------


def _identical_wrong(sets: Sequence[Any], answers: Sequence[Sequence[str]]) -> float:
    """Fraction of sets whose paraphrases all got the same normalised answer, and that answer is
    not gold (collapse onto a wrong answer; the evaluator's ``empty_answer_rate`` covers empties)."""
    from .similarity.text import normalize_answer

    wrong = 0
    for s, group in zip(sets, answers):
        norm = {normalize_answer(a) for a in group}
        wrong += len(norm) == 1 and not norm & {normalize_answer(g) for g in s.answers}
    return wrong / max(1, len(sets))


def _wording_accuracy(sets: Sequence[Any], answers: Sequence[Sequence[str]],
                      noisy: Mapping[str, Any] | None = None) -> dict[str, float]:
    """Exact-match accuracy on the wordings whose warm-start labels were noisy vs the clean ones
    (:data:`grpo_sim.warmstart.NOISY_TEMPLATES`): where the warm start's inconsistency comes from."""
    from .similarity.text import normalize_answer
    from .warmstart import NOISY_TEMPLATES

    noisy = NOISY_TEMPLATES if noisy is None else noisy
    hits: dict[str, list[float]] = {"noisy": [], "clean": []}
    for s, group in zip(sets, answers):
        rel = s.metadata.get("relation")
        tids = s.metadata.get("templates")
        if rel is None or tids is None:
            continue
        gold = {normalize_answer(g) for g in s.answers}
        for t, a in zip(tids, group):
            hits["noisy" if t in set(noisy.get(rel, ())) else "clean"].append(float(normalize_answer(a) in gold))
    return {f"accuracy_em_{k}_wordings": (sum(v) / len(v) if v else float("nan")) for k, v in hits.items()}


def _evaluate(model, tok, sets: Sequence[Any], max_new_tokens: int = 4, batch_size: int = 128,
              noisy_templates: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Greedy end-to-end evaluation of one policy on paraphrase sets with :mod:`grpo_sim.eval`
    (``generate_predictions`` + ``summarize_with_details``) -> flat summary dict, plus
    ``frac_empty`` (= the evaluator's ``empty_answer_rate``), ``frac_sets_identical_wrong`` and
    the exact-match accuracy on noisy vs clean wordings (``accuracy_em_noisy_wordings`` /
    ``accuracy_em_clean_wordings``). ``_answers`` and ``_per_set`` (the evaluator's per-set rows)
    are for :func:`run_demo` and are not written to the summary.
    """
    from .eval import generate_predictions, summarize_with_details

    preds = generate_predictions(model, tok, sets, level="e2e", template="rag_short_answer",
                                 max_new_tokens=max_new_tokens, batch_size=batch_size, do_sample=False,
                                 progress=False)
    table: dict[tuple[str, int], str] = {(p["set_id"], p["paraphrase_id"]): p["answer"] for p in preds}
    answers = [[table[(s.set_id, p.paraphrase_id)] for p in s.paraphrases] for s in sets]
    summary, per_set = summarize_with_details(sets, preds, metrics=("bleu2", "rouge_l", "exact_match", "embedding"))
    summary["evaluator"] = "grpo_sim.eval"
    summary["frac_empty"] = summary["empty_answer_rate"]
    summary["frac_sets_identical_wrong"] = _identical_wrong(sets, answers)
    summary.update(_wording_accuracy(sets, answers, noisy_templates))
    summary["_answers"] = answers
    summary["_per_set"] = per_set
    return summary


#: Paired comparisons in ``summary.json["comparisons"]``: ``a_minus_b`` for each ``(a, b)``.
COMPARISONS = (("ps_grpo", "base"), ("grpo_accuracy_only", "base"), ("ps_grpo", "grpo_accuracy_only"))


def paired_comparisons(per_set: Mapping[str, Sequence[Mapping[str, Any]]], n_boot: int = 2000,
                       seed: int = 0) -> dict[str, Any]:
    """Paired differences over the same held-out sets (:func:`grpo_sim.eval.metrics.paired_difference`:
    ``{"diff", "ci", "num_sets"}`` with a 95% percentile-bootstrap interval) of exact-match
    consistency and accuracy for :data:`COMPARISONS`; ``per_set`` maps a policy to its evaluator
    per-set rows. Pairs with a missing side are left out."""
    from .eval.metrics import paired_difference

    return {
        f"{a}_minus_{b}": {key: paired_difference(per_set[a], per_set[b], key, n_boot=n_boot, seed=seed)
                           for key in ("consistency_e2e_exact", "accuracy_em")}
        for a, b in COMPARISONS if a in per_set and b in per_set
    }


# ------------------------------------------------------------------------------------------
# Report: table and plot
# ------------------------------------------------------------------------------------------

_ROW_LABELS = {"base": "warm start (SFT)", "grpo_accuracy_only": "GRPO accuracy-only", "ps_grpo": "PS-GRPO"}
_ROW_LABELS_SHORT = {"base": "warm start", "grpo_accuracy_only": "GRPO acc.-only", "ps_grpo": "PS-GRPO"}
_COLUMNS = (
    ("accuracy_em", "EM"),
    ("accuracy_f1", "F1"),
    ("consistency_e2e_exact", "cons exact"),
    ("consistency_e2e_bleu2", "cons BLEU-2"),
    ("consistency_e2e_embedding", "cons emb"),
    ("frac_empty", "empty"),
    ("frac_sets_identical_wrong", "ident-wrong"),
    ("accuracy_em_clean_wordings", "EM clean wd"),
    ("accuracy_em_noisy_wordings", "EM noisy wd"),
)


def print_table(summary: Mapping[str, Any]) -> None:
    """A rich table of the three rows of ``summary``."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"PS-GRPO CPU demo — held-out sets (n={summary['base'].get('num_sets')})")
    table.add_column("policy", no_wrap=True)
    for _, label in _COLUMNS:
        table.add_column(label, justify="right", no_wrap=True)
    for key in ("base", "grpo_accuracy_only", "ps_grpo"):
        row = summary[key]
        cells = []
        for k, _ in _COLUMNS:
            v = row.get(k)
            cells.append("-" if v is None else f"{v:.3f}")
        table.add_row(_ROW_LABELS_SHORT[key], *cells)
    console = Console()
    if not console.is_terminal and console.width < 130:
        console = Console(width=130)
    console.print(table)


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
    drew_ci = False
    for i, key in enumerate(keys):
        vals = [float(summary[key].get(k) or 0.0) for k, _ in cols]
        cis = [summary[key].get(f"{k}_ci") for k, _ in cols]  # bootstrap intervals from grpo_sim.eval
        yerr = None
        if all(isinstance(c, (list, tuple)) and len(c) == 2 and None not in c for c in cis):
            yerr = np.array([[v - c[0] for v, c in zip(vals, cis)], [c[1] - v for v, c in zip(vals, cis)]]).clip(0)
            drew_ci = True
        bars = ax.bar(x + (i - 1) * width, vals, width, label=_ROW_LABELS[key], yerr=yerr, capsize=2,
                      error_kw={"elinewidth": 0.8, "alpha": 0.6})
        ax.bar_label(bars, fmt="%.2f", fontsize=7)
    ax.set_xticks(x, [label for _, label in cols])
    ax.set_ylim(0, 1.08)
    ax.set_ylabel("held-out score")
    ax.set_title(f"PS-GRPO CPU demo: accuracy and end-to-end consistency "
                 f"({summary['base'].get('num_sets')} held-out sets{', 95% CI' if drew_ci else ''})")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    with atomic_open(path, "wb") as fh:
        fig.savefig(fh, dpi=120, format="png")
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


def training_labels(train_sets: Sequence[Any], config: WarmStartConfig) -> dict[tuple[str, int], str]:
    """The warm start's (noisy) training label of every training paraphrase, ``(set_id, paraphrase_id) -> answer``."""
    from .warmstart import sft_examples

    return {(e["set_id"], e["paraphrase_id"]): e["target"] for e in sft_examples(train_sets, config)}


def run_demo(
    output_dir: str | os.PathLike[str],
    quick: bool = False,
    seed: int = 0,
    progress: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
    reward_labels: str = "gold",
    num_threads: int | None = 1,
) -> dict[str, Any]:
    """Run the whole demo; returns the summary written to ``output_dir/summary.json``.

    Args:
        output_dir: receives ``summary.json``, ``summary.png``, ``answers.json`` (every held-out
            answer of every policy) and one directory per arm (model, tokenizer, ``train_log.json``).
        quick: tiny data and budgets (a smoke test of the pipeline; the numbers mean nothing).
        seed: seeds the data, the warm start and both arms.
        cache_dir: keeps the warm-started policy between runs (default ``output_dir/../.cache``).
        reward_labels: what GRPO's accuracy reward scores against: ``"gold"`` (the training sets'
            gold answers: the warm start learned from noisily-labelled data, GRPO runs on verified
            answers) or ``"warmstart"`` (the same noisy labels the warm start was trained on).
        num_threads: torch CPU threads while the demo runs (restored afterwards; ``None`` leaves
            them alone). One thread: the tiny model gains ~20% from a second thread on an idle
            2-core machine but runs 2-3x slower with it when other jobs share the cores.
    """
    if reward_labels not in REWARD_LABELS:
        raise ValueError(f"reward_labels must be one of {REWARD_LABELS}, got {reward_labels!r}")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import warnings

    import torch
    from transformers.utils import logging as hf_logging

    previous_threads = torch.get_num_threads()
    bars = hf_logging.is_progress_bar_enabled()
    if num_threads:
        torch.set_num_threads(int(num_threads))
    hf_logging.disable_progress_bar()  # "Loading weights" bars at every model load
    try:
        with warnings.catch_warnings():
            # transformers' deprecation notices about TRL's gradient_checkpointing field, once per arm
            warnings.filterwarnings("ignore", category=FutureWarning, module=r"transformers\.")
            return _run_demo(Path(output_dir), quick, seed, progress, cache_dir, reward_labels)
    finally:
        torch.set_num_threads(previous_threads)
        if bars:
            hf_logging.enable_progress_bar()


def _run_demo(out: Path, quick: bool, seed: int, progress: bool, cache_dir, reward_labels: str) -> dict[str, Any]:
    from .data.synthetic import build_demo_dataset, demo_text_corpus
    from .models.tiny import load_policy

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
    before = {p.name for p in cache.glob("warmstart-*")} if cache.is_dir() else set()
    policy_dir = warm_start(train_sets, corpus, texts, cache, ws_config, progress=progress, log=log)
    timings["warm_start_s"] = time.perf_counter() - t0
    timings["warm_start_cached"] = policy_dir.name in before
    ws_meta = json.loads((policy_dir / "warmstart.json").read_text(encoding="utf-8"))
    noisy = ws_config.noisy_map()

    results: dict[str, Any] = {}
    answers: dict[str, Any] = {}
    per_set: dict[str, Any] = {}

    def evaluate(name: str, path: Path) -> None:
        t = time.perf_counter()
        model, tok = load_policy(str(path))
        summary = _evaluate(model, tok, eval_sets, noisy_templates=noisy)
        answers[name] = summary.pop("_answers")
        per_set[name] = summary.pop("_per_set")
        results[name] = summary
        timings[f"eval_{name}_s"] = time.perf_counter() - t
        log(f"eval {name}: EM {summary['accuracy_em']:.3f}  consistency (exact) {summary['consistency_e2e_exact']:.3f}"
            f"  EM clean/noisy wordings {summary['accuracy_em_clean_wordings']:.3f}/"
            f"{summary['accuracy_em_noisy_wordings']:.3f}  ({timings[f'eval_{name}_s']:.0f}s)")

    evaluate("base", policy_dir)

    # 3. the two arms: identical settings and budget, different reward
    labels = training_labels(train_sets, ws_config) if reward_labels == "warmstart" else None
    for reward in ("accuracy_only", "ps_grpo"):
        name = ARM_KEYS[reward]
        t = time.perf_counter()
        log(f"GRPO arm {name}: {settings['grpo']['max_steps']} steps, rewards {ARM_REWARDS[reward]}, "
            f"accuracy against {reward_labels} labels")
        arm_dir = train_arm(policy_dir, train_sets, out / name, reward=reward, settings=settings["grpo"],
                            progress=progress, labels=labels)
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
        "reward_labels": reward_labels,
        "noisy_templates": {rel: sorted(t) for rel, t in noisy.items()},
        "quick": quick,
        "torch_threads": __import__("torch").get_num_threads(),
        "warm_start_dir": str(policy_dir),
        "warm_start": {k: ws_meta[k] for k in ("num_examples", "num_noisy_wording", "num_corrupted_labels",
                                               "num_parameters", "train_seconds")},
    }
    summary["comparisons"] = paired_comparisons(per_set, seed=seed)
    summary["train_stats"] = {ARM_KEYS[r]: _train_stats(out / ARM_KEYS[r]) for r in ARM_REWARDS}
    # answers first, summary last: a summary.json on disk always comes with the answers it summarises
    atomic_write_text(out / "answers.json", json.dumps(
        {name: {s.set_id: a for s, a in zip(eval_sets, groups)} for name, groups in answers.items()}, indent=1))
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2, default=_json_default))
    plot_summary(summary, out / "summary.png")
    if progress:
        print_table(summary)
        for name, entry in summary["comparisons"].items():
            log(f"{name}: " + "; ".join(
                f"{k} {v['diff']:+.3f} [{v['ci'][0]:+.3f}, {v['ci'][1]:+.3f}]" for k, v in entry.items()))
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
        out[name] = {key: round(sum(h[key] for h in part) / len(part), 4)
                     for key in keys if all(key in h for h in part)}
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
    "ARM_KEYS",
    "COMPARISONS",
    "ARM_REWARDS",
    "QUICK_OVERRIDES",
    "REWARD_LABELS",
    "DEMO_DATA_SETTINGS",
    "DEMO_GRPO_SETTINGS",
    "DEMO_WARMSTART_SETTINGS",
    "SUMMARY_FIELDS",
    "demo_settings",
    "grpo_config_kwargs",
    "paired_comparisons",
    "plot_summary",
    "print_table",
    "run_demo",
    "train_arm",
    "training_labels",
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
