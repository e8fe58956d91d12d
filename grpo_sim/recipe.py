"""YAML recipes -> validated config objects, before anything heavy loads.

A recipe has four sections (see ``recipes/`` and the README)::

    extends: base.yaml            # optional: deep-merged underneath this file
    trl_config: grpo.yaml         # optional: a flat TRL / open-r1 GRPO config, mapped into the sections below
                                  # (model_name_or_path -> model.name_or_path, dataset_name -> data.train, the
                                  # GRPOConfig fields -> training); this file's keys win
    model:    {name_or_path, dtype, attn_implementation, lora, merge_adapters}
    data:     {train, eval, prompt, paraphrases_per_set, max_train_sets, max_eval_sets, source_options, ...}
    reward:   {similarity, consistency_weight, relaxed, accuracy, advantage, collapse_penalty, ...}
    training: any PSGRPOConfig / GRPOConfig / TrainingArguments field (learning_rate, beta, ...)
    evaluation: {enabled, max_new_tokens, batch_size, levels, metrics}
    sft:      {model, output_dir, epochs, max_steps, learning_rate, batch_size, ...}  (grpo-sim sft only)

Every problem is reported with the file and key path (``recipe.yaml: training.learning_rat: unknown
key; did you mean 'learning_rate'?``), all problems at once.
"""

from __future__ import annotations

import copy
import dataclasses
import enum
import functools
import math
import os
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PydanticSchemaGenerationError,
    TypeAdapter,
    ValidationError,
    field_validator,
)

from .validation import RecipeError, did_you_mean, format_problems, format_validation

#: the shorthand reward keys of the first recipe form (``reward: {similarity, consistency_weight, relaxed, accuracy}``)
LEGACY_REWARD_KEYS = ("similarity", "consistency_weight", "relaxed", "accuracy")


@dataclasses.dataclass(frozen=True)
class ConfigField:
    """Schema metadata (``Annotated[type, ConfigField(...)]``): this recipe key is where a recipe sets PSGRPOConfig's
    field ``name``, so ``training:`` refuses that field and names this key instead.

    How the value reaches the config: ``method`` names a method of the section that holds the key (its result;
    None keeps PSGRPOConfig's default); ``through`` says that it gets there another way (e.g. translated into the
    reward terms), and is shown in the refusal; neither: the key's own value, when set (None and an empty mapping
    keep PSGRPOConfig's default). ``refuse_as`` replaces the refusal's "KEY instead".
    """

    name: str
    method: str | None = None
    through: str | None = None
    refuse_as: str | None = None


def _section_model(annotation: Any) -> type[BaseModel] | None:
    """The section model a field holds (``LoraSettings | None`` -> LoraSettings), else None."""
    candidates = [annotation, *typing.get_args(annotation)]
    return next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)


def _config_keys(model: type[BaseModel], prefix: str = "") -> typing.Iterator[tuple[str, ConfigField]]:
    """(recipe key path, its ConfigField) of every marked key of ``model`` and its sections."""
    for key, info in model.model_fields.items():
        path = f"{prefix}{key}"
        for marker in info.metadata:
            if isinstance(marker, ConfigField):
                yield path, marker
        section = _section_model(info.annotation)
        if section is not None:
            yield from _config_keys(section, f"{path}.")


def owned_config_fields(recipe_class: type[BaseModel] | None = None) -> dict[str, str]:
    """PSGRPOConfig field -> what ``training.FIELD`` should be set as instead (read off the schema's ConfigFields)."""
    owned = {}
    for path, marker in _config_keys(recipe_class or Recipe):
        instead = marker.refuse_as or f"{path} instead" + (f" ({marker.through})" if marker.through else "")
        owned[marker.name] = instead
    return owned


def config_kwargs(section: BaseModel) -> dict[str, Any]:
    """The PSGRPOConfig keyword arguments a (validated) recipe or section sets, following its ConfigFields."""
    kwargs: dict[str, Any] = {}
    for key, info in type(section).model_fields.items():
        value = getattr(section, key)
        for marker in info.metadata:
            if not isinstance(marker, ConfigField) or marker.through:
                continue
            given = getattr(section, marker.method)() if marker.method else value
            if given is not None and not (isinstance(given, dict) and not given):
                kwargs[marker.name] = given
        if isinstance(value, BaseModel):
            kwargs.update(config_kwargs(value))
    return kwargs


