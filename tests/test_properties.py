"""Property tests: randomly broken recipes and data lines end as "valid" or as the project's own error.

A mutation drops a key, changes a value's type, adds an unknown key, or inserts garbage bytes into
the file text. The only allowed outcomes: the input loads (and the start checks return problems as
text), or RecipeError / DataError with a message. Any other exception is a bug (a traceback for users).
"""

from __future__ import annotations

import copy
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from grpo_sim.data.schema import DataError, load_psets, write_psets
from grpo_sim.demo.world import build_demo_dataset
from grpo_sim.recipe import RecipeError, load_recipe
from grpo_sim.runner import cpu_defaults, start_problems
from grpo_sim.validation import DTYPE_ALIASES

WORKDIR = Path(tempfile.mkdtemp(prefix="grpo-sim-properties-"))
TRAIN, _, _ = build_demo_dataset(4, 0, num_paraphrases=3, seed=0)
write_psets(WORKDIR / "good.jsonl", TRAIN)
GOOD_SET = json.loads((WORKDIR / "good.jsonl").read_text().splitlines()[0])
RECIPE = {
    "model": {"name_or_path": "some-org/some-model", "dtype": "auto", "lora": {"r": 8, "alpha": 16}},
    "data": {"train": str(WORKDIR / "good.jsonl"), "prompt": "rag_short_answer", "max_train_sets": 4},
    "reward": {
        "similarity": "bleu2",
        "consistency_weight": 1.0,
        "relaxed": {"kappa": 1, "samples": 1},
        "accuracy": {"metric": "token_f1", "weight": 1.0},
        "advantage": "paraphrase",
    },
    "training": {
        "learning_rate": 1e-5,
        "num_generations": 2,
        "per_device_train_batch_size": 6,
        "beta": 0.04,
        "max_completion_length": 8,
        "temperature": 1.0,
        "gradient_accumulation_steps": 1,
        "report_to": [],
        "seed": 0,
    },
    "evaluation": {"enabled": True, "metrics": ["bleu2", "exact_match"], "levels": ["e2e"], "max_new_tokens": 8},
}
# GRPO_SIM_PROPERTY_EXAMPLES=2000 for a deeper hunt; 100 keeps the suite fast
SETTINGS = settings(
    max_examples=int(os.environ.get("GRPO_SIM_PROPERTY_EXAMPLES", "100")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

any_value = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.lists(st.integers(-3, 3), max_size=3),
    st.dictionaries(st.text(max_size=4), st.integers(-3, 3), max_size=2),
)
garbage = st.binary(min_size=1, max_size=8)


def paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path of nested dicts and lists."""
    out = []
    if isinstance(node, dict):
        for key, value in node.items():
            out.append((*prefix, key))
            out.extend(paths(value, (*prefix, key)))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            out.append((*prefix, index))
            out.extend(paths(value, (*prefix, index)))
    return out


def node_at(node: Any, path: tuple) -> Any:
    for part in path:
        node = node[part]
    return node


@st.composite
def mutated_text(draw, base: dict[str, Any], dump) -> bytes:
    """``base`` serialised by ``dump`` after one to three random mutations."""
    data = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["drop", "retype", "add", "garbage"]))
        candidates = paths(data)
        if kind in ("drop", "retype") and candidates:
            path = draw(st.sampled_from(candidates))
            parent = node_at(data, path[:-1])
            if kind == "drop":
                del parent[path[-1]]
            else:
                parent[path[-1]] = draw(any_value)
        elif kind == "add":
            containers = [p for p in [(), *candidates] if isinstance(node_at(data, p), dict)]
            target = node_at(data, draw(st.sampled_from(containers)))
            target[draw(st.text(min_size=1, max_size=8))] = draw(any_value)
    text = dump(data).encode("utf-8", "surrogatepass")
    if draw(st.booleans()):  # garbage bytes somewhere in the file
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(garbage) + text[at:]
    return text


def _yaml(data) -> str:
    return yaml.safe_dump(data, allow_unicode=True)


def _json(data) -> str:
    return json.dumps(data, ensure_ascii=False, allow_nan=True)


@SETTINGS
@given(mutated_text(RECIPE, _yaml))
def test_mutated_recipes_are_valid_or_a_recipe_error(text):
    path = WORKDIR / "recipe.yaml"
    path.write_bytes(text)
    try:
        recipe = load_recipe(path)
    except RecipeError as exc:
        assert str(exc).strip() and str(path) in str(exc)
        return
    _, problems = start_problems(cpu_defaults(recipe), num_processes=1)  # the start checks never raise
    assert all(isinstance(p, str) and p.strip() for p in problems)


@SETTINGS
@given(mutated_text(GOOD_SET, _json), st.booleans())
def test_mutated_data_lines_are_valid_or_a_data_error(line, with_good_line):
    path = WORKDIR / "sets.jsonl"
    good = json.dumps({**GOOD_SET, "set_id": "a-good-one"}).encode()
    path.write_bytes((good + b"\n" if with_good_line else b"") + line.replace(b"\n", b" ") + b"\n")
    try:
        sets = load_psets(path)
    except DataError as exc:
        assert str(exc).strip() and str(path) in str(exc) and exc.problems
        return
    assert sets and all(s.paraphrases for s in sets)


@pytest.mark.filterwarnings("ignore::FutureWarning")  # TRL deprecation notices for deprecated fields
def test_every_training_field_with_every_kind_of_value():
    """Deterministic sweep: each GRPOConfig/TrainingArguments field set to null, a bool, a negative number, a
    string and a mapping; the recipe check plus the start checks must answer with problems, never raise."""
    from grpo_sim.recipe import parse_recipe
    from grpo_sim.recipe.training_keys import _training_fields

    raised = []
    for key in _training_fields():
        for value in (None, True, -1, "x", {"a": 1}):
            recipe = copy.deepcopy(RECIPE)
            recipe["training"][key] = value
            try:
                start_problems(cpu_defaults(parse_recipe(recipe, "sweep.yaml")), num_processes=1, read_data=False)
            except RecipeError as exc:
                assert str(exc).startswith("sweep.yaml")
            except Exception as exc:  # noqa: BLE001 - any other exception is what this test looks for
                raised.append(f"training.{key}={value!r}: {type(exc).__name__}: {exc}"[:200])
    assert not raised, "\n".join(raised)


# ------------------------------------------------------------------------------ the new surfaces (issue #23)
yaml_keys = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=8)
yaml_scalars = st.one_of(st.integers(-100, 100), st.booleans(), st.text(alphabet="abcxyz ", max_size=6))
yaml_trees = st.recursive(
    st.dictionaries(yaml_keys, yaml_scalars, min_size=1, max_size=4),
    lambda inner: st.dictionaries(yaml_keys, st.one_of(yaml_scalars, inner), min_size=1, max_size=4),
    max_leaves=12,
)


@SETTINGS
@given(yaml_trees, st.data())
def test_yaml_loader_equals_safe_load_and_refuses_any_repeated_key(tree, data):
    """Without a repeated key the one loader reads what yaml.safe_load reads; a key repeated anywhere (block style)
    is refused naming it and both lines."""
    from grpo_sim.validation import DuplicateKeyError, load_yaml

    text = yaml.safe_dump(tree, sort_keys=False, default_flow_style=False)
    assert load_yaml(text) == yaml.safe_load(text)
    lines = text.splitlines()
    k = data.draw(st.integers(0, len(lines) - 1))
    line = lines[k]
    if ":" not in line or line.lstrip().startswith("-"):
        return
    indent = len(line) - len(line.lstrip())
    key = line.strip().split(":", 1)[0]
    lines.insert(k, " " * indent + f"{key}: 0")  # the same key again, just before, in the same mapping
    with pytest.raises(DuplicateKeyError) as err:
        load_yaml("\n".join(lines) + "\n")
    assert f"line {k + 2}" in str(err.value) and f"first at line {k + 1}" in str(err.value)


@SETTINGS
@given(st.sampled_from(sorted(DTYPE_ALIASES)), st.data())
def test_every_spelling_of_a_dtype_reads_as_its_torch_name(alias, data):
    import torch

    from grpo_sim.validation import dtype_name

    spelled = data.draw(st.sampled_from(["", "torch.", "TORCH."])) + "".join(
        c.upper() if data.draw(st.booleans()) else c for c in alias
    )
    name = dtype_name(f" {spelled} ")
    assert name == DTYPE_ALIASES[alias] and (name == "auto" or isinstance(getattr(torch, name), torch.dtype))
    assert dtype_name(name) == name  # idempotent


@SETTINGS
@given(st.text(max_size=10))
def test_a_dtype_name_is_known_or_refused_naming_it(text):
    from grpo_sim.validation import dtype_name

    if text.strip().lower().removeprefix("torch.") in DTYPE_ALIASES:
        return
    with pytest.raises(ValueError, match="unknown dtype"):
        dtype_name(text, "model.dtype")


reward_items = st.one_of(
    st.none(),
    st.floats(allow_nan=True),
    st.integers(-5, 5),
    st.booleans(),
    st.text(max_size=3),
    st.lists(st.floats(), max_size=2),
)


@SETTINGS
@given(
    st.one_of(
        st.lists(reward_items, max_size=5),
        st.tuples(reward_items, reward_items, reward_items),
        reward_items,
        st.dictionaries(st.text(max_size=2), st.floats(), max_size=3),
    ),
    st.integers(0, 4),
)
def test_reward_values_are_kept_exactly_when_trl_can_use_them(values, count):
    """A function term's value is kept exactly when it is one number (not a bool) or None per completion; anything
    else is a RewardFunctionError naming the term and the function."""
    import numbers

    from grpo_sim.reward_terms import RewardFunctionError, check_reward_values

    usable = (
        isinstance(values, (list, tuple))
        and len(values) == count
        and all(v is None or (isinstance(v, numbers.Real) and not isinstance(v, bool)) for v in values)
    )
    try:
        kept = check_reward_values(values, count, "term", "pkg.mod:fn", 3)
    except RewardFunctionError as exc:
        assert not usable and "reward term 'term' (function pkg.mod:fn)" in str(exc)
        return
    assert usable and len(kept) == count
    assert all((k is None and v is None) or k == float(v) or (k != k and v != v) for k, v in zip(kept, values))
