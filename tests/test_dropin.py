"""PSGRPOTrainer / PSGRPOConfig as drop-ins for trl.GRPOTrainer / trl.GRPOConfig (issue 21).

A TRL user's script that swaps the two classes and changes nothing else runs as before on ordinary data: the same
constructor (positional order, defaults, ``args=None``), the same rewards and logs (the default consistency term and
the default collapse penalty apply to paraphrase sets only), environment-owned rewards and data, and TRL's own
error messages for TRL's own argument errors.
"""

from __future__ import annotations

import importlib.resources
import inspect

import pytest
import torch
import trl
from datasets import Dataset

from grpo_sim.reward_terms import legacy_reward_terms
from grpo_sim.sampler import SetLayoutError
from grpo_sim.trainer import PSGRPOConfig, PSGRPOTrainer

from recipe_helpers import config_only_model
from trainer_helpers import build_policy, common_args, dataset, policy


@pytest.fixture(scope="module")
def policy_path(tmp_path_factory):
    return build_policy(tmp_path_factory.mktemp("policy") / "p")


def prompt_rows(n: int = 8) -> Dataset:
    """Ordinary (prompt, reference) rows, as a TRL user has them: no set ids."""
    rows = dataset().to_list()[:n]
    return Dataset.from_list([{"prompt": r["prompt"], "answers": r["answers"]} for r in rows])


def reward_len(completions, **kwargs):
    """TRL's quick-start reward: completions near 20 characters score best."""
    return [-abs(20 - len(c[0]["content"] if isinstance(c, list) else c)) for c in completions]


def cpu_args(output_dir, **overrides):
    """What a TRL user on a CPU sets; nothing grpo-sim specific."""
    return common_args(output_dir, **{"max_steps": 2, "per_device_train_batch_size": 4, **overrides})


def quick_start(module: str, output_dir, policy_path, **config):
    """TRL's quick-start script, with the classes taken from ``module``: `trl` or `grpo_sim`."""
    if module == "trl":
        from trl import GRPOConfig, GRPOTrainer
    else:
        from grpo_sim import PSGRPOConfig as GRPOConfig
        from grpo_sim import PSGRPOTrainer as GRPOTrainer
    model, tokenizer = policy(policy_path)
    training_args = GRPOConfig(**cpu_args(output_dir, **config))
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=reward_len,
        args=training_args,
        train_dataset=prompt_rows(),
        processing_class=tokenizer,
    )
    trainer.train()
    return trainer


def trl_logs(trainer) -> list[dict]:
    """The logged training steps, without grpo-sim's own extra keys (ps_grpo/...) and TRL's step timer."""
    return [
        {k: v for k, v in h.items() if not k.startswith("ps_grpo/") and k != "step_time"}
        for h in trainer.state.log_history
        if "loss" in h
    ]


def assert_same_training(ours, theirs) -> None:
    assert trl_logs(ours) == trl_logs(theirs)
    for (name, a), b in zip(ours.model.named_parameters(), theirs.model.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)


def test_the_quick_start_with_the_classes_swapped_trains_as_trl(policy_path, tmp_path):
    """`from grpo_sim import PSGRPOTrainer as GRPOTrainer, PSGRPOConfig as GRPOConfig`, nothing else changed."""
    ours = quick_start("grpo_sim", tmp_path / "ours", policy_path)
    theirs = quick_start("trl", tmp_path / "trl", policy_path)
    assert isinstance(ours, trl.GRPOTrainer)
    assert_same_training(ours, theirs)
    assert ours.reward_func_names == theirs.reward_func_names == ["reward_len"]
    assert not any(k.startswith("ps_grpo/frac") for h in ours.state.log_history for k in h)  # no penalty ran


