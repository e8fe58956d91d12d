"""The embedded CPU demo: PS-GRPO on bundled synthetic RAG data with a tiny warm-started policy.

One package on top of the public APIs of the rest (recipes, runner, trainer, eval, data):

* :mod:`~grpo_sim.demo.world` — the synthetic world and its paraphrase sets (BM25 per wording);
* :mod:`~grpo_sim.demo.warmstart` — the tiny policy's supervised warm start with noisy labels on some wordings;
* :mod:`~grpo_sim.demo.settings` — data/warm-start settings and the arms, whose GRPO settings are their recipes
  (``grpo_sim/demo/recipes/``, also ``recipes/demo/``);
* :mod:`~grpo_sim.demo.arms` — training an arm from its recipe; independent jobs two at a time;
* :mod:`~grpo_sim.demo.evaluation` — retriever / generator / end-to-end evaluation and paired comparisons;
* :mod:`~grpo_sim.demo.report` — table, plot and the multi-seed table;
* :mod:`~grpo_sim.demo.run` — ``grpo-sim demo`` (:func:`run_demo`, :func:`run_seeds`) and the recipe sources
  ``demo`` / ``grpo-sim:demo-warmstart`` (:func:`demo_data`, :func:`demo_warmstart`).
"""

from .arms import ArmFailed, run_jobs, train_arm
from .evaluation import COMPARISONS, SUMMARY_FIELDS, evaluate_policy, paired_comparisons
from .report import plot_summary, print_table
from .run import cpu_model, demo_data, demo_warmstart, run_demo, run_seeds, training_labels
from .settings import (
    ARMS,
    DEMO_DATA_SETTINGS,
    DEMO_WARMSTART_SETTINGS,
    QUICK_OVERRIDES,
    REWARD_LABELS,
    arm_config,
    arm_recipe,
    demo_settings,
)
from .warmstart import NOISY_TEMPLATES, WarmStartConfig, warm_start
from .world import build_demo_dataset, demo_text_corpus, gold_ranks

__all__ = [
    "ARMS",
    "COMPARISONS",
    "DEMO_DATA_SETTINGS",
    "DEMO_WARMSTART_SETTINGS",
    "NOISY_TEMPLATES",
    "QUICK_OVERRIDES",
    "REWARD_LABELS",
    "SUMMARY_FIELDS",
    "ArmFailed",
    "WarmStartConfig",
    "arm_config",
    "arm_recipe",
    "build_demo_dataset",
    "cpu_model",
    "demo_data",
    "demo_settings",
    "demo_text_corpus",
    "demo_warmstart",
    "evaluate_policy",
    "gold_ranks",
    "paired_comparisons",
    "plot_summary",
    "print_table",
    "run_demo",
    "run_jobs",
    "run_seeds",
    "train_arm",
    "training_labels",
    "warm_start",
]
