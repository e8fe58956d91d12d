"""The bad-input battery: recipes, data files and command-line arguments a careless user gives.

Every case must end with a non-zero exit, no traceback, a message naming the file / line / key, and
(where cheap) the same command with the input fixed must then succeed. The commands run in-process
(typer's CliRunner); `check` and `data validate` stand in for `train` wherever they run the same code
(`check` runs the same start checks as `train`). A few real `train` runs at the end cover the
"a failed start leaves no trace, so the rerun works" rule.

The second half covers the surfaces of issue #23 (and #22 item 4): YAML keys given twice, dtype aliases, one setting
given in two places, the model's location, columns named as written, files mixing sets and prompt rows, empty saved
datasets, user reward code that fails to import, raises or returns what TRL cannot use, the wrong kind of checkpoint,
and the one list of start checks that `check` and `train` share.
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


# ================================================================== the new surfaces (issue #23, #22 item 4)
# ------------------------------------------------------------------------------ YAML itself: a key given twice
def _twice(ws: Path, section_line: str, again: str) -> str:
    """The good recipe with ``again`` (a line) put right after ``section_line``."""
    lines = _good_recipe_text(ws).splitlines()
    k = lines.index(section_line)
    return "\n".join([*lines[: k + 1], again, *lines[k + 1 :]]) + "\n"


DUPLICATE_KEY_CASES: list[tuple[str, Callable[[Path], str], str, str]] = [
    # (name, recipe text, the key, a fragment of the repeated line)
    ("nested-key", lambda ws: _twice(ws, "training:", "  learning_rate: 0.5"), "learning_rate", "learning_rate"),
    (
        "top-level-section",
        lambda ws: _good_recipe_text(ws) + "evaluation:\n  enabled: true\n",
        "evaluation",
        "evaluation",
    ),
    (
        "top-level-rewards",
        lambda ws: _good_recipe_text(ws) + "rewards:\n- type: consistency\nrewards:\n- type: agreement\n",
        "rewards",
        "rewards",
    ),
    ("flow-mapping", lambda ws: _good_recipe_text(ws) + "sft: {seed: 0, seed: 1}\n", "seed", "sft:"),
    (
        "inside-a-reward-term",
        lambda ws: _good_recipe_text(ws) + "rewards:\n- type: consistency\n  weight: 1.0\n  weight: 2.0\n",
        "weight",
        "weight",
    ),
    ("model-key", lambda ws: _twice(ws, "model:", "  name_or_path: other-org/other-model"), "name_or_path", "name_or"),
]


@pytest.mark.parametrize("name, content, key, fragment", DUPLICATE_KEY_CASES, ids=[c[0] for c in DUPLICATE_KEY_CASES])
def test_a_key_given_twice_is_refused_naming_both_lines(ws, tmp_path, name, content, key, fragment):
    text = content(ws)
    path = _recipe_file(ws, tmp_path, text)
    hits = [k for k, line in enumerate(text.splitlines(), start=1) if fragment in line]
    first, second = (hits[-2], hits[-1]) if len(hits) > 1 else (hits[-1], None)  # the last two: the repeated key
    expected = [str(path), f"key {key!r} is given twice"]
    if second is not None:
        expected += [f"line {second}", f"first at line {first}"]
    assert_clean_failure(invoke("check", path), *expected)


def test_duplicate_keys_in_every_yaml_a_user_writes(ws, tmp_path):
    """extends bases, trl_config files, sweep files and --set values go through the same loader."""
    base = tmp_path / "base.yaml"
    base.write_text("training:\n  seed: 0\n  seed: 1\n")
    recipe = tmp_path / "child.yaml"
    recipe.write_text("extends: base.yaml\n" + _good_recipe_text(ws))
    assert_clean_failure(invoke("check", recipe), str(base), "key 'seed' is given twice", "line 3", "first at line 2")

    flat = tmp_path / "grpo.yaml"
    flat.write_text("learning_rate: 1.0e-6\nbeta: 0.0\nlearning_rate: 0.5\n")
    recipe.write_text("trl_config: grpo.yaml\n" + _good_recipe_text(ws))
    assert_clean_failure(invoke("check", recipe), str(flat), "key 'learning_rate' is given twice", "line 3")

    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(
        f"base_recipe: {ws / 'recipe.yaml'}\nn_trials: 2\nn_trials: 3\n"
        "parameters:\n  training.learning_rate: {type: float, low: 1.0e-6, high: 1.0e-4, log: true}\n"
    )
    assert_clean_failure(invoke("sweep", sweep, "--report"), str(sweep), "key 'n_trials' is given twice", "line 3")

    assert_clean_failure(
        invoke("check", ws / "recipe.yaml", "--set", "training={seed: 0, seed: 1}"),
        "--set",
        "key 'seed' is given twice",
    )


def test_yaml_merge_keys_are_not_duplicates(ws, tmp_path):
    """``<<: *anchor`` followed by an override is YAML's way of reusing a mapping, not a mistake."""
    text = _good_recipe_text(ws) + "sft: &base {seed: 0, epochs: 1}\n"
    path = _recipe_file(ws, tmp_path, text.replace("sft: &base", "x-base: &base") + "sft:\n  <<: *base\n  seed: 3\n")
    result = invoke("check", path)
    assert "is given twice" not in result.output