def _range(low: float | None = None, high: float | None = None, *, low_open: bool = False,
           high_open: bool = False) -> tuple[typing.Callable[[float], bool], str]:
    """A (test, description) pair for a numeric range; the test also rejects NaN and infinities."""
    parts = []
    if low is not None:
        parts.append(f"{'>' if low_open else '>='} {low:g}")
    if high is not None:
        parts.append(f"{'<' if high_open else '<='} {high:g}")

    def test(value: float) -> bool:
        if not math.isfinite(value):
            return False
        if low is not None and (value <= low if low_open else value < low):
            return False
        return high is None or (value < high if high_open else value <= high)

    return test, " and ".join(parts) or "finite"


_AT_LEAST_ONE = _range(1)
# GRPOConfig/TrainingArguments fields that TRL divides by or that make no sense outside a range; GRPOConfig
# itself accepts nearly all of these (e.g. num_generations: 0 ends in a ZeroDivisionError inside TRL).
TRAINING_RANGES: dict[str, tuple[typing.Callable[[float], bool], str]] = {
    **{name: _AT_LEAST_ONE for name in (
        "per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps",
        "num_generations", "num_generations_eval", "generation_batch_size", "steps_per_generation",
        "max_completion_length", "num_iterations", "eval_accumulation_steps", "vllm_tensor_parallel_size",
        "ddp_timeout", "ref_model_sync_steps")},
    "max_steps": (lambda v: v == -1 or v >= 1, "-1 (train for num_train_epochs) or >= 1"),
    "num_train_epochs": _range(0, low_open=True),
    "learning_rate": _range(0, low_open=True),  # 0 trains nothing while every step still runs
    "weight_decay": _range(0),
    "adam_beta1": _range(0, 1, high_open=True),
    "adam_beta2": _range(0, 1, high_open=True),
    "adam_epsilon": _range(0, low_open=True),
    "max_grad_norm": _range(0),
    "warmup_steps": _range(0),
    "logging_steps": _range(0, low_open=True),
    "save_steps": _range(0, low_open=True),
    "eval_steps": _range(0, low_open=True),
    "temperature": _range(0, low_open=True),
    "top_p": _range(0, 1, low_open=True),
    "top_k": _range(0),
    "min_p": _range(0, 1),
    "repetition_penalty": _range(0, low_open=True),
    "beta": _range(0),
    "epsilon": _range(0),
    "epsilon_high": _range(0),
    "delta": _range(0, low_open=True),
    "top_entropy_quantile": _range(0, 1),
    "vllm_gpu_memory_utilization": _range(0, 1, low_open=True),
    "vllm_server_timeout": _range(0, low_open=True),
    "vllm_server_port": _range(1, 65535),
    "vllm_group_port": _range(1, 65535),
    "seed": _range(0, 2**32 - 1),  # numpy's seed range
    "data_seed": _range(0, 2**32 - 1),
    "dataloader_num_workers": _range(0),
    "collapse_warn_identical": _range(0, 1),
    "collapse_warn_empty": _range(0, 1),
    "collapse_warn_entropy_ratio": _range(0, 1),
}
# Typed `int | None` in GRPOConfig, but None ends in a TypeError inside TRL.
_NOT_NULL = {"num_generations"}
# TrainingArguments fields that take a JSON file path (read relative to the current directory) or a mapping.
_CONFIG_FILE_FIELDS = {"deepspeed", "accelerator_config", "fsdp_config"}


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class LoraSettings(_Section):
    r: int = Field(16, ge=1, description="LoRA rank")
    alpha: int = Field(32, ge=1, description="LoRA alpha (scaling = alpha / r)")
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    target_modules: str | list[str] = Field("all-linear", description="modules to adapt, or 'all-linear'")