def test_the_collapse_penalty_is_off_by_default_on_ordinary_rows(policy_path, tmp_path):
    """Every completion of <= 4 tokens is 'short' under collapse_min_words=50: the penalty would floor every reward
    to the batch minimum. By default (None) it applies to paraphrase sets only; asked for, it applies anywhere."""
    ours = quick_start("grpo_sim", tmp_path / "ours", policy_path, max_steps=1, collapse_min_words=50)
    theirs = quick_start("trl", tmp_path / "trl", policy_path, max_steps=1)
    assert ours.collapse_penalty is False and ours.args.collapse_penalty is None
    assert trl_logs(ours) == trl_logs(theirs)
    asked = quick_start(
        "grpo_sim", tmp_path / "asked", policy_path, max_steps=1, collapse_min_words=50, collapse_penalty=True
    )
    assert asked.collapse_penalty is True
    logged = asked.state.log_history[0]
    assert logged["ps_grpo/frac_penalised"] == 1.0 and logged["reward_std"] == 0.0  # every reward floored


def test_the_defaults_still_mean_ps_grpo_on_paraphrase_sets(policy_path, tmp_path):
    model, tokenizer = policy(policy_path)
    args = PSGRPOConfig(**common_args(tmp_path))
    assert args.reward_terms is None and args.collapse_penalty is None  # decided by the data
    trainer = PSGRPOTrainer(model, args=args, train_dataset=dataset(), processing_class=tokenizer)
    assert [t.as_dict() for t in trainer._terms] == legacy_reward_terms()  # one BLEU-2 consistency term
    assert trainer.reward_func_names == ["consistency"] and trainer.collapse_penalty is True


def test_an_explicit_set_term_on_ordinary_rows_stays_an_error(policy_path, tmp_path):
    model, tokenizer = policy(policy_path)
    for given in ({"similarity": "bleu2"}, {"reward_terms": [{"type": "consistency"}]}):
        args = PSGRPOConfig(**common_args(tmp_path), **given)
        with pytest.raises(SetLayoutError, match=r"\['consistency'\] compare the paraphrases of a set"):
            PSGRPOTrainer(model, reward_len, args, prompt_rows(), processing_class=tokenizer)


def test_the_signature_is_trls():
    """Same parameters, same order, same defaults: positional calls bind as they bind for TRL."""
    ours = inspect.signature(PSGRPOTrainer.__init__).parameters
    theirs = inspect.signature(trl.GRPOTrainer.__init__).parameters
    assert list(ours) == list(theirs)
    assert [p.default for p in ours.values()] == [p.default for p in theirs.values()]
    assert [p.kind for p in ours.values()] == [p.kind for p in theirs.values()]


def test_positional_arguments_as_trl_takes_them(policy_path, tmp_path):
    model, tokenizer = policy(policy_path)
    eval_rows = prompt_rows(4)
    trainer = PSGRPOTrainer(model, reward_len, PSGRPOConfig(**cpu_args(tmp_path)), prompt_rows(), eval_rows, tokenizer)
    assert trainer.train_dataset.num_rows == 8 and trainer.eval_dataset is eval_rows
    assert trainer.processing_class is tokenizer


