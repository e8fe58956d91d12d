"""The recipe schema: its sections as pydantic models (model, data, reward, evaluation, sft; training is checked
by :mod:`.training_keys`) and the :class:`ConfigField` marks that say which PSGRPOConfig field a recipe key sets."""

from __future__ import annotations

import dataclasses
import os
import typing
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from ..validation import dtype_name

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


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class LoraSettings(_Section):
    r: int = Field(16, ge=1, description="LoRA rank")
    alpha: int = Field(32, ge=1, description="LoRA alpha (scaling = alpha / r)")
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    target_modules: str | list[str] = Field("all-linear", description="modules to adapt, or 'all-linear'")


#: from_pretrained arguments that have a model key of their own (ModelSettings.init_kwargs builds them): refused in
#: model_init_kwargs, so that each has one source
MODEL_KEYS_OF_INIT_KWARGS = {
    "dtype": "dtype",
    "torch_dtype": "dtype",
    "revision": "revision",
    "attn_implementation": "attn_implementation",
    "trust_remote_code": "trust_remote_code",
}


class ModelSettings(_Section):
    name_or_path: str = Field(
        ...,
        description="hub id, local path, or a registered model source (grpo_sim.sources: "
        "'grpo-sim:demo-warmstart', the demo's warm start)",
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    attn_implementation: Literal["eager", "sdpa", "flash_attention_2", "flex_attention"] | None = None
    lora: LoraSettings | None = None
    merge_adapters: bool = Field(False, description="merge LoRA adapters into the saved final model")
    freeze_embeddings: bool = Field(False, description="keep the input embeddings (and tied output) fixed")
    revision: str | None = Field(None, description="hub branch, tag or commit of the model")
    trust_remote_code: Annotated[bool, ConfigField("trust_remote_code")] = Field(
        False, description="run the model repository's own Python code (only for repositories you trust)"
    )
    model_init_kwargs: Annotated[dict[str, Any], ConfigField("model_init_kwargs", method="reference_init_kwargs")] = (
        Field(
            default_factory=dict, description="more from_pretrained arguments, for the policy AND the reference model"
        )
    )
    chat_template_kwargs: Annotated[dict[str, Any], ConfigField("chat_template_kwargs")] = Field(
        default_factory=dict, description="arguments of the chat template (e.g. enable_thinking: false)"
    )

    @field_validator("dtype", mode="before")
    @classmethod
    def _dtype_alias(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        try:
            return dtype_name(value, "dtype")
        except ValueError:
            raise ValueError(
                "Input should be 'auto', 'float32', 'bfloat16' or 'float16', or one of their aliases: bf16, fp16, "
                "fp32, half, torch.bfloat16, ..."
            ) from None

    @model_validator(mode="before")
    @classmethod
    def _one_source_per_init_argument(cls, data: Any) -> Any:
        """A from_pretrained argument that has its own model key (dtype, revision, ...) lives in that key only: given
        in model_init_kwargs it moves there, and given in both with different values it is refused (otherwise one
        of the two would be dropped silently)."""
        if not isinstance(data, dict) or not isinstance(data.get("model_init_kwargs"), dict):
            return data
        data, extra = dict(data), dict(data["model_init_kwargs"])
        problems = []
        for arg, key in MODEL_KEYS_OF_INIT_KWARGS.items():
            if arg not in extra:
                continue
            value = extra.pop(arg)
            if key == "dtype":
                value = dtype_name(value, f"model_init_kwargs.{arg}")
            given = data.get(key)
            if key == "dtype" and isinstance(given, str):
                given = dtype_name(given, "dtype")
            if key in data and given != value:
                problems.append(
                    f"model_init_kwargs.{arg} is {value!r} but model.{key} is {given!r}: one setting, two values; "
                    f"set model.{key} only"
                )
            data[key] = value
        if problems:
            raise ValueError("; ".join(problems))
        data["model_init_kwargs"] = extra
        return data

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
    train: str = Field(
        ...,
        description="paraphrase-set JSONL, 'hf:NAME[:SPLIT]', or a registered data source "
        "(grpo_sim.sources: 'demo', the bundled synthetic sets)",
    )
    eval: str | None = Field(None, description="held-out paraphrase sets (same forms as train)")
    prompt: str = Field("rag_short_answer", description="prompt template name or a '{question}'/'{passages}' string")
    paraphrases_per_set: int | None = Field(
        None, ge=2, description="keep the first n paraphrases of every training set (evaluation scores all)"
    )
    max_train_sets: int | None = Field(None, ge=1, description="keep the first N sets (ordinary data: rows)")
    max_eval_sets: int | None = Field(None, ge=1, description="keep the first N sets (ordinary data: rows)")
    source_options: dict[str, Any] = Field(
        default_factory=dict,
        description="options of the registered data source data.train names (grpo_sim.sources; "
        "the demo: num_train_sets, num_eval_sets, ...), checked by that source",
    )
    format: Literal["auto", "paraphrase_sets", "prompts"] = Field(
        "auto",
        description="paraphrase sets, or ordinary (prompt, reference) rows; auto: rows with 'paraphrases' are sets",
    )
    config: str | None = Field(None, description="the Hub dataset's configuration (load_dataset's name)")
    columns: dict[Literal["prompt", "answers"], str] = Field(
        default_factory=dict, description="ordinary rows: the dataset's prompt / reference column names"
    )
    system_prompt: str | None = Field(None, description="a system message put before every prompt")

    @field_validator("prompt")
    @classmethod
    def _known_template(cls, value: str) -> str:
        from ..data.schema import check_prompt_template

        check_prompt_template(value)  # raises ValueError naming the templates / the bad placeholder
        return value


_AS_TERMS = "it becomes a reward term"


class RelaxedSettings(_Section):
    kappa: Annotated[
        int, ConfigField("relaxed_kappa", through=f"or a consistency term's relaxed: in rewards:; {_AS_TERMS}")
    ] = Field(3, ge=1)
    samples: Annotated[
        int, ConfigField("relaxed_samples", through=f"or a consistency term's relaxed: in rewards:; {_AS_TERMS}")
    ] = Field(1, ge=1)


def _check_similarity(value: str) -> str:
    from ..similarity import get_similarity

    get_similarity(value)  # raises ValueError listing the known names
    return value


class AccuracySettings(_Section):
    metric: Annotated[
        str, ConfigField("accuracy_metric", through=f"or a reference term's similarity in rewards:; {_AS_TERMS}")
    ] = "token_f1"
    weight: Annotated[
        float, ConfigField("accuracy_weight", through=f"or a reference term in rewards:; {_AS_TERMS}")
    ] = Field(1.0, allow_inf_nan=False)

    _known_metric = field_validator("metric")(_check_similarity)


class RewardSettings(_Section):
    """How the reward terms (the top-level ``rewards:`` list) become advantages; null = PSGRPOConfig's default.

    ``similarity``, ``consistency_weight``, ``relaxed`` and ``accuracy`` are the first recipe form's
    shorthand for a consistency term and an accuracy term; they are translated into ``rewards:``.
    """

    advantage: Annotated[Literal["paraphrase", "set", "batch"] | None, ConfigField("advantage_mode")] = Field(
        None, description="normalise advantages per paraphrase (the paper; TRL's groups), per set, or per batch"
    )
    collapse_penalty: Annotated[bool | None, ConfigField("collapse_penalty")] = Field(
        None, description="completions shorter than collapse_min_words get the batch's minimum reward"
    )
    collapse_min_words: Annotated[int | None, ConfigField("collapse_min_words")] = Field(None, ge=0)
    aggregation: Annotated[
        Literal["sum_then_normalize", "normalize_then_sum"] | None, ConfigField("multi_objective_aggregation")
    ] = Field(None, description="TRL's multi_objective_aggregation of the weighted terms")
    similarity: Annotated[
        str | None, ConfigField("similarity", through=f"or a consistency term in rewards:; {_AS_TERMS}")
    ] = None
    consistency_weight: Annotated[
        float | None,
        ConfigField("consistency_weight", through=f"or a consistency term's weight in rewards:; {_AS_TERMS}"),
    ] = Field(None, allow_inf_nan=False)
    relaxed: RelaxedSettings | None = None
    accuracy: AccuracySettings | None = None

    @field_validator("similarity")
    @classmethod
    def _known_similarity(cls, value: str | None) -> str | None:
        return None if value is None else _check_similarity(value)

    def legacy_terms(self) -> list[dict[str, Any]] | None:
        """The terms the shorthand keys describe (None when none is set)."""
        from ..reward_terms import legacy_reward_terms

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
        from ..eval.metrics import metric_key
        from ..similarity import get_similarity

        seen: dict[str, str] = {}
        for entry in value:
            key, spec = metric_key(entry)
            if key in seen:
                raise ValueError(
                    f"{entry!r} and {seen[key]!r} would both be reported as '{key}'; name one of them "
                    "with 'alias=spec' (e.g. 'bleu3=bleu:n=3')"
                )
            seen[key] = entry
            try:
                get_similarity(spec)
            except (ValueError, ImportError) as exc:
                raise ValueError(f"metric {entry!r}: {exc}") from None
        return value


#: the sft keys that set a trl.SFTConfig field (key -> field): grpo_sim.sft builds the config from this table, and
#: sft.args refuses these fields
SFT_CONFIG_FIELDS = {
    "epochs": "num_train_epochs",
    "max_steps": "max_steps",
    "learning_rate": "learning_rate",
    "batch_size": "per_device_train_batch_size",
    "gradient_accumulation_steps": "gradient_accumulation_steps",
    "logging_steps": "logging_steps",
    "save_steps": "save_steps",
    "seed": "seed",
}
#: trl.SFTConfig fields the run itself sets from elsewhere (field -> where to set it instead)
SFT_RUN_FIELDS = {
    "output_dir": "--output-dir or sft.output_dir",
    "run_name": "--output-dir (the run is named after its directory)",
    "report_to": "training.report_to",
    "num_train_epochs": "sft.epochs",
}


class SFTSettings(_Section):
    """``grpo-sim sft``: a supervised warm start on data.train (every wording -> the first gold answer).

    Defaults suit a tiny policy from ``grpo-sim model init`` on a CPU; a pretrained LLM wants a learning
    rate near 1e-5 (and usually LoRA or a GPU).
    """

    model: str | None = Field(None, description="the model to start from (default: model.name_or_path)")
    output_dir: str | None = Field(
        None, description="run directory (default: runs/<recipe name>-sft); the warm-started model is its final/"
    )
    epochs: float = Field(3.0, gt=0, allow_inf_nan=False, description="passes over the data (num_train_epochs)")
    max_steps: int = Field(-1, ge=-1, description="stop after this many steps (-1: run the epochs)")
    learning_rate: float = Field(1e-3, gt=0, allow_inf_nan=False)
    batch_size: int = Field(16, ge=1, description="per_device_train_batch_size")
    gradient_accumulation_steps: int = Field(1, ge=1)
    logging_steps: int = Field(10, ge=1)
    save_steps: int = Field(200, ge=1, description="checkpoint every this many steps (resume with --resume auto)")
    seed: int = Field(0, ge=0)
    args: dict[str, Any] = Field(default_factory=dict, description="any other trl.SFTConfig field")

    @field_validator("args")
    @classmethod
    def _one_source_per_setting(cls, value: dict[str, Any]) -> dict[str, Any]:
        """A trl.SFTConfig field that an sft key sets (or that the run decides) is refused in args: otherwise the
        two could disagree and the model card would report the one that was not used."""
        owned = {config: f"sft.{key}" for key, config in SFT_CONFIG_FIELDS.items()} | SFT_RUN_FIELDS
        problems = [f"{k!r}: set {owned[k]} instead (one source per setting)" for k in value if k in owned]
        if problems:
            raise ValueError("; ".join(problems))
        return value


class HardwareSettings(_Section):
    """The GPUs and launch a recipe was sized for: ``grpo-sim plan``/``check`` size the memory with them when no
    flag says otherwise (``--gpu-memory``, ``--accelerate-config``, ``--num-processes``), and a test keeps every
    shipped recipe within them. Not used by training itself (it measures its own GPU)."""

    gpu: str | None = Field(None, description="the GPU, in words (e.g. 'H100 80GB')")
    gpu_memory: str | None = Field(None, description="memory of one GPU: 80GiB, 80GB, 24GiB")
    gpus: int | None = Field(None, ge=1, description="GPUs in all, vLLM server GPUs included")
    num_processes: int | None = Field(None, ge=1, description="training processes (GPUs that train)")
    accelerate_config: str | None = Field(
        None, description="the accelerate config of the launch line (relative to the working directory)"
    )

    @field_validator("gpu_memory")
    @classmethod
    def _memory_size(cls, value: str | None) -> str | None:
        from ..memory import parse_memory

        if value is not None:
            parse_memory(value)
        return value


class Recipe(_Section):
    model: ModelSettings
    data: DataSettings
    rewards: Annotated[
        list[dict[str, Any]] | None,
        ConfigField("reward_terms", method="reward_terms"),
        ConfigField(
            "reward_weights",
            through="each term's weight",
            refuse_as=("each term's weight in rewards: instead (a function term names a TRL reward function)"),
        ),
    ] = Field(None, description="reward terms: consistency, reference, agreement, function (grpo_sim.reward_terms)")
    reward: RewardSettings = Field(default_factory=RewardSettings)
    training: dict[str, Any] = Field(default_factory=dict)
    evaluation: EvaluationSettings = Field(default_factory=EvaluationSettings)
    sft: SFTSettings = Field(default_factory=SFTSettings)
    hardware: HardwareSettings = Field(default_factory=HardwareSettings)
    output_dir: Annotated[
        str | None,
        ConfigField(
            "output_dir",
            through="the run directory",
            refuse_as=("--output-dir (or the top-level output_dir key) instead"),
        ),
    ] = None

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
        from ..reward_terms import legacy_reward_terms

        if self.rewards is not None:
            return [dict(term) for term in self.rewards]
        legacy = self.reward.legacy_terms()
        return legacy if legacy is not None else legacy_reward_terms()

    def trainer_kwargs(self, output_dir: str | os.PathLike[str]) -> dict[str, Any]:
        """Keyword arguments for PSGRPOConfig: the training section plus what the other sections' keys set (their
        :class:`ConfigField` marks; unset keys keep PSGRPOConfig's own defaults)."""
        return {**self.training, **config_kwargs(self), "output_dir": str(output_dir)}