class ModelSettings(_Section):
    name_or_path: str = Field(..., description="hub id, local path, or a registered model source (grpo_sim.sources: "
                                               "'grpo-sim:demo-warmstart', the demo's warm start)")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    attn_implementation: Literal["eager", "sdpa", "flash_attention_2", "flex_attention"] | None = None
    lora: LoraSettings | None = None
    merge_adapters: bool = Field(False, description="merge LoRA adapters into the saved final model")
    freeze_embeddings: bool = Field(False, description="keep the input embeddings (and tied output) fixed")
    revision: str | None = Field(None, description="hub branch, tag or commit of the model")
    trust_remote_code: Annotated[bool, ConfigField("trust_remote_code")] = Field(
        False, description="run the model repository's own Python code (only for repositories you trust)")
    model_init_kwargs: Annotated[dict[str, Any], ConfigField("model_init_kwargs", method="reference_init_kwargs")] = \
        Field(default_factory=dict, description="more from_pretrained arguments, for the policy AND the reference "
                                                "model")
    chat_template_kwargs: Annotated[dict[str, Any], ConfigField("chat_template_kwargs")] = Field(
        default_factory=dict, description="arguments of the chat template (e.g. enable_thinking: false)")

    def init_kwargs(self) -> dict[str, Any]:
        """from_pretrained arguments of the policy, which TRL also uses for the reference model (beta > 0)."""
        kwargs: dict[str, Any] = {}
        if self.revision:
            kwargs["revision"] = self.revision
        if self.dtype != "auto":
            kwargs["dtype"] = self.dtype
        if self.attn_implementation:
            kwargs["attn_implementation"] = self.attn_implementation
        return {**kwargs, **self.model_init_kwargs, "trust_remote_code": self.trust_remote_code}

    def reference_init_kwargs(self) -> dict[str, Any] | None:
        """PSGRPOConfig.model_init_kwargs: TRL builds the reference model (beta > 0) from them; None when they say
        nothing beyond the defaults."""
        init = self.init_kwargs()
        return init if set(init) != {"trust_remote_code"} or init["trust_remote_code"] else None


class DataSettings(_Section):
    train: str = Field(..., description="paraphrase-set JSONL, 'hf:NAME[:SPLIT]', or a registered data source "
                                        "(grpo_sim.sources: 'demo', the bundled synthetic sets)")
    eval: str | None = Field(None, description="held-out paraphrase sets (same forms as train)")
    prompt: str = Field("rag_short_answer", description="prompt template name or a '{question}'/'{passages}' string")
    paraphrases_per_set: int | None = Field(None, ge=2, description="keep the first n paraphrases of every "
                                            "training set (evaluation scores all)")
    max_train_sets: int | None = Field(None, ge=1, description="keep the first N sets (ordinary data: rows)")
    max_eval_sets: int | None = Field(None, ge=1, description="keep the first N sets (ordinary data: rows)")
    source_options: dict[str, Any] = Field(
        default_factory=dict, description="options of the registered data source data.train names (grpo_sim.sources; "
                                          "the demo: num_train_sets, num_eval_sets, ...), checked by that source")
    format: Literal["auto", "paraphrase_sets", "prompts"] = Field(
        "auto", description="paraphrase sets, or ordinary (prompt, reference) rows; auto: rows with 'paraphrases' "
                            "are sets")
    config: str | None = Field(None, description="the Hub dataset's configuration (load_dataset's name)")
    columns: dict[Literal["prompt", "answers"], str] = Field(
        default_factory=dict, description="ordinary rows: the dataset's prompt / reference column names")
    system_prompt: str | None = Field(None, description="a system message put before every prompt")

    @field_validator("prompt")
    @classmethod
    def _known_template(cls, value: str) -> str:
        from .data.schema import check_prompt_template

        check_prompt_template(value)  # raises ValueError naming the templates / the bad placeholder
        return value


_AS_TERMS = "it becomes a reward term"