def test_args_none_builds_the_default_config_trl_builds(policy_path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model, tokenizer = policy(policy_path)
    # TRL's default config asks for bf16, which TrainingArguments refuses on a machine without a GPU: both alike
    for trainer_cls in (PSGRPOTrainer, trl.GRPOTrainer):
        with pytest.raises(ValueError, match="Your setup doesn't support bf16/gpu"):
            trainer_cls(model, reward_len, train_dataset=prompt_rows(), processing_class=tokenizer)
    monkeypatch.setattr("transformers.training_args.is_torch_bf16_gpu_available", lambda *a, **k: True)
    ours = PSGRPOTrainer(model, reward_len, train_dataset=prompt_rows(), processing_class=tokenizer)
    theirs = trl.GRPOTrainer(model, reward_len, train_dataset=prompt_rows(), processing_class=tokenizer)
    assert isinstance(ours.args, PSGRPOConfig)
    assert ours.args.output_dir == theirs.args.output_dir == "p-GRPO"
    defaults = {f: getattr(theirs.args, f) for f in ("learning_rate", "num_generations", "beta", "loss_type")}
    assert {f: getattr(ours.args, f) for f in defaults} == defaults
    by_path = PSGRPOTrainer(policy_path, reward_len, train_dataset=prompt_rows())
    assert by_path.args.output_dir == "p-GRPO"


def test_trls_own_errors_keep_trls_messages(policy_path, tmp_path):
    model, tokenizer = policy(policy_path)
    with pytest.raises(ValueError, match="No reward source provided"):
        PSGRPOTrainer(model, args=PSGRPOConfig(**cpu_args(tmp_path)), train_dataset=prompt_rows())
    with pytest.raises(ValueError, match=r"Number of reward weights \(2\) must match number of reward functions"):
        PSGRPOTrainer(model, reward_len, PSGRPOConfig(**cpu_args(tmp_path), reward_weights=[1.0, 2.0]), prompt_rows())
    with pytest.raises(ValueError, match="`train_dataset` is required"):
        PSGRPOTrainer(model, reward_len, PSGRPOConfig(**cpu_args(tmp_path)))


def test_a_grpo_config_is_refused_with_what_to_use(policy_path, tmp_path):
    model, _ = policy(policy_path)
    with pytest.raises(TypeError, match=r"got trl\.trainer\.grpo_config\.GRPOConfig: PSGRPOConfig takes every"):
        PSGRPOTrainer(model, reward_len, trl.GRPOConfig(**cpu_args(tmp_path)), prompt_rows())


def test_reward_processing_classes_pair_with_the_users_functions(policy_path, tmp_path):
    """With reward terms first in TRL's list, a processing class given for the user's one function still fits."""
    model, tokenizer = policy(policy_path)
    args = PSGRPOConfig(**cpu_args(tmp_path), reward_terms=[{"type": "reference", "similarity": "token_f1"}])
    trainer = PSGRPOTrainer(model, reward_len, args, prompt_rows(), None, tokenizer, tokenizer)
    assert trainer.reward_func_names == ["reference", "reward_len"]
    assert trainer.reward_processing_classes == [None, tokenizer]


# ------------------------------------------------------------------------------------------ environments (TRL 1.16)
class CounterEnvironment:
    """An environment that owns its reward (``get_reward``): the reward is the final counter."""

    def reset(self, **kwargs):
        self.counter = 0

    def increment(self, step: int) -> int:
        """
        Increment the counter.

        Args:
            step: Value to add to the counter.

        Returns:
            The counter.
        """
        self.counter += step
        return self.counter

    def get_reward(self) -> float:
        return float(self.counter)


class PlainEnvironment:
    """No ``get_reward``: scored by the reward functions."""

    def reset(self, **kwargs):
        return None

    def play(self, x: int) -> int:
        """
        Play.

        Args:
            x: A value.

        Returns:
            The value.
        """
        return x


def tool_tokenizer(policy_path):
    """The tiny policy with TRL's Qwen3 chat template, which renders tool calls (environments need that)."""
    model, tokenizer = policy(policy_path)
    tokenizer.chat_template = (importlib.resources.files("trl") / "chat_templates" / "qwen3.jinja").read_text()
    return model, tokenizer


def test_an_environment_that_owns_reward_and_data_trains_as_trl(policy_path, tmp_path, monkeypatch):
    """No reward_funcs, no train_dataset: the environment supplies both (TRL builds placeholder prompts)."""
    monkeypatch.setenv("TRL_EXPERIMENTAL_SILENCE", "1")
    runs = {}
    for name, (trainer_cls, config_cls) in {
        "ours": (PSGRPOTrainer, PSGRPOConfig),
        "trl": (trl.GRPOTrainer, trl.GRPOConfig),
    }.items():
        model, tokenizer = tool_tokenizer(policy_path)
        args = config_cls(**cpu_args(tmp_path / name, max_steps=1, per_device_train_batch_size=2))
        trainer = trainer_cls(model, args=args, processing_class=tokenizer, environment_factory=CounterEnvironment)
        assert trainer.reward_func_names == ["CounterEnvironment"] and trainer.reward_weights.tolist() == [1.0]
        trainer.train()
        runs[name] = trainer
    assert_same_training(runs["ours"], runs["trl"])


def test_mixed_environments_route_rows_without_a_prompt_column(policy_path, tmp_path, monkeypatch):
    """A dict environment_factory routes each row by its `environment` column; the rows need no `prompt`."""
    monkeypatch.setenv("TRL_EXPERIMENTAL_SILENCE", "1")
    model, tokenizer = tool_tokenizer(policy_path)
    rows = Dataset.from_dict({"environment": ["scored", "plain"] * 2})
    trainer = PSGRPOTrainer(
        model,
        reward_len,
        PSGRPOConfig(**cpu_args(tmp_path, max_steps=1, per_device_train_batch_size=4, shuffle_dataset=False)),
        rows,
        processing_class=tokenizer,
        environment_factory={"scored": CounterEnvironment, "plain": PlainEnvironment},
    )
    assert trainer.reward_func_names == ["reward_len", "CounterEnvironment"]
    assert trainer.reward_weights.tolist() == [1.0, 1.0]
    trainer.train()
    assert trainer.state.global_step == 1


# ------------------------------------------------------------------------------------------ messages on ordinary rows
def _ordinary_recipe(tmp_path, rows: int = 6, *overrides: str):
    import json

    import yaml

    from grpo_sim.recipe import load_recipe

    with open(tmp_path / "rows.jsonl", "w") as fh:
        for k in range(rows):
            fh.write(json.dumps({"prompt": f"What is {k} + 1?", "answers": [str(k + 1)]}) + "\n")
    recipe = {
        "model": {"name_or_path": config_only_model(tmp_path / "model")},  # check never loads it
        "data": {"train": str(tmp_path / "rows.jsonl")},
        "rewards": [{"type": "reference", "similarity": "token_f1"}],
        "training": {"num_generations": 2, "per_device_train_batch_size": 4, "report_to": []},
    }
    (tmp_path / "rows.yaml").write_text(yaml.safe_dump(recipe))
    return load_recipe(tmp_path / "rows.yaml", list(overrides))


def test_plan_and_check_speak_of_prompts_on_ordinary_rows(tmp_path):
    """No sets, no n, no advantage setting that does nothing (per paraphrase = TRL's group per prompt there)."""
    from typer.testing import CliRunner

    from grpo_sim.cli import app
    from grpo_sim.plan import plan_batches

    plan = plan_batches(_ordinary_recipe(tmp_path))
    rows = dict(plan.rows())
    assert plan.ordinary and not plan.problems
    assert rows["prompts per generation batch"] == "2" and rows["rollouts per prompt (g = num_generations)"] == "2"
    assert not [what for what in rows if "set" in what or "paraphrase" in what or "advantage" in what]
    assert "paraphrase" not in plan.fits_message() and "sets" not in plan.fits_message()
    batch = dict(plan_batches(_ordinary_recipe(tmp_path, 6, "reward.advantage=batch")).rows())
    assert batch["advantages normalised per"] == "batch"  # this one does something on ordinary rows

    result = CliRunner().invoke(app, ["check", str(tmp_path / "rows.yaml")])
    assert result.exit_code == 0, result.output
    assert "valid (6 training prompts, batches fit 1 process(es))" in result.output
    result = CliRunner().invoke(app, ["check", str(tmp_path / "rows.yaml"), "--set", "data.max_train_sets=1"])
    assert "data.train holds 1 prompt(s), but one generation batch takes 2 prompts" in result.output
    result = CliRunner().invoke(app, ["plan", str(tmp_path / "rows.yaml")])
    assert "paraphrase" not in result.output and "prompts per generation batch" in result.output


def test_the_advantage_setting_is_shown_where_it_does_something(tmp_path):
    from pathlib import Path

    from grpo_sim.plan import plan_batches
    from grpo_sim.recipe import load_recipe
    from grpo_sim.runner.finish import advantage_card_lines

    sets = load_recipe(Path(__file__).resolve().parents[1] / "recipes" / "demo" / "ps_grpo.yaml")
    assert dict(plan_batches(sets).rows())["advantages normalised per"] == "set"
    assert advantage_card_lines(sets, paraphrase_sets=True) == ["- advantages per `set`"]
    ordinary = _ordinary_recipe(tmp_path)
    assert advantage_card_lines(ordinary, paraphrase_sets=False) == []
    batch = _ordinary_recipe(tmp_path, 6, "reward.advantage=batch")
    assert advantage_card_lines(batch, paraphrase_sets=False) == ["- advantages per `batch`"]