# ------------------------------------------------------------------------------ dtype names
@pytest.mark.parametrize(
    "override, resolved",
    [
        ("model.dtype=bf16", "bfloat16"),
        ("model.dtype=fp16", "float16"),
        ("model.dtype=fp32", "float32"),
        ("model.dtype=torch.bfloat16", "bfloat16"),
        ("model.model_init_kwargs={dtype: bf16}", "bfloat16"),
        ("model.model_init_kwargs={torch_dtype: half}", "float16"),
    ],
)
def test_dtype_aliases_are_accepted_and_resolved(ws, override, resolved):
    result = invoke("check", ws / "recipe.yaml", "--set", override)
    assert_ok(result)
    shown = yaml.safe_load(result.stdout.split(f"{ws / 'recipe.yaml'}: valid")[0])
    assert shown["model"]["dtype"] == resolved and "dtype" not in shown["model"]["model_init_kwargs"]


DTYPE_CASES = [
    ("model.dtype=bf8", ["model.dtype", "(got 'bf8')", "aliases: bf16"]),
    ("model.model_init_kwargs={dtype: bf8}", ["model", "model_init_kwargs.dtype", "unknown dtype 'bf8'"]),
    ("model.model_init_kwargs={dtype: 16}", ["model_init_kwargs.dtype", "must be a dtype name"]),
]


@pytest.mark.parametrize("override, fragments", DTYPE_CASES, ids=[c[0] for c in DTYPE_CASES])
def test_bad_dtype_refused_at_check(ws, override, fragments):
    assert_clean_failure(invoke("check", ws / "recipe.yaml", "--set", override), *fragments)


def test_eval_dtype_typo_refused_before_loading(ws, tmp_path):
    data = ws / "good.jsonl"
    result = invoke("eval", ws / "model", data, "--dtype", "bf17", "-o", tmp_path / "eval")
    assert_clean_failure(result, "--dtype", "unknown dtype 'bf17'")


def test_load_policy_reads_dtype_aliases(tmp_path):
    import torch

    from grpo_sim.models.loading import load_policy

    model, _ = load_policy(build_policy(tmp_path / "policy"), dtype="bf16")
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}


# ------------------------------------------------------------------------------ two sources for one setting
TWO_SOURCE_CASES = [
    ("sft.args={learning_rate: 0.5}", ["sft.args", "'learning_rate'", "set sft.learning_rate instead"]),
    ("sft.args={per_device_train_batch_size: 4}", ["sft.args", "set sft.batch_size instead"]),
    ("sft.args={num_train_epochs: 2}", ["sft.args", "set sft.epochs instead"]),
    ("sft.args={seed: 3}", ["sft.args", "set sft.seed instead"]),
    ("sft.args={output_dir: /tmp/x}", ["sft.args", "--output-dir or sft.output_dir"]),
    ("sft.args={report_to: [wandb]}", ["sft.args", "training.report_to"]),
    (
        "model.model_init_kwargs={dtype: bfloat16, revision: v2}",
        ["model_init_kwargs.revision", "model.revision"],
    ),
    ("model.model_init_kwargs={attn_implementation: sdpa}", ["model_init_kwargs.attn_implementation"]),
]