class RelaxedSettings(_Section):
    kappa: Annotated[int, ConfigField("relaxed_kappa", through=f"or a consistency term's relaxed: in rewards:; "
                                                               f"{_AS_TERMS}")] = Field(3, ge=1)
    samples: Annotated[int, ConfigField("relaxed_samples", through=f"or a consistency term's relaxed: in rewards:; "
                                                                   f"{_AS_TERMS}")] = Field(1, ge=1)


def _check_similarity(value: str) -> str:
    from .similarity import get_similarity

    get_similarity(value)  # raises ValueError listing the known names
    return value


class AccuracySettings(_Section):
    metric: Annotated[str, ConfigField("accuracy_metric", through=f"or a reference term's similarity in rewards:; "
                                                                  f"{_AS_TERMS}")] = "token_f1"
    weight: Annotated[float, ConfigField("accuracy_weight", through=f"or a reference term in rewards:; {_AS_TERMS}")] \
        = Field(1.0, allow_inf_nan=False)

    _known_metric = field_validator("metric")(_check_similarity)


class RewardSettings(_Section):
    """How the reward terms (the top-level ``rewards:`` list) become advantages; null = PSGRPOConfig's default.

    ``similarity``, ``consistency_weight``, ``relaxed`` and ``accuracy`` are the first recipe form's
    shorthand for a consistency term and an accuracy term; they are translated into ``rewards:``.
    """

    advantage: Annotated[Literal["paraphrase", "set", "batch"] | None, ConfigField("advantage_mode")] = Field(
        None, description="normalise advantages per paraphrase (the paper; TRL's groups), per set, or per batch")
    collapse_penalty: Annotated[bool | None, ConfigField("collapse_penalty")] = Field(
        None, description="completions shorter than collapse_min_words get the batch's minimum reward")
    collapse_min_words: Annotated[int | None, ConfigField("collapse_min_words")] = Field(None, ge=0)
    aggregation: Annotated[Literal["sum_then_normalize", "normalize_then_sum"] | None,
                           ConfigField("multi_objective_aggregation")] = Field(
        None, description="TRL's multi_objective_aggregation of the weighted terms")
    similarity: Annotated[str | None, ConfigField("similarity", through=f"or a consistency term in rewards:; "
                                                                        f"{_AS_TERMS}")] = None
    consistency_weight: Annotated[float | None, ConfigField(
        "consistency_weight", through=f"or a consistency term's weight in rewards:; {_AS_TERMS}")] = Field(
        None, allow_inf_nan=False)
    relaxed: RelaxedSettings | None = None
    accuracy: AccuracySettings | None = None

    @field_validator("similarity")
    @classmethod
    def _known_similarity(cls, value: str | None) -> str | None:
        return None if value is None else _check_similarity(value)

    def legacy_terms(self) -> list[dict[str, Any]] | None:
        """The terms the shorthand keys describe (None when none is set)."""
        from .reward_terms import legacy_reward_terms

        if all(getattr(self, key) is None for key in LEGACY_REWARD_KEYS):
            return None
        given: dict[str, Any] = {"similarity": self.similarity, "consistency_weight": self.consistency_weight}
        if self.accuracy:
            given.update(accuracy_weight=self.accuracy.weight, accuracy_metric=self.accuracy.metric)
        if self.relaxed:
            given.update(relaxed_kappa=self.relaxed.kappa, relaxed_samples=self.relaxed.samples)
        return legacy_reward_terms(**{key: value for key, value in given.items() if value is not None})


class EvaluationSettings(_Section):
    enabled: bool = Field(True, description="evaluate the final model on data.eval after training")
    max_new_tokens: int = Field(32, ge=1)
    batch_size: int = Field(32, ge=1)
    levels: list[Literal["e2e", "generator"]] = Field(default_factory=lambda: ["e2e", "generator"])
    metrics: list[str] = Field(default_factory=lambda: ["bleu2", "rouge_l", "exact_match", "embedding"])

    @field_validator("metrics")
    @classmethod
    def _known_metrics(cls, value: list[str]) -> list[str]:
        """The same resolution the evaluation runs after training, so a typo fails before it."""
        from .eval.metrics import metric_key
        from .similarity import get_similarity

        seen: dict[str, str] = {}
        for entry in value:
            key, spec = metric_key(entry)
            if key in seen:
                raise ValueError(f"{entry!r} and {seen[key]!r} would both be reported as '{key}'; name one of them "
                                 "with 'alias=spec' (e.g. 'bleu3=bleu:n=3')")
            seen[key] = entry
            try:
                get_similarity(spec)
            except (ValueError, ImportError) as exc:
                raise ValueError(f"metric {entry!r}: {exc}") from None
        return value


