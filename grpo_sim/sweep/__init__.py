"""Hyper-parameter sweeps over a recipe, on Optuna: ``grpo-sim sweep SWEEP.yaml``.

A sweep file names a base recipe, the recipe keys to vary and their spaces, the objective and a
trial budget::

    name: demo_lr_grid                      # default: the file's stem (also the Optuna study name)
    base_recipe: ../demo/ps_grpo.yaml       # relative to this file
    output_dir: runs/sweeps/demo_lr_grid    # default runs/sweeps/<name> (relative to the working dir)
    parameters:                             # dotted recipe keys, exactly as for --set
      training.learning_rate: {type: grid, values: [1.0e-4, 3.0e-4, 1.0e-3]}   # or just a list
      training.beta: {type: float, low: 0.0, high: 0.1, step: 0.02}
      training.num_generations: {type: int, low: 2, high: 8, step: 2}
      reward.similarity: {type: choice, values: [bleu2, exact_match]}
      training.max_grad_norm: {type: float, low: 0.1, high: 10, log: true}
    objective:                              # a metric, or a weighted mix; eval: = <trial>/eval/summary.json,
      mix: {"eval:consistency_e2e_exact": 1.0, "eval:accuracy_f1": 1.0}   # train: = last value logged in
      direction: maximize                   # <trial>/metrics.jsonl (objective: {metric: "train:reward"})
    sampler: grid                           # grid | random | tpe (default: grid if every space is a list)
    n_trials: 3                             # budget (COMPLETE + PRUNED + FAIL); default for grid: its size
    seed: 0
    storage: null                           # default sqlite:///<output_dir>/study.db; any database URL
    timeout_s: 3600                         # per trial: SIGTERM, then SIGKILL after launch.kill_grace_s
    launch:                                 # placeholders {python} {recipe} {trial_dir} {trial_number} {name}
      command: ["{python}", "-m", "grpo_sim.cli", "train", "{recipe}", "--output-dir", "{trial_dir}",
                "--resume", "auto"]
      env: {}                               # extra environment for the trial (placeholders allowed)
      kill_grace_s: 30
    pruning:                                # optional: median pruner on a metric logged while training
      {metric: "train:reward", warmup_steps: 20, startup_trials: 2, interval_steps: 1, patience: null}

Every trial is an ordinary training run in ``<output_dir>/trials/trial-NNNN``: the base recipe with
the sampled values is written there as ``trial_recipe.yaml``, validated, and run as a subprocess
(stdout and stderr to ``train.log``); the trainer saves ``recipe.resolved.yaml`` itself. A trial
whose recipe is invalid, whose command fails or is killed, or whose objective cannot be read is
recorded FAIL with the reason and its log, and the sweep goes on.

The study lives in the storage (SQLite by default), so rerunning an interrupted sweep continues it:
finished trials are kept, a trial left RUNNING by a dead sweep process (same host: its process is
gone; another host: no heartbeat for ``STALE_AFTER_S``) is marked FAIL (``interrupted``) and run
again with the same parameters. ``--worker`` joins the study from another process or machine
(point ``storage`` at a shared database) and runs trials until the budget is spent.

At the end (and with ``--report``): a table of the trials, ``trials.csv`` / ``trials.json``,
``best_recipe.yaml`` (ready for ``grpo-sim train``), ``objective.png`` and ``params.png`` in the
output directory.

``python -m grpo_sim.sweep SWEEP.yaml [--report] [--worker] [--n-trials N]`` runs the same command.

Modules: ``spec`` (the sweep file), ``studies`` (Optuna: study, storage, samplers, reruns, workers),
``trials`` (one trial's subprocess), ``objective`` (reading metrics), ``report``, ``run`` (the loop, the command).
"""

from .objective import ObjectiveError, read_metric, read_objective
from .report import ReportFiles, trial_rows, write_report
from .run import SweepResult, main, run_sweep, sweep_command
from .spec import Launch, Objective, ParamSpec, Pruning, Sweep, SweepError, SweepFile, load_sweep
from .studies import budget_status, open_study, recover_stale, worker_id
from .trials import SweepInterrupted, TrialOutcome, run_trial

__all__ = [
    "Launch",
    "Objective",
    "ObjectiveError",
    "ParamSpec",
    "Pruning",
    "ReportFiles",
    "Sweep",
    "SweepError",
    "SweepFile",
    "SweepInterrupted",
    "SweepResult",
    "TrialOutcome",
    "budget_status",
    "load_sweep",
    "main",
    "open_study",
    "read_metric",
    "read_objective",
    "recover_stale",
    "run_sweep",
    "run_trial",
    "sweep_command",
    "trial_rows",
    "worker_id",
    "write_report",
]