@pytest.mark.parametrize("override, fragments", TWO_SOURCE_CASES, ids=[c[0] for c in TWO_SOURCE_CASES])
def test_one_setting_given_in_two_places_is_refused(ws, override, fragments):
    base = ["--set", "model.revision=v1", "--set", "model.attn_implementation=eager"]
    assert_clean_failure(invoke("check", ws / "recipe.yaml", *base, "--set", override), *fragments)


def test_model_dtype_in_two_places_must_agree(ws):
    recipe = ws / "recipe.yaml"
    both = ("--set", "model.dtype=fp32", "--set", "model.model_init_kwargs={dtype: bf16}")
    assert_clean_failure(invoke("check", recipe, *both), "model_init_kwargs.dtype is 'bfloat16'", "model.dtype")
    assert_ok(invoke("check", recipe, "--set", "model.dtype=bf16", "--set", "model.model_init_kwargs={dtype: bf16}"))


def test_every_sft_key_is_the_only_source_of_its_sft_config_field(tmp_path):
    """By construction: every sft key that is not about the run (model, output_dir, args) sets one SFTConfig field
    through SFT_CONFIG_FIELDS, and sft.args refuses that field."""
    from grpo_sim.recipe import parse_recipe
    from grpo_sim.recipe.schema import SFT_CONFIG_FIELDS, SFTSettings
    from grpo_sim.sft import sft_config

    assert set(SFTSettings.model_fields) - {"model", "output_dir", "args"} == set(SFT_CONFIG_FIELDS)
    base = {"model": {"name_or_path": "m"}, "data": {"train": "t.jsonl"}}
    recipe = parse_recipe({**base, "sft": {"learning_rate": 1e-5, "batch_size": 3, "epochs": 2}})
    config = sft_config(recipe, tmp_path / "sft")
    for key, field in SFT_CONFIG_FIELDS.items():
        assert getattr(config, field) == getattr(recipe.sft, key), key
        with pytest.raises(ValueError, match=f"sft.args.*{field!r}.*set sft.{key} instead"):
            parse_recipe({**base, "sft": {"args": {field: getattr(recipe.sft, key)}}})


# ------------------------------------------------------------------------------ model path or hub id, at check
def _file_model(ws: Path, tmp: Path) -> str:
    (tmp / "model.safetensors").write_text("x")
    return str(tmp / "model.safetensors")


def _dir_without_config(ws: Path, tmp: Path) -> str:
    (tmp / "weights").mkdir()
    (tmp / "weights" / "model.safetensors").write_text("x")
    return str(tmp / "weights")


MODEL_CASES: list[tuple[str, Callable[[Path, Path], str], list[str]]] = [
    ("relative-path", lambda ws, tmp: "runs/missing-sft/final", ["runs/missing-sft/final", "no such directory"]),
    ("absolute-path", lambda ws, tmp: str(tmp / "nowhere"), ["nowhere", "does not exist", "no such directory"]),
    ("home-path", lambda ws, tmp: "~/no-such-model-dir-xyz", ["no-such-model-dir-xyz", "no such directory"]),
    ("not-a-hub-id", lambda ws, tmp: "org/na me", ["org/na me", "no such directory"]),
    ("a-file", _file_model, ["model.safetensors", "is a file"]),
    ("no-config", _dir_without_config, ["weights", "has no config.json"]),
    ("uncached-hub-id", lambda ws, tmp: "no-such-org/no-such-model", ["HF_HUB_OFFLINE", "local Hugging Face cache"]),
]


