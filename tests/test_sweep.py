"""grpo-sim sweep: schema errors, a grid sweep of real tiny trainings, kill-and-rerun, failures, pruning, workers.

Trials other than the real grid sweep run ``tests/fixtures_sweep/fake_train.py`` (a stand-in for
``grpo-sim train`` that starts in milliseconds) so that the sweep machinery can be tested in seconds.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import typer
import yaml
from typer.testing import CliRunner

from grpo_sim.data.schema import write_psets
from grpo_sim.demo.world import build_demo_dataset
from grpo_sim.recipe import load_recipe
from grpo_sim.sweep import SweepError, budget_status, load_sweep, open_study, run_sweep, sweep_command

from trainer_helpers import build_policy

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
FAKE_TRAIN = ROOT / "tests" / "fixtures_sweep" / "fake_train.py"
FAKE_COMMAND = ["{python}", str(FAKE_TRAIN), "{recipe}", "{trial_dir}"]
LRS = [0.001, 0.003, 0.01]

cli = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
cli.command()(sweep_command)
runner = CliRunner()


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    base = tmp_path_factory.mktemp("sweep")
    policy = build_policy(base / "policy")
    train, _, _ = build_demo_dataset(6, 2, num_paraphrases=3, seed=0)
    write_psets(base / "train.jsonl", train)
    recipe = {
        "model": {"name_or_path": policy},
        "data": {"train": str(base / "train.jsonl")},
        "reward": {"similarity": "token_f1", "accuracy": {"metric": "token_f1", "weight": 1.0}},
        "training": {
            "learning_rate": 1e-3,
            "num_generations": 2,
            "per_device_train_batch_size": 6,
            "max_completion_length": 3,
            "max_steps": 2,
            "logging_steps": 1,
            "save_strategy": "no",
            "report_to": [],
            "seed": 0,
            "beta": 0.0,
            "disable_tqdm": True,
            "dataloader_num_workers": 0,
        },
        "evaluation": {"enabled": False},
    }
    (base / "tiny.yaml").write_text(yaml.safe_dump(recipe))
    return base


def write_sweep(directory: Path, workspace: Path, name: str = "sweep", **fields) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    spec = {
        "name": name,
        "base_recipe": str(workspace / "tiny.yaml"),
        "output_dir": str(directory / "out"),
        "parameters": {"training.learning_rate": {"type": "grid", "values": LRS}},
        "objective": {"metric": "train:reward", "direction": "maximize"},
        "launch": {"command": FAKE_COMMAND},
    }
    spec.update(fields)
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def trials_of(sweep_path: Path):
    return open_study(load_sweep(sweep_path), create=False).get_trials(deepcopy=False)


def quiet(_message: str) -> None:
    pass


# ------------------------------------------------------------------------------------------ schema
@pytest.mark.parametrize(
    "fields, expected",
    [
        ({"n_trial": 3}, "n_trial: unknown key in top level; did you mean 'n_trials'?"),
        ({"parameters": {"training.learning_rat": [1e-3, 1e-2]}}, "did you mean 'learning_rate'"),
        (
            {"parameters": {"training.learning_rate": {"type": "float", "lows": 1e-5, "high": 1e-3}}},
            "parameters[training.learning_rate].lows: unknown key in parameters[training.learning_rate]; "
            "did you mean 'low'",
        ),
        (
            {"parameters": {"training.learning_rate": {"type": "float", "low": 1e-5, "high": 1e-3}}, "sampler": "grid"},
            "sampler grid needs a list of values or a range with a step",
        ),
        (
            {
                "parameters": {"training.learning_rate": {"type": "float", "low": 1e-3, "high": 1e-5}},
                "sampler": "tpe",
                "n_trials": 4,
            },
            "low (0.001) must be below high (1e-05)",
        ),
        (
            {"parameters": {"training.beta": {"type": "float", "low": 0.0, "high": 1.0}}, "sampler": "random"},
            "n_trials: required with sampler random",
        ),
        ({"sampler": "bayes"}, "sampler: Input should be 'grid', 'random' or 'tpe'"),
        ({"objective": {"metric": "evl:accuracy_f1"}}, "did you mean 'eval'"),
        ({"objective": {"metric": "train:reward", "mix": {"train:reward": 1.0}}}, "exactly one of metric"),
        ({"objective": {"metric": "eval:accuracy_f1"}}, "the base recipe does not evaluate"),
        (
            {"launch": {"command": ["{python}", "x.py", "{trial_dri}"]}},
            "unknown placeholder {trial_dri}; did you mean 'trial_dir'",
        ),
        (
            {"launch": {"command": ["{python}", "-m", "grpo_sim.cli", "train", "{recipe}", "-o", "{trial_dir}"]}},
            "needs '--resume', 'auto'",
        ),
        ({"base_recipe": "nope.yaml"}, "base_recipe: 'nope.yaml' does not exist"),
        ({"storage": "study.db"}, "is not a database URL"),
    ],
)
def test_schema_errors_name_the_file_and_key(workspace, tmp_path, fields, expected):
    path = write_sweep(tmp_path, workspace, **fields)
    with pytest.raises(SweepError) as info:
        load_sweep(path)
    assert str(path) in str(info.value) and expected in str(info.value), str(info.value)


def test_cli_bad_input_is_one_clean_error(workspace, tmp_path):
    path = write_sweep(tmp_path, workspace, n_trial=3)
    result = runner.invoke(cli, [str(path)])
    assert result.exit_code == 2 and "did you mean 'n_trials'" in result.output
    assert "Traceback" not in result.output
    result = runner.invoke(cli, [str(tmp_path / "missing.yaml")])
    assert result.exit_code == 2 and "does not exist" in result.output
    result = runner.invoke(cli, [str(write_sweep(tmp_path, workspace, name="fresh")), "--report"])
    assert result.exit_code == 2 and "no study yet" in result.output


def test_spaces_and_shorthands(workspace, tmp_path):
    path = write_sweep(
        tmp_path,
        workspace,
        sampler="grid",
        parameters={
            "training.learning_rate": ["1e-4", "3e-4"],  # YAML 1.1 reads 1e-4 as a string
            "training.beta": {"type": "float", "low": 0.0, "high": 0.1, "step": 0.05},
            "training.num_generations": {"type": "int", "low": 2, "high": 6, "step": 2},
            "reward.similarity": {"type": "choice", "values": ["bleu2", "exact_match"]},
        },
    )
    sweep = load_sweep(path)
    assert sweep.sampler == "grid"
    assert sweep.grid == {
        "training.learning_rate": [1e-4, 3e-4],
        "training.beta": [0.0, 0.05, 0.1],
        "training.num_generations": [2, 4, 6],
        "reward.similarity": ["bleu2", "exact_match"],
    }
    assert sweep.n_trials == 2 * 3 * 3 * 2
    assert load_sweep(path, n_trials=5).n_trials == 5
    raw = sweep.trial_raw({"training.learning_rate": 1e-05, "reward.similarity": "exact_match"})
    assert raw["training"]["learning_rate"] == 1e-05 and raw["reward"]["similarity"] == "exact_match"
    tpe = load_sweep(
        write_sweep(
            tmp_path,
            workspace,
            name="tpe",
            n_trials=7,
            parameters={"training.learning_rate": {"type": "float", "low": 1e-5, "high": 1e-2, "log": True}},
        )
    )
    assert tpe.sampler == "tpe" and tpe.n_trials == 7 and tpe.grid is None


def test_demo_sweep_file_is_valid():
    sweep = load_sweep(ROOT / "recipes" / "sweeps" / "demo_lr_grid.yaml")
    assert sweep.base_recipe.resolve() == (ROOT / "recipes" / "demo" / "ps_grpo.yaml").resolve()
    assert sweep.sampler == "grid" and sweep.n_trials == 3
    assert sweep.grid == {"training.learning_rate": [3e-4, 1e-3, 2e-3]}
    assert [k for k, _ in sweep.spec.objective.terms()] == ["eval:consistency_e2e_exact", "eval:accuracy_f1"]
    for lr in sweep.grid["training.learning_rate"]:
        raw = sweep.trial_raw({"training.learning_rate": lr})
        assert raw["training"]["learning_rate"] == lr and raw["data"]["eval"] == "demo"


# ------------------------------------------------------------------------------------------ real runs
def test_grid_sweep_of_tiny_trainings_writes_the_report(workspace, tmp_path):
    path = write_sweep(
        tmp_path,
        workspace,
        name="tiny_grid",
        launch={
            "command": [
                "{python}",
                "-m",
                "grpo_sim.cli",
                "train",
                "{recipe}",
                "--output-dir",
                "{trial_dir}",
                "--resume",
                "auto",
            ]
        },
    )
    result = run_sweep(path, log=quiet)
    assert result.counts["COMPLETE"] == 3 and result.ran == [0, 1, 2], result
    out = tmp_path / "out"
    trials = trials_of(path)
    assert sorted(t.params["training.learning_rate"] for t in trials) == LRS
    for t in trials:
        trial_dir = Path(t.user_attrs["trial_dir"])
        assert trial_dir.parent == out / "trials"
        resolved = yaml.safe_load((trial_dir / "recipe.resolved.yaml").read_text())
        assert resolved["training"]["learning_rate"] == t.params["training.learning_rate"]
        assert (trial_dir / "trial_recipe.yaml").exists() and (trial_dir / "train.log").stat().st_size > 0
        rows = [json.loads(line) for line in (trial_dir / "metrics.jsonl").read_text().splitlines()]
        assert t.value == [r["reward"] for r in rows if "reward" in r][-1]
        assert t.user_attrs["returncode"] == 0 and t.user_attrs["duration_s"] > 0
    for name in ("trials.csv", "trials.json", "best_recipe.yaml", "objective.png", "params.png"):
        assert (out / name).stat().st_size > 0, name
    best = max(trials, key=lambda t: (t.value, -t.number))
    assert result.best_number == best.number
    recipe = load_recipe(out / "best_recipe.yaml")  # ready to run
    assert recipe.training["learning_rate"] == best.params["training.learning_rate"]
    with open(out / "trials.csv") as fh:
        assert [r["state"] for r in csv.DictReader(fh)] == ["COMPLETE"] * 3
    # a finished sweep reruns nothing; --report prints the table
    assert run_sweep(path, log=quiet, report=False).ran == []
    shown = runner.invoke(cli, [str(path), "--report"])
    assert shown.exit_code == 0 and "tiny_grid" in shown.output and "*best" in shown.output, shown.output


def test_killed_sweep_continues_without_repeating_finished_trials(workspace, tmp_path):
    path = write_sweep(
        tmp_path, workspace, name="killed", launch={"command": FAKE_COMMAND, "env": {"FAKE_STEP_S": "1.0"}}
    )
    out = tmp_path / "out" / "trials"
    sweep_log = tmp_path / "sweep.log"
    with open(sweep_log, "w") as log_fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "grpo_sim.sweep", str(path)], cwd=tmp_path, stdout=log_fh, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.time() + 240
        while not (out / "trial-0001" / "fake.pid").exists():  # trial 0 told COMPLETE, trial 1 training
            assert proc.poll() is None, sweep_log.read_text()
            assert time.time() < deadline, "the sweep did not reach its second trial"
            time.sleep(0.05)
    finally:
        proc.kill()
        proc.wait()
    orphan = int((out / "trial-0001" / "fake.pid").read_text())
    first_log = out / "trial-0000" / "train.log"
    first_state = (first_log.stat().st_mtime_ns, first_log.read_text())
    before = trials_of(path)
    assert [t.state.name for t in before] == ["COMPLETE", "RUNNING"]

    result = run_sweep(path, log=quiet)

    assert _dead(orphan), "the killed sweep's running trial outlived it"
    trials = trials_of(path)
    states = [t.state.name for t in trials]
    assert states == ["COMPLETE", "FAIL", "COMPLETE", "COMPLETE"], states
    assert trials[1].user_attrs["interrupted"] and "died" in trials[1].user_attrs["error"]
    assert trials[2].params == trials[1].params and trials[2].user_attrs["retry_of"] == 1
    assert sorted(t.params["training.learning_rate"] for t in trials if t.state.name == "COMPLETE") == LRS
    assert result.ran == [2, 3] and budget_status(trials) == (3, 0)
    assert (first_log.stat().st_mtime_ns, first_log.read_text()) == first_state
    rows = json.loads((tmp_path / "out" / "trials.json").read_text())["trials"]
    assert "rerun as trial 2" in rows[1]["note"] and "rerun of trial 1" in rows[2]["note"]


def _dead(pid: int, wait: float = 10.0) -> bool:
    deadline = time.time() + wait
    while time.time() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.1)
    return False


def test_failed_trials_are_recorded_and_the_sweep_goes_on(workspace, tmp_path):
    path = write_sweep(
        tmp_path,
        workspace,
        name="failing",
        parameters={
            "training.run_name": ["ok", "crash"],  # fake_train exits 3 on "crash"
            "reward.advantage": ["paraphrase", "sett"],
        },
    )  # "sett" makes the recipe invalid
    result = run_sweep(path, log=quiet)
    trials = {(t.params["training.run_name"], t.params["reward.advantage"]): t for t in trials_of(path)}
    assert len(trials) == 4 and result.counts == {"COMPLETE": 1, "PRUNED": 0, "FAIL": 3, "RUNNING": 0}
    ok = trials[("ok", "paraphrase")]
    assert ok.state.name == "COMPLETE" and result.best_number == ok.number
    crashed = trials[("crash", "paraphrase")]
    assert crashed.state.name == "FAIL" and crashed.user_attrs["returncode"] == 3
    assert crashed.user_attrs["error"].startswith("exit code 3") and "out of memory" in crashed.user_attrs["error"]
    assert "simulated crash" in Path(crashed.user_attrs["log"]).read_text()
    for key in (("ok", "sett"), ("crash", "sett")):
        invalid = trials[key]
        assert invalid.state.name == "FAIL" and "invalid recipe" in invalid.user_attrs["error"]
        assert "reward.advantage" in invalid.user_attrs["error"] and "returncode" not in invalid.user_attrs
        assert not Path(invalid.user_attrs["log"]).exists()  # never launched
    shown = runner.invoke(cli, [str(path), "--report"])
    assert shown.exit_code == 0 and "exit code 3" in shown.output and "train.log" in shown.output


def test_pruning_timeout_and_missing_objective(workspace, tmp_path):
    path = write_sweep(
        tmp_path,
        workspace,
        name="pruned",
        parameters={"training.learning_rate": [1.0, 0.01], "training.max_steps": [12]},
        pruning={"metric": "train:reward", "startup_trials": 1},
        launch={"command": FAKE_COMMAND, "env": {"FAKE_STEP_S": "0.25"}, "kill_grace_s": 5},
    )
    run_sweep(path, log=quiet)
    first, second = trials_of(path)
    assert first.state.name == "COMPLETE" and second.state.name == "PRUNED", second.user_attrs
    assert "pruned at step" in second.user_attrs["error"]
    rows = (Path(second.user_attrs["trial_dir"]) / "metrics.jsonl").read_text().splitlines()
    assert len(rows) < 12  # stopped early

    slow = write_sweep(
        tmp_path / "slow",
        workspace,
        name="slow",
        timeout_s=1.0,
        parameters={"training.learning_rate": [0.1]},
        launch={"command": FAKE_COMMAND, "env": {"FAKE_STEP_S": "30"}, "kill_grace_s": 5},
    )
    start = time.time()
    run_sweep(slow, log=quiet)
    (trial,) = trials_of(slow)
    assert trial.state.name == "FAIL" and "timed out after 1 s" in trial.user_attrs["error"]
    assert time.time() - start < 30

    missing = write_sweep(
        tmp_path / "missing",
        workspace,
        name="missing",
        objective={"metric": "train:rewardz"},
        parameters={"training.learning_rate": [0.1]},
    )
    run_sweep(missing, log=quiet)
    (trial,) = trials_of(missing)
    assert trial.state.name == "FAIL" and "did you mean 'reward'" in trial.user_attrs["error"]


def test_workers_share_one_study(workspace, tmp_path):
    path = write_sweep(
        tmp_path,
        workspace,
        name="shared",
        parameters={"training.learning_rate": [0.001, 0.002, 0.003, 0.004]},
        launch={"command": FAKE_COMMAND, "env": {"FAKE_STEP_S": "0.5"}},
    )
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "grpo_sim.sweep", str(path), "--worker"],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [w.communicate(timeout=240)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    trials = trials_of(path)
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    assert sorted(t.params["training.learning_rate"] for t in complete) == [0.001, 0.002, 0.003, 0.004]
    assert len(trials) == 4, [(t.number, t.state.name, t.params) for t in trials]
    assert len({t.user_attrs["worker"] for t in trials}) >= 1
    assert not (tmp_path / "out" / "trials.csv").exists()  # workers write no report


def test_changed_sweep_definition_is_refused(workspace, tmp_path):
    path = write_sweep(tmp_path, workspace, name="changed", parameters={"training.learning_rate": [0.1]})
    run_sweep(path, log=quiet, report=False)
    write_sweep(tmp_path, workspace, name="changed", parameters={"training.learning_rate": [0.1, 0.2]})
    with pytest.raises(SweepError, match="was started with different parameters"):
        run_sweep(path, log=quiet)
    assert optuna.load_study(study_name="changed", storage=f"sqlite:///{tmp_path / 'out' / 'study.db'}").trials


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
def test_trial_of_a_silent_worker_on_another_host_is_rerun(workspace, tmp_path, monkeypatch):
    import grpo_sim.sweep.studies as sweep_module

    monkeypatch.setattr(sweep_module, "HEARTBEAT_S", 1)
    monkeypatch.setattr(sweep_module, "STALE_AFTER_S", 1)
    path = write_sweep(tmp_path, workspace, name="stale")
    sweep = load_sweep(path)
    sweep.output_dir.mkdir(parents=True)
    study = open_study(sweep)
    lost = study.ask()  # a worker elsewhere took a grid point, then went silent
    study._storage.record_heartbeat(lost._trial_id)
    lost.set_user_attr("worker", "another-host:4242:1")
    time.sleep(3)
    result = run_sweep(path, log=quiet)
    trials = trials_of(path)
    assert [t.state.name for t in trials] == ["FAIL", "COMPLETE", "COMPLETE", "COMPLETE"]
    assert trials[1].user_attrs["retry_of"] == 0 and result.counts["COMPLETE"] == 3
    assert sorted(t.params["training.learning_rate"] for t in trials[1:]) == LRS


def test_sigterm_stops_the_running_trial_and_the_rerun_repeats_it(workspace, tmp_path):
    import threading

    from grpo_sim.sweep import SweepInterrupted

    slow = {"command": FAKE_COMMAND, "env": {"FAKE_STEP_S": "20"}, "kill_grace_s": 5}
    path = write_sweep(
        tmp_path, workspace, name="stopped", parameters={"training.learning_rate": [0.1, 0.2]}, launch=slow
    )
    pid_file = tmp_path / "out" / "trials" / "trial-0000" / "fake.pid"

    def stop_when_training():
        deadline = time.time() + 60
        while not pid_file.exists() and time.time() < deadline:
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=stop_when_training, daemon=True).start()
    start = time.time()
    with pytest.raises(SweepInterrupted):
        run_sweep(path, log=quiet)
    assert time.time() - start < 30 and _dead(int(pid_file.read_text()))
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # handlers restored
    (first, retry) = trials_of(path)
    assert first.state.name == "FAIL" and first.user_attrs["interrupted"] and "SIGTERM" in first.user_attrs["error"]
    assert retry.state.name == "WAITING"
    write_sweep(
        tmp_path,
        workspace,
        name="stopped",
        parameters={"training.learning_rate": [0.1, 0.2]},
        launch={"command": FAKE_COMMAND},
    )
    result = run_sweep(path, log=quiet)
    assert result.ran == [1, 2] and result.counts["COMPLETE"] == 2
    assert [t.params for t in trials_of(path)][1:] == [{"training.learning_rate": 0.1}, {"training.learning_rate": 0.2}]


def test_objective_reads_the_eval_summary_and_the_training_log(tmp_path):
    from grpo_sim.sweep import Objective, ObjectiveError, read_objective

    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "summary.json").write_text(
        json.dumps(
            {
                "schema_version": 1,
                "accuracy_f1": 0.5,
                "consistency_e2e_exact": 0.25,
                "consistency_e2e_exact_ci": [0.1, 0.4],
                "models": {"model": {"accuracy_em": 0.125}},
            }
        )
    )
    (tmp_path / "metrics.jsonl").write_text(
        "\n".join(
            json.dumps(r)
            for r in [{"step": 1, "reward": 0.1}, {"step": 2, "reward": 0.3}, {"step": 2, "train_runtime": 4.0}]
        )
        + "\n"
    )
    mix = Objective(mix={"eval:consistency_e2e_exact": 1.0, "eval:accuracy_f1": 2.0, "train:reward": -1.0})
    value, parts = read_objective(mix, tmp_path)
    assert parts == {"eval:consistency_e2e_exact": 0.25, "eval:accuracy_f1": 0.5, "train:reward": 0.3}
    assert value == pytest.approx(0.25 + 1.0 - 0.3)
    assert read_objective(Objective(metric="eval:models.model.accuracy_em"), tmp_path)[0] == 0.125
    assert read_objective(Objective(metric="accuracy_f1"), tmp_path)[0] == 0.5  # bare: eval, then train
    assert read_objective(Objective(metric="reward"), tmp_path)[0] == 0.3
    with pytest.raises(ObjectiveError, match="did you mean 'accuracy_f1'"):
        read_objective(Objective(metric="eval:accuracy_f2"), tmp_path)
    (tmp_path / "eval" / "summary.json").unlink()
    with pytest.raises(ObjectiveError, match="evaluation.enabled"):
        read_objective(Objective(metric="eval:accuracy_f1"), tmp_path)
