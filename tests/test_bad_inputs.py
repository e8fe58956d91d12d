"""The bad-input battery: recipes, data files and command-line arguments a careless user gives.

Every case must end with a non-zero exit, no traceback, a message naming the file / line / key, and
(where cheap) the same command with the input fixed must then succeed. The commands run in-process
(typer's CliRunner); `check` and `data validate` stand in for `train` wherever they run the same code
(`check` runs the same start checks as `train`). A few real `train` runs at the end cover the
"a failed start leaves no trace, so the rerun works" rule.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Callable

import pytest
import yaml
from typer.testing import CliRunner

from grpo_sim.cli import app
from grpo_sim.data.schema import write_psets
from grpo_sim.demo.world import build_demo_dataset
from grpo_sim.runner import RESOLVED_RECIPE

from trainer_helpers import build_policy

runner = CliRunner()
RECIPE = {
    "model": {"name_or_path": "<set by the ws fixture>"},  # a directory with a config only: check never loads it
    "reward": {"similarity": "token_f1", "accuracy": {"metric": "token_f1", "weight": 1.0}},
    "training": {
        "learning_rate": 1e-3,
        "num_generations": 2,
        "per_device_train_batch_size": 6,
        "max_completion_length": 4,
        "max_steps": 1,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": [],
        "seed": 0,
        "beta": 0.0,
        "disable_tqdm": True,
    },
    "evaluation": {"enabled": False},
}


def invoke(*args) -> object:
    return runner.invoke(app, [str(a) for a in args])


def assert_clean_failure(result, *fragments: str) -> None:
    output = result.output
    assert result.exit_code != 0, output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in output, output
    for fragment in fragments:
        assert fragment in output, f"{fragment!r} not in:\n{output}"


def assert_ok(result) -> None:
    assert result.exit_code == 0, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("bad-inputs")
    train, _, _ = build_demo_dataset(6, 0, num_paraphrases=3, seed=0)
    write_psets(base / "good.jsonl", train)
    model = base / "model"
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "qwen2"}')
    recipe = {**RECIPE, "model": {"name_or_path": str(model)}, "data": {"train": str(base / "good.jsonl")}}
    (base / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    return base


def good_lines(ws: Path) -> list[str]:
    return (ws / "good.jsonl").read_text().splitlines()


def good_set(ws: Path, index: int = 0) -> dict:
    return json.loads(good_lines(ws)[index])


# ------------------------------------------------------------------------------ recipe values via --set
# (override, fragments the message must hold besides the recipe file). The fix: the same command without it.
SET_CASES = [
    ("training.learning_rat=1e-5", ["training.learning_rat", "did you mean 'learning_rate'"]),
    ("training.learning_rate=-1e-6", ["training.learning_rate", "must be > 0"]),
    ("training.learning_rate=fast", ["training.learning_rate", "'fast' is not a valid float"]),
    ("training.num_generations=0", ["training.num_generations", ">= 1"]),
    ("training.num_generations=1", ["num_generations", "advantage"]),
    ("training.per_device_train_batch_size=0", ["training.per_device_train_batch_size", ">= 1"]),
    ("training.gradient_accumulation_steps=0", ["training.gradient_accumulation_steps", ">= 1"]),
    ("training.steps_per_generation=0", ["training.steps_per_generation", ">= 1"]),
    ("training.generation_batch_size=9", ["generation_batch_size 9 is not divisible"]),
    ("training.temperature=0", ["training.temperature", "> 0"]),
    ("training.top_p=1.5", ["training.top_p", "<= 1"]),
    ("training.seed=-1", ["training.seed", ">= 0"]),
    ("training.max_steps=0", ["training.max_steps", "-1"]),
    ("training.beta=-0.1", ["training.beta", ">= 0"]),
    ("training.weight_decay=.nan", ["training.weight_decay", "nan"]),
    ("training.vllm_gpu_memory_utilization=1.5", ["training.vllm_gpu_memory_utilization", "<= 1"]),
    ("training.similarity=bleu2", ["training.similarity", "reward.similarity"]),
    ("training.num_generations=null", ["training.num_generations", "null is not allowed"]),
    ("training.deepspeed=zero9.json", ["training.deepspeed", "zero9.json does not exist"]),
    ("training.deepspeed=true", ["training.deepspeed", "got true"]),
    (
        "training.per_device_train_batch_size=16",
        ["per_device_train_batch_size 16", "not a multiple of one set", "n 3 x g 2"],
    ),
    ("evaluation.metrics=[rougeL]", ["evaluation.metrics", "'rougeL'", "rouge_l"]),
    ("evaluation.metrics=[bleu2, bleu2]", ["evaluation.metrics", "both be reported as 'bleu2'"]),
    ("evaluation.levels=[e2e, retriever]", ["evaluation.levels"]),
    ("data.prompt=rag_short_answers", ["data.prompt", "did you mean 'rag_short_answer'"]),
    ("data.prompt='Context: {context} Q: {question}'", ["data.prompt", "{context}"]),
    ("data.prompt='Q: {question'", ["data.prompt", "not a valid format string"]),
    ("data.paraphrases_per_set=5", ["data.paraphrases_per_set=5", "fewer paraphrases"]),
    ("data.max_train_sets=0", ["data.max_train_sets", "greater than or equal to 1"]),
    ("reward.similarity=blue2", ["reward.similarity", "Did you mean 'bleu2'"]),
    ("reward.similarity='bleu:n=9'", ["reward.similarity", "n must be an integer in 1..4"]),
    ("reward.accuracy.metric=f1", ["reward.accuracy.metric", "unknown similarity 'f1'"]),
    ("reward.consistency_weight=.inf", ["reward.consistency_weight", "finite"]),
    ("reward.advantage=group", ["reward.advantage", "'paraphrase', 'set' or 'batch'"]),
    ("reward.relaxed.kappa=0", ["reward.relaxed.kappa"]),
    ("model.dtype=fp8", ["model.dtype"]),
    ("model.lora.r=0", ["model.lora.r"]),
    ("model.name_or_path=./models/missing", ["model.name_or_path", "./models/missing", "does not exist"]),
    ("modle.name_or_path=x", ["modle", "did you mean 'model'"]),
    ("training=[1, 2]", ["training", "dictionary"]),
    ("data.train=missing.jsonl", ["data.train", "missing.jsonl", "does not exist"]),
]


@pytest.mark.parametrize("override, fragments", SET_CASES, ids=[c[0] for c in SET_CASES])
def test_bad_recipe_value(ws, override, fragments):
    recipe = ws / "recipe.yaml"
    assert_clean_failure(invoke("check", recipe, "--set", override), str(recipe), *fragments)
    assert_ok(invoke("check", recipe))


def test_check_reports_every_stage_at_once(ws):
    """A key typo must not hide a bad batch, a bad metric or bad data (README: all problems at once)."""
    recipe = ws / "recipe.yaml"
    result = invoke(
        "check",
        recipe,
        "--set",
        "training.learning_rat=1",
        "--set",
        "training.per_device_train_batch_size=16",
        "--set",
        "evaluation.metrics=[rougeL]",
        "--set",
        "data.eval=missing-eval.jsonl",
    )
    assert_clean_failure(
        result,
        "4 problem(s)",
        "training.learning_rat",
        "not a multiple of one set",
        "evaluation.metrics",
        "data.eval: missing-eval.jsonl does not exist",
    )


def test_check_uses_the_launch_size(ws):
    half_a_set = ("check", ws / "recipe.yaml", "--set", "training.per_device_train_batch_size=3")
    assert_clean_failure(invoke(*half_a_set), "1 process(es)", "not a multiple of one set")
    assert_clean_failure(invoke(*half_a_set, "-p", "3"), "3 process(es)", "not a multiple of one set")
    assert_ok(invoke(*half_a_set, "-p", "2"))


# ------------------------------------------------------------------------------ recipe files
def _recipe_file(ws: Path, tmp: Path, text: str | bytes) -> Path:
    path = tmp / "bad.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def _good_recipe_text(ws: Path) -> str:
    return (ws / "recipe.yaml").read_text()


RECIPE_FILE_CASES: list[tuple[str, Callable[[Path], str | bytes], list[str]]] = [
    ("yaml-syntax", lambda ws: _good_recipe_text(ws) + "\ntraining: {learning_rate: [1e-6\n", ["not valid YAML"]),
    ("a-list", lambda ws: "- model\n- data\n", ["must be a mapping", "list"]),
    ("gzip", lambda ws: gzip.compress(_good_recipe_text(ws).encode()), ["not a UTF-8 text file"]),
    (
        "missing-model",
        lambda ws: yaml.safe_dump({k: v for k, v in yaml.safe_load(_good_recipe_text(ws)).items() if k != "model"}),
        ["model: required key is missing"],
    ),
    ("extends-missing", lambda ws: "extends: nowhere.yaml\n" + _good_recipe_text(ws), ["extends 'nowhere.yaml'"]),
    ("extends-itself", lambda ws: "extends: bad.yaml\n" + _good_recipe_text(ws), ["'extends' forms a cycle"]),
    ("extends-not-a-path", lambda ws: "extends: [a, b]\n" + _good_recipe_text(ws), ["extends must be a path"]),
]


@pytest.mark.parametrize("name, content, fragments", RECIPE_FILE_CASES, ids=[c[0] for c in RECIPE_FILE_CASES])
def test_bad_recipe_file(ws, tmp_path, name, content, fragments):
    path = _recipe_file(ws, tmp_path, content(ws))
    assert_clean_failure(invoke("check", path), str(path), *fragments)
    path.write_text(_good_recipe_text(ws))
    assert_ok(invoke("check", path))


def test_recipe_path_missing_or_a_directory(ws, tmp_path):
    assert_clean_failure(invoke("check", tmp_path / "nope.yaml"), str(tmp_path / "nope.yaml"), "does not exist")
    assert_clean_failure(invoke("check", tmp_path), str(tmp_path), "is a directory")


@pytest.mark.parametrize(
    "override, fragment",
    [("training.learning_rate", "expected key.path=value"), ("training.learning_rate.x=1", "not a section")],
)
def test_bad_override_syntax(ws, override, fragment):
    assert_clean_failure(invoke("check", ws / "recipe.yaml", "--set", override), override, fragment)


# ------------------------------------------------------------------------------ data files
def _bad_json(ws):
    lines = good_lines(ws)
    lines[2] = lines[2][:-5]
    return "\n".join(lines) + "\n", [":3:", "not valid JSON"]


def _missing_field(ws):
    lines = good_lines(ws)
    row = json.loads(lines[1])
    row.pop("question")
    lines[1] = json.dumps(row)
    return "\n".join(lines) + "\n", [":2:", "field 'question'", "add it"]


def _wrong_type(ws):
    lines = good_lines(ws)
    row = json.loads(lines[3])
    row["paraphrases"][1]["paraphrase_id"] = "one"
    lines[3] = json.dumps(row)
    return "\n".join(lines) + "\n", [":4:", "paraphrases[1].paraphrase_id"]


def _duplicate_ids(ws):
    lines = good_lines(ws)
    return "\n".join(lines + [lines[0]]) + "\n", [":7:", "duplicate set_id"]


def _duplicate_paraphrase_ids(ws):
    lines = good_lines(ws)
    row = json.loads(lines[0])
    row["paraphrases"][1]["paraphrase_id"] = row["paraphrases"][0]["paraphrase_id"]
    lines[0] = json.dumps(row)
    return "\n".join(lines) + "\n", [":1:", "paraphrase_id values must be unique"]


def _array_row(ws):
    lines = good_lines(ws)
    lines.insert(1, "[1, 2, 3]")
    return "\n".join(lines) + "\n", [":2:", "expected a JSON object, got list"]


def _unknown_field(ws):
    lines = good_lines(ws)
    row = json.loads(lines[0])
    row["paraphrase"] = []
    lines[0] = json.dumps(row)
    return "\n".join(lines) + "\n", [":1:", "field 'paraphrase'", "unknown field"]


def _empty(ws):
    return "\n\n", ["holds no paraphrase sets"]


def _gzip(ws):
    return gzip.compress((ws / "good.jsonl").read_bytes()), ["gzip-compressed", "decompress"]


def _latin1(ws):
    lines = good_lines(ws)
    return ("\n".join(lines[:4]) + "\n").encode() + "caf\u00e9\n".encode("latin-1"), [":5:", "not UTF-8"]


def _nul_bytes(ws):
    return (ws / "good.jsonl").read_bytes() + b"\x00\x00\x00\n", [":7:", "NUL"]


DATA_CASES = [
    _bad_json,
    _missing_field,
    _wrong_type,
    _duplicate_ids,
    _duplicate_paraphrase_ids,
    _array_row,
    _unknown_field,
    _empty,
    _gzip,
    _latin1,
    _nul_bytes,
]


def _write(path: Path, content: str | bytes) -> None:
    path.write_bytes(content if isinstance(content, bytes) else content.encode())


@pytest.mark.parametrize("make", DATA_CASES, ids=[f.__name__.strip("_") for f in DATA_CASES])
def test_bad_data_file(ws, tmp_path, make):
    """`data validate` and `check` (the start of `train`) name the file and line; the fixed file passes both."""
    content, fragments = make(ws)
    data = tmp_path / "sets.jsonl"
    _write(data, content)
    assert_clean_failure(invoke("data", "validate", data), str(data), *fragments)
    check = ("check", ws / "recipe.yaml", "--set", f"data.train={data}")
    assert_clean_failure(invoke(*check), "data.train", str(data), *fragments)
    _write(data, (ws / "good.jsonl").read_bytes())
    assert_ok(invoke("data", "validate", data))
    assert_ok(invoke(*check))


def _single_paraphrase(ws):
    lines = good_lines(ws)
    row = json.loads(lines[2])
    row["paraphrases"] = row["paraphrases"][:1]
    lines[2] = json.dumps(row)
    return "\n".join(lines) + "\n", ["single paraphrase", row["set_id"]]


def _uneven(ws):
    lines = good_lines(ws)
    row = json.loads(lines[4])
    row["paraphrases"] = row["paraphrases"][:2]
    lines[4] = json.dumps(row)
    return "\n".join(lines) + "\n", ["different numbers of paraphrases", "1 sets with 2", "5 sets with 3"]


def _too_few_sets(ws):
    return "\n".join(good_lines(ws)[:1]) + "\n", ["holds 1 set(s)", "takes 2 whole sets"]


@pytest.mark.parametrize(
    "make", [_single_paraphrase, _uneven, _too_few_sets], ids=["single-paraphrase", "uneven", "too-few-sets"]
)
def test_data_that_is_valid_json_but_cannot_train(ws, tmp_path, make):
    """Schema-valid files the trainer cannot use: `check` says why before anything else (no batch advice)."""
    content, fragments = make(ws)
    data = tmp_path / "sets.jsonl"
    _write(data, content)
    check = (
        "check",
        ws / "recipe.yaml",
        "--set",
        f"data.train={data}",
        "--set",
        "training.per_device_train_batch_size=12",
    )
    result = invoke(*check)
    assert_clean_failure(result, "data.train", *fragments)
    assert "nearest valid" not in result.output
    _write(data, (ws / "good.jsonl").read_bytes())
    assert_ok(invoke(*check))


def test_data_paths_that_are_not_files(ws, tmp_path):
    assert_clean_failure(invoke("data", "validate", tmp_path), str(tmp_path), "give a JSONL file")
    assert_clean_failure(invoke("data", "validate", tmp_path / "none.jsonl"), "none.jsonl", "file not found")
    assert_clean_failure(
        invoke("check", ws / "recipe.yaml", "--set", f"data.train={tmp_path}"),
        "data.train",
        str(tmp_path),
        "give a JSONL file",
    )


# ------------------------------------------------------------------------------ command-line arguments
def test_bad_command_line_arguments(ws, tmp_path):
    recipe = ws / "recipe.yaml"
    assert_clean_failure(invoke("check", recipe, "--num-processes", "0"), "--num-processes")
    assert_clean_failure(invoke("check", recipe, "--sett", "x=1"), "No such option", "--sett")
    assert_clean_failure(
        invoke("plan", recipe, "-p", "3", "--set", "training.per_device_train_batch_size=3"),
        "not a multiple of one set",
    )
    assert_clean_failure(
        invoke("data", "import", "squad", tmp_path / "x.json", "--out", tmp_path / "o.jsonl"), "unknown dataset 'squad'"
    )
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    assert_clean_failure(invoke("train", recipe, "-o", not_a_dir), str(not_a_dir), "not a directory")
    assert_clean_failure(
        invoke("train", recipe, "-o", tmp_path / "run", "--resume", tmp_path / "no-checkpoint"),
        "--resume",
        "no such checkpoint directory",
    )
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------------------ train: a failed start leaves no trace
@pytest.fixture(scope="module")
def train_ws(ws, tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("train")
    policy = build_policy(base / "policy")
    recipe = {**RECIPE, "model": {"name_or_path": policy}, "data": {"train": str(base / "train.jsonl")}}
    (base / "tiny.yaml").write_text(yaml.safe_dump(recipe))
    return base


START_FAILURES = [
    ("bad-json", lambda ws: _bad_json(ws)[0], [], ["not valid JSON"]),
    ("missing-field", lambda ws: _missing_field(ws)[0], [], ["field 'question'"]),
    ("single-paraphrase", lambda ws: _single_paraphrase(ws)[0], [], ["single paraphrase"]),
    ("duplicate-ids", lambda ws: _duplicate_ids(ws)[0], [], ["duplicate set_id"]),
    ("uneven", lambda ws: _uneven(ws)[0], [], ["different numbers of paraphrases"]),
    ("empty", lambda ws: "", [], ["holds no paraphrase sets"]),
    ("missing-file", None, [], ["does not exist"]),
    (
        "batch",
        lambda ws: "\n".join(good_lines(ws)) + "\n",
        ["--set", "training.per_device_train_batch_size=4"],
        ["not a multiple of one set"],
    ),
    (
        "resume",
        lambda ws: "\n".join(good_lines(ws)) + "\n",
        ["--resume", "/no/such/checkpoint-3"],
        ["no such checkpoint directory"],
    ),
    (
        "prompt",
        lambda ws: "\n".join(good_lines(ws)) + "\n",
        ["--set", "data.prompt=rag_short_answers"],
        ["data.prompt"],
    ),
]


@pytest.mark.parametrize("name, content, extra, fragments", START_FAILURES, ids=[c[0] for c in START_FAILURES])
def test_failed_train_start_leaves_no_trace(ws, train_ws, tmp_path, name, content, extra, fragments):
    data = train_ws / "train.jsonl"
    data.unlink(missing_ok=True)
    if content is not None:
        _write(data, content(ws))
    out = tmp_path / "run"
    assert_clean_failure(invoke("train", train_ws / "tiny.yaml", "-o", out, *extra), *fragments)
    assert not out.exists(), sorted(p.name for p in out.iterdir())


@pytest.mark.slow
def test_rerun_after_a_failed_start_trains(ws, train_ws, tmp_path):
    """Bad data first, then the fixed file into the same directory: the rerun is not refused."""
    data = train_ws / "train.jsonl"
    _write(data, _missing_field(ws)[0])
    out = tmp_path / "run"
    assert_clean_failure(invoke("train", train_ws / "tiny.yaml", "-o", out), "field 'question'")
    _write(data, (ws / "good.jsonl").read_bytes())
    assert_ok(invoke("train", train_ws / "tiny.yaml", "-o", out))
    assert (out / "final" / "model.safetensors").exists()


@pytest.mark.slow
def test_rerun_after_a_failure_past_the_first_write_trains(ws, train_ws, tmp_path):
    """A model that cannot load fails after the run directory was written; the fixed rerun reuses it."""
    _write(train_ws / "train.jsonl", (ws / "good.jsonl").read_bytes())
    out = tmp_path / "run"
    unloadable = tmp_path / "unloadable"  # passes the start checks (a directory with a config), fails to load
    unloadable.mkdir()
    (unloadable / "config.json").write_text('{"model_type": "no-such-architecture"}')
    result = invoke("train", train_ws / "tiny.yaml", "-o", out, "--set", f"model.name_or_path={unloadable}")
    assert_clean_failure(result, "model.name_or_path")
    assert sorted(p.name for p in out.iterdir()) == [RESOLVED_RECIPE]
    assert_ok(invoke("train", train_ws / "tiny.yaml", "-o", out))
    assert (out / "final" / "model.safetensors").exists()
    # a directory that trained is still protected
    assert_clean_failure(invoke("train", train_ws / "tiny.yaml", "-o", out), "is not empty", "--resume auto")