class SFTSettings(_Section):
    """``grpo-sim sft``: a supervised warm start on data.train (every wording -> the first gold answer).

    Defaults suit a tiny policy from ``grpo-sim model init`` on a CPU; a pretrained LLM wants a learning
    rate near 1e-5 (and usually LoRA or a GPU).
    """

    model: str | None = Field(None, description="the model to start from (default: model.name_or_path)")
    output_dir: str | None = Field(None, description="run directory (default: runs/<recipe name>-sft); the "
                                   "warm-started model is its final/")
    epochs: float = Field(3.0, gt=0, allow_inf_nan=False, description="passes over the data (num_train_epochs)")
    max_steps: int = Field(-1, ge=-1, description="stop after this many steps (-1: run the epochs)")
    learning_rate: float = Field(1e-3, gt=0, allow_inf_nan=False)
    batch_size: int = Field(16, ge=1, description="per_device_train_batch_size")
    gradient_accumulation_steps: int = Field(1, ge=1)
    logging_steps: int = Field(10, ge=1)
    save_steps: int = Field(200, ge=1, description="checkpoint every this many steps (resume with --resume auto)")
    seed: int = Field(0, ge=0)
    args: dict[str, Any] = Field(default_factory=dict, description="any other trl.SFTConfig field")


class Recipe(_Section):
    model: ModelSettings
    data: DataSettings
    rewards: Annotated[list[dict[str, Any]] | None, ConfigField("reward_terms", method="reward_terms"),
                       ConfigField("reward_weights", through="each term's weight", refuse_as=(
                           "each term's weight in rewards: instead (a function term names a TRL reward function)"))] \
        = Field(None, description="reward terms: consistency, reference, agreement, function (grpo_sim.reward_terms)")
    reward: RewardSettings = Field(default_factory=RewardSettings)
    training: dict[str, Any] = Field(default_factory=dict)
    evaluation: EvaluationSettings = Field(default_factory=EvaluationSettings)
    sft: SFTSettings = Field(default_factory=SFTSettings)
    output_dir: Annotated[str | None, ConfigField("output_dir", through="the run directory", refuse_as=(
        "--output-dir (or the top-level output_dir key) instead"))] = None

    # where it came from (not part of the schema)
    _source: str = "<recipe>"

    def resolved_dict(self) -> dict[str, Any]:
        """The fully resolved recipe (defaults filled in), as saved to recipe.resolved.yaml."""
        return self.model_dump(mode="json")

    def dump_yaml(self) -> str:
        return yaml.safe_dump(self.resolved_dict(), sort_keys=False)

    def reward_terms(self) -> list[dict[str, Any]]:
        """``rewards:``, else the shorthand reward keys, else one bleu2 consistency term
        (the first recipes' default)."""
        from .reward_terms import legacy_reward_terms

        if self.rewards is not None:
            return [dict(term) for term in self.rewards]
        legacy = self.reward.legacy_terms()
        return legacy if legacy is not None else legacy_reward_terms()

    def trainer_kwargs(self, output_dir: str | os.PathLike[str]) -> dict[str, Any]:
        """Keyword arguments for PSGRPOConfig: the training section plus what the other sections' keys set (their
        :class:`ConfigField` marks; unset keys keep PSGRPOConfig's own defaults)."""
        return {**self.training, **config_kwargs(self), "output_dir": str(output_dir)}