@pytest.mark.parametrize("name, model, fragments", MODEL_CASES, ids=[c[0] for c in MODEL_CASES])
def test_model_that_cannot_load_is_refused_at_check(ws, tmp_path, name, model, fragments):
    result = invoke("check", ws / "recipe.yaml", "--set", f"model.name_or_path={model(ws, tmp_path)}")
    assert_clean_failure(result, "model.name_or_path", *fragments)
    assert "Repo id must" not in result.output


def test_hub_id_in_the_local_cache_passes_offline(ws, tmp_path, monkeypatch):
    from huggingface_hub import constants

    snapshot = tmp_path / "hub" / "models--cached-org--cached-model" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("abc123")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    assert_ok(invoke("check", ws / "recipe.yaml", "--set", "model.name_or_path=cached-org/cached-model"))
    result = invoke(
        "check", ws / "recipe.yaml", "--set", "model.name_or_path=cached-org/cached-model", "--set", "model.revision=v9"
    )
    assert_clean_failure(result, "at revision 'v9'")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # online: a hub id is left to the hub
    assert_ok(invoke("check", ws / "recipe.yaml", "--set", "model.name_or_path=other-org/not-cached"))


# ------------------------------------------------------------------------------ columns named as written
def _prompt_rows_file(tmp: Path, rows: list[dict]) -> Path:
    path = tmp / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


PROMPT_ROWS = [{"question": f"what is {k}?", "answer_text": f"{k}", "topic": "maths"} for k in range(6)]


def _rows_check(ws: Path, tmp: Path, *overrides: str):
    data = _prompt_rows_file(tmp, PROMPT_ROWS)
    sets = ["--set", f"data.train={data}", "--set", "data.columns={prompt: question, answers: answer_text}"]
    sets += [
        "--set",
        "reward={}",
        "--set",
        "rewards=[{type: reference}]",
        "--set",
        "training.per_device_train_batch_size=2",
    ]
    for override in overrides:
        sets += ["--set", override]
    return ("check", ws / "recipe.yaml", *sets)


COLUMN_CASES = [
    # (overrides, fragments) on ordinary rows {question, answer_text, topic}
    (
        ["data.columns={prompt: question, answers: answer}"],
        ["data.columns.answers", "'answer'", "answer_text, question, topic"],
    ),
    (["data.columns={prompt: question, answers: answers}"], ["data.columns.answers", "'answers'", "answer_text"]),
    (["rewards=[{type: reference, column: solution}]"], ["rewards[0]", "'solution'", "'topic'"]),
    (["data.columns={prompt: query, answers: answer_text}"], ["data.columns.prompt", "no prompt column 'query'"]),
]


@pytest.mark.parametrize("overrides, fragments", COLUMN_CASES, ids=[c[0][0] for c in COLUMN_CASES])
def test_columns_named_as_written(ws, tmp_path, overrides, fragments):
    assert_clean_failure(invoke(*_rows_check(ws, tmp_path, *overrides)), *fragments)
    assert_ok(invoke(*_rows_check(ws, tmp_path)))


@pytest.mark.parametrize("column", ["solution", "gold", "answer"])
def test_reference_column_absent_from_paraphrase_sets_caught_at_check(ws, column):
    """On paraphrase sets `check` said valid and `train` refused after loading the model."""
    override = f"rewards=[{{type: consistency}}, {{type: reference, column: {column}}}]"
    result = invoke("check", ws / "recipe.yaml", "--set", "reward={}", "--set", override)
    assert_clean_failure(result, "1 problem(s)", "rewards[1]", repr(column), "'answers'", "'set_id'")


# ------------------------------------------------------------------------------ data read silently wrong
def _mixed(tmp: Path, ws: Path, prompts_first: bool) -> Path:
    sets = good_lines(ws)
    prompts = [json.dumps({"prompt": f"q{k}", "answers": ["a"]}) for k in range(3)]
    path = tmp / "mixed.jsonl"
    path.write_text("\n".join(prompts + sets if prompts_first else sets + prompts) + "\n")
    return path


