"""Run a recipe: output directory policy, data, model, trainer, resume, signals, final save.

Used by ``grpo-sim train``, ``python -m grpo_sim.train`` (under ``accelerate launch``), ``grpo-sim sft`` and the
demo. The package's modules, one concern each:

- :mod:`.directory`: the run directory's file names, checkpoints, resume, when a directory may be reused;
- :mod:`.callbacks`: metrics.jsonl and complete checkpoints, the recipe in the trackers, graceful stop;
- :mod:`.loading`: the run's data and model as the recipe asks, CPU-safe defaults;
- :mod:`.start`: every check before the first write, decided once for all ranks;
- :mod:`.finish`: final save, hub push, adapter merge, evaluation of the saved model, model card;
- :mod:`.training`: ``run_training``, which strings them together.
"""

from ..recipe import RecipeError
from .callbacks import (
    GracefulStopCallback,
    MetricsFileCallback,
    NothingLeftToTrain,
    NothingLeftToTrainCallback,
    RecipeToTrackersCallback,
    drop_metrics_after,
)
from .directory import (
    COMPLETE_MARKER,
    FINAL_ADAPTER_DIR,
    FINAL_DIR,
    METRICS_FILE,
    RESOLVED_RECIPE,
    RunError,
    check_output_dir,
    checkpoint_kind,
    find_checkpoints,
    never_trained,
    resolve_resume,
    resume_target_problems,
    run_directory,
)
from .finish import (
    describe_term,
    end_distributed,
    evaluate_final,
    evaluation_card_lines,
    hub_target,
    merge_saved_adapter,
    model_card,
    push_final_to_hub,
    row_similarities,
    save_trained_model,
)
from .loading import (
    cpu_defaults,
    is_prompt_rows,
    load_data,
    load_model,
    load_recipe_policy,
    load_sets,
    lora_config,
    optimizer_sees_loaded_weights,
    resolve_model_path,
    training_rows,
    trim_sets,
)
from .start import (
    PROBE_FILE,
    START_CHECKS,
    StartContext,
    StartDecisions,
    agree_on_start,
    check_output_dir_is_shared,
    check_start,
    start_problems,
)
from .training import Interrupted, RunResult, run_training

__all__ = [
    "COMPLETE_MARKER",
    "FINAL_ADAPTER_DIR",
    "FINAL_DIR",
    "METRICS_FILE",
    "PROBE_FILE",
    "START_CHECKS",
    "RESOLVED_RECIPE",
    "GracefulStopCallback",
    "Interrupted",
    "MetricsFileCallback",
    "NothingLeftToTrain",
    "NothingLeftToTrainCallback",
    "RecipeError",
    "RecipeToTrackersCallback",
    "RunError",
    "RunResult",
    "StartContext",
    "StartDecisions",
    "agree_on_start",
    "check_output_dir",
    "check_output_dir_is_shared",
    "check_start",
    "checkpoint_kind",
    "cpu_defaults",
    "describe_term",
    "drop_metrics_after",
    "end_distributed",
    "evaluate_final",
    "evaluation_card_lines",
    "find_checkpoints",
    "hub_target",
    "is_prompt_rows",
    "load_data",
    "load_model",
    "load_recipe_policy",
    "load_sets",
    "lora_config",
    "merge_saved_adapter",
    "model_card",
    "never_trained",
    "optimizer_sees_loaded_weights",
    "push_final_to_hub",
    "resolve_model_path",
    "resolve_resume",
    "resume_target_problems",
    "row_similarities",
    "run_directory",
    "run_training",
    "save_trained_model",
    "start_problems",
    "training_rows",
    "trim_sets",
]