# ------------------------------------------------------------------------------------------ loading
def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RecipeError(f"recipe file {path} does not exist") from None
    except IsADirectoryError:
        raise RecipeError(f"recipe file {path} is a directory: give the YAML file inside it") from None
    except UnicodeDecodeError as exc:
        raise RecipeError(f"{path}: not a UTF-8 text file (byte 0x{exc.object[exc.start]:02x} at offset "
                          f"{exc.start}); a recipe is YAML text") from None
    except OSError as exc:
        raise RecipeError(f"recipe file {path} cannot be read ({exc.strerror or exc})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RecipeError(f"{path}: not valid YAML ({exc})") from None
    except RecursionError:
        raise RecipeError(f"{path}: not valid YAML (nested too deeply)") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: a recipe must be a mapping of sections (model, data, reward, training), "
                          f"got {type(data).__name__}")
    return data


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` wins; nested mappings merge; ``null`` in ``over`` replaces (e.g. drops lora)."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_raw(path: str | os.PathLike[str], _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Read a recipe file and everything it ``extends`` (paths relative to the extending file)."""
    path = Path(path).resolve()
    if path in _seen:
        chain = " -> ".join(str(p) for p in (*_seen, path))
        raise RecipeError(f"{path}: 'extends' forms a cycle: {chain}")
    data = _read_yaml(path)
    parent = data.pop("extends", None)
    trl_config = data.pop("trl_config", None)
    base: dict[str, Any] = {}
    if parent is not None:
        base = load_raw(_referenced_file(path, "extends", parent, "another recipe"), (*_seen, path))
    if trl_config is not None:
        base = deep_merge(base, _trl_sections(_referenced_file(path, "trl_config", trl_config, "a TRL GRPO config"),
                                              recipe_has_rewards="rewards" in data or "rewards" in base))
    return deep_merge(base, data) if base else data


def _referenced_file(path: Path, key: str, value: Any, what: str) -> Path:
    """A file a recipe names (``extends``, ``trl_config``), relative to the recipe's own directory."""
    if not isinstance(value, str):
        raise RecipeError(f"{path}: {key} must be a path to {what}, got {value!r}")
    target = (path.parent / value) if not os.path.isabs(value) else Path(value)
    if not target.exists():
        raise RecipeError(f"{path}: {key} {value!r}, but {target} does not exist")
    return target


def _trl_sections(path: Path, recipe_has_rewards: bool) -> dict[str, Any]:
    """A flat TRL / open-r1 GRPO config (GRPOConfig + ScriptArguments + ModelConfig keys) as recipe sections."""
    from .trl_config import sections_from_flat

    sections, problems = sections_from_flat(_read_yaml(path), str(path), recipe_has_rewards)
    if problems:
        raise RecipeError(format_problems(str(path), [p.removeprefix(f"{path}: ") for p in problems]), problems)
    return sections


def apply_overrides(data: dict[str, Any], overrides: list[str] | None, source: str = "--set") -> dict[str, Any]:
    """Apply ``key.path=value`` overrides; values are parsed as YAML (numbers, bools, lists, null)."""
    data = copy.deepcopy(data)
    for item in overrides or []:
        key, eq, raw = item.partition("=")
        if not eq or not key.strip():
            raise RecipeError(f"{source} {item!r}: expected key.path=value, e.g. training.learning_rate=1e-5")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        parts = key.strip().split(".")
        node = data
        for depth, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                where = ".".join(parts[: depth + 1])
                raise RecipeError(f"{source} {item!r}: {where} is {child!r}, not a section")
            node = child
        node[parts[-1]] = value
    return data


@functools.lru_cache(maxsize=1)
def _training_fields() -> dict[str, Any]:
    from .trainer import PSGRPOConfig

    hints = typing.get_type_hints(PSGRPOConfig)
    return {f.name: hints.get(f.name, Any) for f in dataclasses.fields(PSGRPOConfig) if f.init}


def _check_training(training: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Type-check (and coerce, e.g. YAML's string '1e-6' to a float) every training key."""
    fields = _training_fields()
    owned = owned_config_fields()
    problems = []
    coerced = dict(training)
    for key, value in training.items():
        if key in owned:
            problems.append(f"training.{key}: set it as {owned[key]}")
            coerced.pop(key)
            continue
        if key not in fields:
            problems.append(f"training.{key}: not a GRPOConfig/TrainingArguments field{did_you_mean(key, fields)}")
            coerced.pop(key)
            continue
        if key in _CONFIG_FILE_FIELDS and isinstance(value, (str, bool)):
            if isinstance(value, bool) or not Path(value).is_file():
                what = f"{value} does not exist" if isinstance(value, str) else f"got {str(value).lower()}"
                problems.append(f"training.{key}: expects a path to a JSON config file or a mapping; {what}")
                coerced.pop(key)
                continue
        try:
            adapter = TypeAdapter(fields[key])
        except PydanticSchemaGenerationError:  # an annotation pydantic cannot check: GRPOConfig validates it below
            continue
        try:
            if isinstance(value, bool) and "bool" not in str(fields[key]):
                value = "no" if value is False else "yes"  # YAML 1.1 reads a bare `no` as False
            value = adapter.validate_python(value)
            coerced[key] = value.value if isinstance(value, enum.Enum) else value  # keep YAML-friendly types
        except ValidationError as exc:
            expected = getattr(fields[key], "__name__", str(fields[key]))
            problems.append(f"training.{key}: {value!r} is not a valid {expected} "
                            f"({exc.errors()[0]['msg']})")
            coerced.pop(key)
            continue
        problem = (f"training.{key}: must be set (null is not allowed)" if key in _NOT_NULL and coerced[key] is None
                   else _range_problem(key, coerced[key]))
        if problem:
            problems.append(problem)
            coerced.pop(key)
    return coerced, problems


def _range_problem(key: str, value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    test, description = TRAINING_RANGES.get(key, (lambda v: not math.isnan(v), "a number"))
    return None if test(value) else f"training.{key}: must be {description}, got {value!r}"


def _without(data: dict[str, Any], locs: typing.Iterable[tuple]) -> dict[str, Any]:
    """``data`` without the deepest existing key on each error location (so its default applies)."""
    data = copy.deepcopy(data)
    for loc in locs:
        parent, key, node = None, None, data
        for part in loc:
            if not (isinstance(node, dict) and part in node):
                break
            parent, key, node = node, part, node[part]
        if parent is not None:
            parent.pop(key)
    return data


def check_recipe(data: dict[str, Any], source: str = "<recipe>") -> tuple[Recipe | None, list[str]]:
    """Every problem of a raw (merged, overridden) recipe mapping, and the recipe.

    With problems, the recipe is a best effort (bad keys dropped, so their defaults apply) that
    later checks (data, batch arithmetic) can still run on, so that all problems are reported at
    once; it is None when even that cannot be built (e.g. a required key is missing).
    """
    problems: list[str] = []
    unknown = set(data) - set(Recipe.model_fields)
    for key in sorted(unknown):
        if key in _training_fields() and key not in owned_config_fields():  # a flat TRL / open-r1 config
            problems.append(f"{key}: a GRPOConfig/TrainingArguments field at the top level: move it under training: "
                            "(or keep the flat TRL config in its own file and name it with trl_config: FILE)")
        elif key in ModelSettings.model_fields or key in ("model_name_or_path", "model_revision"):
            problems.append(f"{key}: a model setting at the top level: move it under model: (model.name_or_path, "
                            "model.revision, ...)")
        elif key in ("dataset_name", "dataset_config", "dataset_train_split", "system_prompt"):
            problems.append(f"{key}: a data setting at the top level: use data.train (hf:NAME[:SPLIT]), "
                            "data.config, data.system_prompt")
        else:
            problems.append(f"{key}: unknown top-level key{did_you_mean(key, Recipe.model_fields)}")
    clean = {k: v for k, v in data.items() if k not in unknown}
    recipe = None
    try:
        recipe = Recipe.model_validate(clean)
    except ValidationError as exc:
        problems.extend(format_validation(exc, Recipe))
        try:
            recipe = Recipe.model_validate(_without(clean, [tuple(e["loc"]) for e in exc.errors()]))
        except ValidationError:
            recipe = None
    problems.extend(_reward_problems(clean))
    if recipe is not None:
        from .sources import source_option_problems

        recipe.data.source_options, option_problems = source_option_problems(recipe.data)
        problems.extend(option_problems)
    training = clean.get("training") or {}
    coerced: dict[str, Any] = {}
    if isinstance(training, dict):
        coerced, training_problems = _check_training(training)
        problems.extend(training_problems)
    if recipe is not None:
        recipe.training = coerced
        recipe._source = source
    return recipe, problems


def _reward_problems(data: dict[str, Any]) -> list[str]:
    """The ``rewards:`` terms (each checked: similarity specs resolve, functions import) and their mix with the
    shorthand ``reward:`` keys."""
    from .reward_terms import parse_reward_terms

    terms = data.get("rewards")
    if terms is None:
        return []
    problems = []
    reward = data.get("reward") if isinstance(data.get("reward"), dict) else {}
    legacy = [key for key in LEGACY_REWARD_KEYS if reward.get(key) is not None]
    if legacy:
        problems.append(f"reward.{legacy[0]}: the shorthand reward keys ({', '.join(LEGACY_REWARD_KEYS)}) and a "
                        "rewards: list cannot be mixed; move them into rewards: as consistency / reference terms")
    try:
        parse_reward_terms(terms, "rewards")
    except ValueError as exc:
        problems.extend(str(exc).splitlines())
    return problems


def parse_recipe(data: dict[str, Any], source: str = "<recipe>") -> Recipe:
    """Validate a raw (merged, overridden) recipe mapping; RecipeError lists every problem."""
    recipe, problems = check_recipe(data, source)
    if problems:
        raise RecipeError(format_problems(source, problems), problems)
    assert recipe is not None
    return recipe


def load_recipe(path: str | os.PathLike[str], overrides: list[str] | None = None) -> Recipe:
    """Load, merge ``extends``, apply ``--set`` overrides and validate a recipe file."""
    raw = apply_overrides(load_raw(path), overrides)
    return parse_recipe(raw, source=str(path))


@functools.lru_cache(maxsize=None)
def config_class_for_launch(num_processes: int) -> type:
    """PSGRPOConfig whose ``world_size`` is a launch's process count, so that ``GRPOConfig.__post_init__`` derives
    THAT launch's batch (steps_per_generation, generation_batch_size) in this one process. For checks and plans
    only: a run trains with the plain PSGRPOConfig, whose world size is the real one."""
    from .trainer import PSGRPOConfig

    def post_init(self) -> None:
        try:
            PSGRPOConfig.__post_init__(self)
        except ValueError as exc:
            # a later rule (e.g. generation_batch_size % num_generations) rejected the batch TRL derived: keep it
            # on the error, so that a plan can still show the numbers and the nearest valid settings
            derived = (self.steps_per_generation, self.generation_batch_size)
            exc.derived_batch = derived if None not in derived else None  # type: ignore[attr-defined]
            raise

    return type(f"PSGRPOConfigFor{num_processes}Processes", (PSGRPOConfig,),
                {"world_size": property(lambda self: num_processes), "__post_init__": post_init,
                 "__doc__": config_class_for_launch.__doc__})


def build_config(recipe: Recipe, output_dir: str | os.PathLike[str], num_processes: int | None = None):
    """PSGRPOConfig from a recipe; GRPOConfig's own checks are reported against the recipe file.

    ``num_processes``: build it as a launch of that many processes would (see :func:`config_class_for_launch`)."""
    from .trainer import PSGRPOConfig

    kwargs = recipe.trainer_kwargs(output_dir)
    config_class = PSGRPOConfig if num_processes is None else config_class_for_launch(num_processes)
    try:
        return config_class(**kwargs)
    except (ValueError, TypeError) as exc:
        raise RecipeError(f"{recipe._source}: training settings rejected by GRPOConfig: {exc}") from None
    except ImportError as exc:  # e.g. training.deepspeed without the deepspeed package
        raise RecipeError(f"{recipe._source}: training settings need a package that is not installed: {exc}") \
            from None