@pytest.mark.parametrize("prompts_first", [False, True], ids=["sets-first", "prompts-first"])
@pytest.mark.parametrize("split", ["train", "eval"])
def test_file_mixing_sets_and_prompt_rows_is_refused(ws, tmp_path, prompts_first, split):
    path = _mixed(tmp_path, ws, prompts_first)
    sets_rows, prompt_rows = ("4, 5, 6, 7, 8", "1, 2, 3") if prompts_first else ("1, 2, 3, 4, 5", "7, 8, 9")
    result = invoke("check", ws / "recipe.yaml", "--set", f"data.{split}={path}")
    assert_clean_failure(result, f"data.{split}", "mixes paraphrase-set rows", sets_rows, prompt_rows)


def test_empty_saved_dataset_is_refused_clearly(ws, tmp_path):
    import datasets

    empty = datasets.Dataset.from_dict({"prompt": [], "answers": []})
    empty.save_to_disk(str(tmp_path / "empty"))
    result = invoke("check", ws / "recipe.yaml", "--set", f"data.train=hf:{tmp_path / 'empty'}")
    assert_clean_failure(result, "data.train", "the dataset holds no rows", "save_to_disk")
    full = datasets.Dataset.from_dict({"prompt": ["q"], "answers": ["a"]})
    datasets.DatasetDict({"train": full, "validation": empty}).save_to_disk(str(tmp_path / "dict"))
    result = invoke("check", ws / "recipe.yaml", "--set", f"data.train=hf:{tmp_path / 'dict'}")
    assert_clean_failure(result, "data.train", "split 'validation' holds no rows")


# ------------------------------------------------------------------------------ user reward code that fails to import
REWARD_MODULES = [
    # (name, module source, fragments besides the module name and its file)
    ("syntax-error", "def f(completions, **kw):\n    return [1.0 for c in completions\n", ["SyntaxError", ":2"]),
    ("json-at-module-level", "import json\nTABLE = json.loads('{bad json}')\n", ["JSONDecodeError", ":2", "Expecting"]),
    ("missing-dependency", "import numpy\nimport no_such_dependency_xyz\n", ["no_such_dependency_xyz", ":2"]),
    ("name-error", "x = 1\ny = undefined_name + 1\n", ["NameError", "undefined_name", ":2"]),
    ("file-not-found", "TABLE = open('no-such-table.csv').read()\n", ["FileNotFoundError", ":1"]),
]


@pytest.mark.parametrize("name, source, fragments", REWARD_MODULES, ids=[c[0] for c in REWARD_MODULES])
def test_reward_module_that_fails_to_import_is_named(ws, tmp_path, monkeypatch, name, source, fragments):
    module = "user_rewards_" + name.replace("-", "_")
    (tmp_path / f"{module}.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    term = f"rewards=[{{type: consistency}}, {{type: function, function: '{module}:f'}}]"
    result = invoke("check", ws / "recipe.yaml", "--set", "reward={}", "--set", term)
    assert_clean_failure(
        result,
        "1 problem(s)",  # once, not again in GRPOConfig's words
        "rewards[1].function",
        f"importing module {module!r} failed",
        str(tmp_path / f"{module}.py"),
        *fragments,
    )


# ------------------------------------------------------------------------------ user reward code that fails in training
def _call(function, *, returns=None, completions=3, step=4):
    """A function term called as TRL calls it (trainer_state is the trainer's state: global_step = steps done)."""
    from types import SimpleNamespace

    from grpo_sim.trainer import _FunctionReward

    wrapped = _FunctionReward("my_term", function, {}, "user_module:my_reward")
    return wrapped(
        prompts=["p"] * completions,
        completions=["c"] * completions,
        completion_ids=[[1]] * completions,
        trainer_state=SimpleNamespace(global_step=step - 1),
        answers=[None] * completions,
    )


BAD_RETURNS = [
    ("one-float", lambda completions, **kw: 0.5, ["returned float", "list of 3 floats"]),
    ("too-few", lambda completions, **kw: [0.5], ["returned 1 values for 3 completions"]),
    ("a-string-inside", lambda completions, **kw: [0.5, "high", 1.0], ["str 'high' at position 1", "not a number"]),
    ("a-dict", lambda completions, **kw: {"reward": 1.0}, ["returned dict"]),
    ("a-string", lambda completions, **kw: "0.5", ["returned str"]),
    ("a-bool-inside", lambda completions, **kw: [True, 0.0, 1.0], ["bool", "position 0"]),
    ("none", lambda completions, **kw: None, ["returned NoneType"]),
]


@pytest.mark.parametrize("name, function, fragments", BAD_RETURNS, ids=[c[0] for c in BAD_RETURNS])
def test_reward_return_values_are_checked_against_trls_contract(name, function, fragments):
    from grpo_sim.reward_terms import RewardFunctionError

    with pytest.raises(RewardFunctionError) as err:
        _call(function)
    for fragment in ["reward term 'my_term'", "user_module:my_reward", "at step 4", *fragments]:
        assert fragment in str(err.value), str(err.value)


def test_reward_values_trl_accepts_pass_unchanged():
    import numpy as np

    assert _call(lambda completions, **kw: [1, None, 0.25]) == [1.0, None, 0.25]
    assert _call(lambda completions, **kw: np.array([0.5, 0.0, 1.0], dtype=np.float32)) == [0.5, 0.0, 1.0]
    assert _call(lambda completions, **kw: (0.0, 0.0, 0.0)) == [0.0, 0.0, 0.0]


def test_reward_function_that_raises_names_term_function_step_and_frame():
    from grpo_sim.reward_terms import RewardFunctionError

    def my_reward(completions, answers, **kwargs):
        rows = [{"answer": a} for a in answers]
        return [float(row["solution"] == c) for row, c in zip(rows, completions)]  # the user's bug

    with pytest.raises(RewardFunctionError) as err:
        _call(my_reward, step=7)
    message = str(err.value)
    for fragment in ["reward term 'my_term'", "user_module:my_reward", "at step 7", "KeyError: 'solution'"]:
        assert fragment in message, message
    line = next(k for k, text in enumerate(Path(__file__).read_text().splitlines(), 1) if "# the user's bug" in text)
    assert f"{__file__}:{line} " in message and 'row["solution"]' in message, message
    assert "GRPO_SIM_DEBUG=1" in message


# ------------------------------------------------------------------------------ the wrong kind of checkpoint
def _checkpoint(run: Path, config, recipe: dict | None = None, step: int = 2) -> Path:
    """What a Trainer writes at a save (trainer_state.json, training_args.bin) and our completion marker; the run
    directory's recipe.resolved.yaml when ``recipe`` is given."""
    import torch

    from grpo_sim.runner import COMPLETE_MARKER

    path = run / f"checkpoint-{step}"
    path.mkdir(parents=True)
    (path / "trainer_state.json").write_text(json.dumps({"global_step": step, "log_history": []}))
    torch.save(config, path / "training_args.bin")
    (path / COMPLETE_MARKER).write_text(json.dumps({"step": step}))
    if recipe is not None:
        (run / RESOLVED_RECIPE).write_text(yaml.safe_dump(recipe))
    return path


def _sft_config(tmp: Path):
    from trl import SFTConfig

    return SFTConfig(output_dir=str(tmp / "sft"), use_cpu=True, bf16=False, report_to=[])


def _grpo_config(tmp: Path):
    from grpo_sim.trainer import PSGRPOConfig

    return PSGRPOConfig(output_dir=str(tmp / "grpo"), use_cpu=True, bf16=False, report_to=[])


def test_sft_checkpoint_given_to_train_resume_is_refused(ws, tmp_path):
    checkpoint = _checkpoint(tmp_path / "warm-sft", _sft_config(tmp_path))
    out = tmp_path / "run"
    result = invoke("train", ws / "recipe.yaml", "-o", out, "--resume", checkpoint)
    assert_clean_failure(result, str(checkpoint), "SFT", "use it as model.name_or_path to warm-start")
    assert not out.exists()


def test_grpo_checkpoint_given_to_sft_resume_is_refused(ws, tmp_path):
    checkpoint = _checkpoint(tmp_path / "grpo-run", _grpo_config(tmp_path))
    result = invoke("sft", ws / "recipe.yaml", "-o", tmp_path / "sft", "--resume", checkpoint)
    assert_clean_failure(result, str(checkpoint), "GRPO", "model.name_or_path")


def test_resume_with_another_model_or_other_reward_terms_is_refused(ws, tmp_path):
    from grpo_sim.recipe import load_recipe

    recipe = load_recipe(ws / "recipe.yaml")
    saved = recipe.resolved_dict()
    run = tmp_path / "run"
    _checkpoint(run, _grpo_config(tmp_path), {**saved, "model": {**saved["model"], "name_or_path": "org/other"}})
    result = invoke("train", ws / "recipe.yaml", "-o", run, "--resume", "auto")
    assert_clean_failure(result, "that run trained model.name_or_path 'org/other'", "resume with the recipe")

    reward = {**saved["reward"], "accuracy": {**saved["reward"]["accuracy"], "weight": 2.0}}
    (run / RESOLVED_RECIPE).write_text(yaml.safe_dump({**saved, "reward": reward}))
    result = invoke("train", ws / "recipe.yaml", "-o", run, "--resume", "auto")
    assert_clean_failure(
        result, "other reward terms", "accuracy (reference, weight 2.0)", "accuracy (reference, weight 1.0)"
    )


def test_resume_target_of_the_right_kind_and_recipe_passes_the_start_checks(ws, tmp_path):
    from grpo_sim.recipe import load_recipe
    from grpo_sim.runner import cpu_defaults, start_problems

    recipe = load_recipe(ws / "recipe.yaml")
    run = tmp_path / "run"
    checkpoint = _checkpoint(run, _grpo_config(tmp_path), recipe.resolved_dict())
    decisions, problems = start_problems(cpu_defaults(recipe), output_dir=run, resume="auto")
    assert problems == [] and decisions.checkpoint == str(checkpoint)


# ------------------------------------------------------------------------------ check runs what train runs
def test_check_runs_every_start_check_that_train_runs(ws, train_ws, tmp_path, monkeypatch):
    """train's start checks are recorded up to the model load (the first thing that needs weights); check must have
    run each of them, so nothing check calls valid fails at start for a reason it could have seen."""
    import grpo_sim.runner.training as training
    from grpo_sim.runner import start

    ran: list[str] = []

    def recorded(check):
        def run(ctx):
            ran.append(check.__name__)
            return check(ctx)

        return run

    class WeightsNeeded(ValueError):
        pass

    def no_weights(*args, **kwargs):
        raise WeightsNeeded("stop here: every start check that needs no weights has run")

    names = [check.__name__ for check in start.START_CHECKS]
    monkeypatch.setattr(start, "START_CHECKS", [recorded(check) for check in start.START_CHECKS])
    monkeypatch.setattr(training, "load_model", no_weights)
    _write(train_ws / "train.jsonl", (ws / "good.jsonl").read_bytes())
    assert_clean_failure(invoke("train", train_ws / "tiny.yaml", "-o", tmp_path / "run"), "stop here")
    by_train, ran[:] = list(ran), []
    assert by_train == names  # train runs the whole list, once
    assert_ok(invoke("check", train_ws / "tiny.yaml"))
    assert set(by_train) <= set(ran), sorted(set(by_train) - set(ran))


def test_a_start_check_is_one_line_to_add(ws, monkeypatch):
    """A check appended to START_CHECKS is run by check (and so by train), with the recipe and launch at hand."""
    from grpo_sim.runner import start

    def check_always_refuses(ctx):
        ctx.problems.append(f"model.name_or_path: refused for {ctx.decisions.num_processes} process(es)")

    monkeypatch.setattr(start, "START_CHECKS", [*start.START_CHECKS, check_always_refuses])
    assert_clean_failure(invoke("check", ws / "recipe.yaml", "-p", "2"), "refused for 2 process(es)")


# ------------------------------------------------------------------------------ reward code failing in a real run
FAILING_REWARD = """
def after_first_step(completions, trainer_state, **kwargs):
    if trainer_state.global_step >= 1:
        table = {}
        return [table["solution"] for _ in completions]  # fails at step 2
    return [0.0] * len(completions)
"""


def test_reward_function_failing_in_training_names_everything_and_the_checkpoint(
    ws, train_ws, tmp_path, monkeypatch, capsys
):
    (tmp_path / "user_step_rewards.py").write_text(FAILING_REWARD)
    monkeypatch.syspath_prepend(str(tmp_path))
    _write(train_ws / "train.jsonl", (ws / "good.jsonl").read_bytes())
    out = tmp_path / "run"
    args = [
        "train",
        train_ws / "tiny.yaml",
        "-o",
        out,
        "--set",
        "reward={}",
        "--set",
        "rewards=[{type: function, function: 'user_step_rewards:after_first_step'}]",
        "--set",
        "training.max_steps=3",
        "--set",
        "training.save_strategy=steps",
        "--set",
        "training.save_steps=1",
    ]
    result = invoke(*args)
    assert_clean_failure(
        result,
        "reward term 'after_first_step'",
        "user_step_rewards:after_first_step",
        "at step 2",
        "KeyError: 'solution'",
        f"{tmp_path / 'user_step_rewards.py'}:5",
        f"the last checkpoint is {out / 'checkpoint-1'}",
        "GRPO_SIM_DEBUG=1",
    )
    monkeypatch.setenv("GRPO_SIM_DEBUG", "1")
    result = invoke(*args[:4], "--resume", "auto", *args[4:])
    assert result.exit_code == 2
    assert "Traceback" in result.output and "KeyError: 'solution'" in result.output  # the full story, on request


@pytest.mark.parametrize("override", ["sft.model=runs/no-such-sft/final", "model.name_or_path=./no/such/model"])
def test_sft_refuses_a_model_that_cannot_load_before_writing(ws, tmp_path, override):
    out = tmp_path / "sft"
    result = invoke("sft", ws / "recipe.yaml", "-o", out, "--set", override)
    assert_clean_failure(result, override.split("=")[0], override.split("=")[1], "no such directory")
    assert not out.exists()


@pytest.mark.parametrize("index", [0, 1, 5], ids=["first-row", "second-row", "last-row"])
def test_a_set_row_with_its_paraphrases_misspelled_is_named_not_read_as_prompts(ws, tmp_path, index):
    lines = good_lines(ws)
    row = json.loads(lines[index])
    row["paraphrasez"] = row.pop("paraphrases")
    lines[index] = json.dumps(row)
    data = tmp_path / "sets.jsonl"
    data.write_text("\n".join(lines) + "\n")
    result = invoke("check", ws / "recipe.yaml", "--set", f"data.train={data}")
    assert_clean_failure(result, f"{data}:{index + 1}:", "field 'paraphrases'", "field 'paraphrasez'")
    assert "prompt column" not in result.output


def test_every_model_key_that_sets_a_from_pretrained_argument_is_its_only_source():
    """By construction: every argument init_kwargs() builds from a model key is in MODEL_KEYS_OF_INIT_KWARGS, so
    model_init_kwargs cannot set it a second time (it moves to the key, or is refused when the two differ)."""
    from grpo_sim.recipe.schema import MODEL_KEYS_OF_INIT_KWARGS, ModelSettings

    every_key = ModelSettings(
        name_or_path="m", dtype="bf16", revision="v1", attn_implementation="eager", trust_remote_code=True
    )
    assert set(every_key.init_kwargs()) <= set(MODEL_KEYS_OF_INIT_KWARGS)
    for argument, key in MODEL_KEYS_OF_INIT_KWARGS.items():
        value = getattr(every_key, key)
        moved = ModelSettings(name_or_path="m", model_init_kwargs={argument: value})
        assert getattr(moved, key) == value and moved.model_init_kwargs == {}, argument
        other = (
            "float16"
            if key == "dtype"
            else "v2"
            if key == "revision"
            else "sdpa"
            if key == "attn_implementation"
            else False
        )
        with pytest.raises(ValueError, match=f"model_init_kwargs.{argument} is .* but model.{key} is"):
            ModelSettings(name_or_path="m", **{key: value}, model_init_kwargs={argument: other})
