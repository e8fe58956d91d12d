"""PS-GRPO inside TRL: ``PSGRPOConfig`` and ``PSGRPOTrainer(trl.GRPOTrainer)``.

What changes relative to TRL (everything else — generation incl. vLLM, loss types, KL, importance
sampling, PEFT, logging, checkpoints — is TRL's own code):

1. the train/eval samplers keep each paraphrase set whole and contiguous in a generation batch
   (:class:`~grpo_sim.sampler.ParaphraseSetSampler`);
2. ``_calculate_rewards`` gathers completions and ids from every process BEFORE scoring; each
   process scores only its share of the paraphrase sets (:func:`~grpo_sim.rewards.set_shards`)
   with :func:`~grpo_sim.rewards.group_similarity_rewards` and the consistency rewards are
   gathered back, so every process ends with the whole batch's column. Relaxed sampling is
   seeded per set from checkpointed state (:func:`generation_index`), so rewards are
   bit-identical for any number of processes and across a resume. It then applies the collapse
   penalty and logs set statistics (from the gathered texts);
3. ``_generate_and_score_completions`` replaces TRL's advantages only for ``advantage_mode`` ``set``
   or ``batch``; ``paraphrase`` (the paper) is exactly TRL's per-group normalisation.

The rewards are reward terms (:mod:`grpo_sim.reward_terms`): consistency and agreement are scored
across a set as above; reference and function terms are ordinary TRL reward functions. A dataset
without set/paraphrase ids is ordinary prompts: TRL's own sampler and grouping (one group per
prompt), and only the collapse penalty (a recipe setting) is added.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from accelerate.utils import gather_object
from torch.utils.data import Sampler
from trl import GRPOConfig, GRPOTrainer

from . import trl_internals
from .advantages import group_advantages, group_codes
from .reward_terms import (
    RewardFunctionError,
    RewardTerm,
    check_reward_values,
    legacy_reward_terms,
    load_reward_function,
    parse_reward_terms,
    reward_call_failure,
)
from .rewards import (
    RelaxedSampling,
    apply_collapse_penalty,
    as_texts,
    group_similarity_rewards,
    majority_agreement_rewards,
    merge_shards,
    reference_rewards,
    set_shards,
    set_statistics,
    short_completion_mask,
)
from .sampler import ParaphraseSetSampler, SetLayoutError, build_set_layout, check_batch_fits_sets
from .similarity import get_similarity
from .similarity.text import REPEAT_MIN_COPIES, REPETITIVE_ANSWER_WARN_RATE, repetitive_answer_rate
from .vllm_sync import WEIGHT_SYNC_MODES, post_reload, vllm_generation_factory

logger = logging.getLogger(__name__)

ADVANTAGE_MODES = ("paraphrase", "set", "batch")
REWARD_STREAMS = {"train": 0, "eval": 1}
COLLAPSE_WARNING_EVERY_STEPS = 10  # a persisting collapse is warned about at most once per this many steps
#: each process's generation state in a checkpoint (see PSGRPOTrainer._save_checkpoint)
GENERATION_STATE_FILE = "grpo_sim_generation_{rank}.pt"
#: the settings a saved generation batch was cut for; a resume with other values generates a new batch
GENERATION_LAYOUT = (
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "steps_per_generation",
    "num_iterations",
    "num_generations",
    "generation_batch_size",
)


def generation_index(
    global_step: int,
    micro_step: int,
    gradient_accumulation_steps: int,
    steps_per_generation: int,
    num_iterations: int,
) -> int:
    """Which training generation batch is being generated, from state a checkpoint restores.

    TRL generates a new batch every ``steps_per_generation * num_iterations`` micro-steps. The
    absolute micro-step is ``global_step * gradient_accumulation_steps`` plus the position inside
    the current optimizer step, ``micro_step % gradient_accumulation_steps``: ``micro_step`` (TRL's
    ``_step``) restarts at 0 on resume, but checkpoints are taken at optimizer-step boundaries, so
    its position inside the step is the same in a resumed and an uninterrupted run.
    """
    absolute = global_step * gradient_accumulation_steps + micro_step % gradient_accumulation_steps
    return absolute // (steps_per_generation * num_iterations)


class RolloutServerLost(RuntimeError):
    """The vLLM rollout server (``vllm_mode: server``) stopped answering; raised on every process alike."""


class _LostRollout:
    """What rank 0 broadcasts instead of completions once the server is gone.

    TRL broadcasts rank 0's completions to every process and iterates them right after; iterating this raises
    :class:`RolloutServerLost`, so every process stops at the same point of the same step instead of rank 0 dying
    alone while the others wait in a collective.
    """

    def __init__(self, message: str):
        self.message = message

    def __iter__(self):
        raise RolloutServerLost(self.message)


class _RolloutServerWatch:
    """Wraps rank 0's ``trl`` VLLMClient: a lost connection becomes a :class:`_LostRollout` for every process.

    Weight updates and cache resets that fail are skipped (the parameter iterator is still drained, since under
    ZeRO-3 walking it is collective); the next ``generate`` then returns the lost marker without calling out.
    """

    def __init__(self, client: Any):
        self._client = client
        self.lost: str | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def _connection_lost(self, what: str, exc: BaseException) -> None:
        if self.lost is None:
            where = f"{getattr(self._client, 'base_url', 'the vLLM server')}"
            self.lost = f"lost the vLLM rollout server at {where} during {what} ({type(exc).__name__}: {exc})"
            logger.error("%s", self.lost)

    def update_named_params(self, metadata: Any, params: Any) -> Any:
        params = iter(params)
        if self.lost is None:
            try:
                return self._client.update_named_params(metadata, params)
            except _connection_errors() as exc:
                self._connection_lost("the weight update", exc)
        for _ in params:  # take part in the collectives the other processes run while walking the parameters
            pass
        return None

    def reload_weights(self, directory: Any, timeout: float) -> None:
        """vLLM's reload from ``directory`` (the CPU weight sync, grpo_sim.vllm_sync); at most ``timeout`` seconds."""
        if self.lost is None:
            try:
                post_reload(self._client.base_url, directory, timeout)
            except _connection_errors() as exc:
                self._connection_lost("the weight reload", exc)

    def reset_prefix_cache(self) -> Any:
        if self.lost is None:
            try:
                return self._client.reset_prefix_cache()
            except _connection_errors() as exc:
                self._connection_lost("a cache reset", exc)
        return None

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        if self.lost is None:
            try:
                return self._client.generate(*args, **kwargs)
            except _connection_errors() as exc:
                self._connection_lost("generation", exc)
        lost = _LostRollout(self.lost or "lost the vLLM rollout server")
        return {"prompt_ids": lost, "completion_ids": lost, "logprobs": lost, "logprob_token_ids": lost}


def _connection_errors() -> tuple[type[BaseException], ...]:
    """What a server that went away raises in TRL's client (requests), plus the builtin connection errors."""
    errors: tuple[type[BaseException], ...] = (ConnectionError,)
    try:
        import requests

        errors += (requests.exceptions.ConnectionError, requests.exceptions.Timeout)
    except ImportError:  # pragma: no cover - requests comes with TRL's vllm extra and huggingface_hub
        pass
    return errors


@dataclass
class PSGRPOConfig(GRPOConfig):
    """``trl.GRPOConfig`` plus the PS-GRPO reward, advantage and collapse-guard settings.

    ``num_generations`` is g (rollouts per paraphrase); the number of paraphrases per set n comes
    from the data. The rewards are ``reward_terms`` (see :mod:`grpo_sim.reward_terms`), each with its own
    weight; ``reward_weights`` (TRL's field) weighs only extra ``reward_funcs`` passed to the trainer.
    """

    reward_terms: list[dict[str, Any]] | None = field(
        default=None,
        metadata={
            "help": "The reward terms, weighted and summed as TRL sums reward functions: a list of mappings "
            "with a 'type' (consistency, reference, agreement, function), a 'weight' and the type's own keys "
            "(see grpo_sim.reward_terms). None (the default): the terms the shorthand fields below describe when "
            "one is set; else one BLEU-2 consistency term where the training data has paraphrase sets and no term "
            "on ordinary rows, where the trainer's reward_funcs are the whole reward, as in trl.GRPOTrainer. "
            "[] : no term anywhere. A set term given explicitly on ordinary rows is an error."
        },
    )
    # The shorthand of the first PS-GRPO versions (consistency + accuracy). None = not set; they only apply
    # when reward_terms is None, and then mean: bleu2 consistency x 1.0, no accuracy, exact reward.
    similarity: str | None = field(
        default=None,
        metadata={
            "help": "Shorthand (when reward_terms is None): the consistency similarity, a registry spec "
            "('bleu2', 'token_f1', 'embedding:model=PATH', ...) or 'my_pkg.module:function'; default bleu2."
        },
    )
    consistency_weight: float | None = field(
        default=None,
        metadata={"help": "Shorthand: weight alpha of the consistency reward (default 1.0; 0 disables it)."},
    )
    accuracy_weight: float | None = field(
        default=None,
        metadata={"help": "Shorthand: weight gamma of the accuracy reward against the gold answers (default 0)."},
    )
    accuracy_metric: str | None = field(
        default=None, metadata={"help": "Shorthand: similarity of the accuracy reward (default token_f1)."}
    )
    relaxed_kappa: int | None = field(
        default=None,
        metadata={
            "help": "Shorthand: relaxed reward, other paraphrases sampled per completion (paper: 3). "
            "None computes the exact reward over all other paraphrases."
        },
    )
    relaxed_samples: int | None = field(
        default=None,
        metadata={"help": "Shorthand: relaxed reward, rollouts sampled per chosen paraphrase (default 1)."},
    )
    advantage_mode: str = field(
        default="paraphrase",
        metadata={
            "help": "Where advantages are normalised: 'paraphrase' (each paraphrase's g rollouts, the "
            "paper), 'set' (all n*g completions of a set) or 'batch' (the whole generation batch). "
            "`scale_rewards` still chooses group/batch/none std scaling."
        },
    )
    set_id_column: str = field(default="set_id", metadata={"help": "Dataset column holding the paraphrase set id."})
    paraphrase_id_column: str = field(
        default="paraphrase_id", metadata={"help": "Dataset column holding the paraphrase id within its set."}
    )
    answers_column: str = field(
        default="answers", metadata={"help": "Dataset column with the gold answers (a string or list of strings)."}
    )
    collapse_penalty: bool | None = field(
        default=None,
        metadata={
            "help": "Give completions shorter than `collapse_min_words` words (empty ones included) the "
            "batch's minimum reward, so agreeing on an empty answer never pays. None (the default): on where the "
            "training data has paraphrase sets (similarity between completions is what an empty answer games), off "
            "on ordinary rows, which then train exactly as trl.GRPOTrainer trains them; True/False: everywhere."
        },
    )
    collapse_min_words: int = field(
        default=1, metadata={"help": "Completions with fewer words than this are penalised and counted as empty."}
    )
    collapse_warn_identical: float = field(
        default=0.9,
        metadata={
            "help": "Warn when at least this fraction of sets answer every paraphrase identically while "
            "accuracy is low or answers are very short."
        },
    )
    collapse_warn_empty: float = field(
        default=0.2, metadata={"help": "Warn when at least this fraction of completions is empty/short."}
    )
    collapse_warn_entropy_ratio: float = field(
        default=0.2,
        metadata={"help": "Warn when the policy entropy falls below this fraction of its first logged value."},
    )
    vllm_weight_sync: Literal["auto", "nccl", "reload"] = field(
        default="auto",
        metadata={
            "help": "How trained weights reach vLLM (use_vllm): 'nccl' TRL's NCCL transfer (CUDA only), 'reload' "
            "vLLM's reload_weights (any device; server mode needs the server in dev mode and vllm_sync_dir), "
            "'auto' reload when the policy is not on CUDA, else nccl. See grpo_sim.vllm_sync."
        },
    )
    vllm_sync_dir: str | None = field(
        default=None,
        metadata={
            "help": "vllm_weight_sync reload, server mode: the directory the weights are written to for the server "
            "to read (same machine or a shared filesystem). None: <output_dir>/vllm-weights."
        },
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.advantage_mode not in ADVANTAGE_MODES:
            raise ValueError(
                f"advantage_mode={self.advantage_mode!r} is not valid: use one of {', '.join(ADVANTAGE_MODES)}"
            )
        if self.advantage_mode != "paraphrase" and self.multi_objective_aggregation != "sum_then_normalize":
            raise ValueError(
                f"advantage_mode={self.advantage_mode!r} needs multi_objective_aggregation='sum_then_normalize' "
                f"(got {self.multi_objective_aggregation!r}); use advantage_mode='paraphrase' to keep TRL's "
                "normalize_then_sum"
            )
        self.reward_terms = self._resolve_reward_terms()
        if self.vllm_weight_sync not in WEIGHT_SYNC_MODES:
            raise ValueError(
                f"vllm_weight_sync={self.vllm_weight_sync!r} is not valid: use one of {', '.join(WEIGHT_SYNC_MODES)}"
            )
        if self.collapse_min_words < 0:
            raise ValueError(f"collapse_min_words must be >= 0, got {self.collapse_min_words}")
        for name in ("collapse_warn_identical", "collapse_warn_empty", "collapse_warn_entropy_ratio"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {value}")
        if self.num_generations < 2 and self.advantage_mode == "paraphrase" and self.scale_rewards != "none":
            raise ValueError(
                "num_generations must be >= 2 for advantage_mode='paraphrase' (a group of one rollout has no "
                "spread); use advantage_mode='set' for g = 1"
            )

    _SHORTHAND = (
        "similarity",
        "consistency_weight",
        "accuracy_weight",
        "accuracy_metric",
        "relaxed_kappa",
        "relaxed_samples",
    )

    def _resolve_reward_terms(self) -> list[dict[str, Any]] | None:
        """reward_terms, or the terms of the shorthand fields, or None (the default: see :meth:`terms_for`);
        validated (similarity specs resolve, functions import), so a typo fails before any model loads."""
        given = {name: getattr(self, name) for name in self._SHORTHAND if getattr(self, name) is not None}
        if self.reward_terms is not None and given:
            raise ValueError(
                f"give the rewards either as reward_terms or with the shorthand fields {sorted(given)}, not both"
            )
        raw = self.reward_terms
        if raw is None:
            for name in ("consistency_weight", "accuracy_weight"):
                if name in given and not np.isfinite(given[name]):
                    raise ValueError(f"{name} must be a finite number, got {given[name]!r}")
            if given.get("relaxed_kappa") is not None:
                RelaxedSampling(given["relaxed_kappa"], given.get("relaxed_samples", 1))  # validates both
            elif given.get("relaxed_samples", 1) < 1:
                raise ValueError(f"relaxed_samples must be >= 1, got {given['relaxed_samples']}")
            if not given:
                return None  # the default: it depends on the data (terms_for)
            raw = legacy_reward_terms(**given)
        return [term.as_dict() for term in parse_reward_terms(raw, "reward_terms")] if raw else []

    def terms_for(self, paraphrase_sets: bool) -> list[RewardTerm]:
        """The reward terms a trainer uses on its training data, as objects (``reward_terms`` is kept as plain
        mappings: it is saved with the config). ``reward_terms=None`` is the default: one BLEU-2 consistency term
        (``legacy_reward_terms()``) on paraphrase-set data, no term on ordinary rows (TRL's reward_funcs only)."""
        raw = self.reward_terms
        if raw is None:
            raw = legacy_reward_terms() if paraphrase_sets else []
        return parse_reward_terms(raw, "reward_terms", check=False) if raw else []

    @property
    def terms(self) -> list[RewardTerm]:
        """The reward terms on paraphrase-set data (:meth:`terms_for`)."""
        return self.terms_for(paraphrase_sets=True)

    def collapse_penalty_for(self, paraphrase_sets: bool) -> bool:
        """Whether the collapse penalty applies: ``collapse_penalty``, or by default only on paraphrase sets."""
        return paraphrase_sets if self.collapse_penalty is None else bool(self.collapse_penalty)


class _SetTermPlaceholder:
    """Stands in TRL's reward list for a term scored across the paraphrases of a set (consistency, agreement).

    TRL calls reward functions on the local slice only; the real values need the whole generation
    batch, so this returns zeros and :meth:`PSGRPOTrainer._calculate_rewards` overwrites the column
    after gathering.
    """

    def __init__(self, name: str):
        self.__name__ = name

    def __call__(self, completions: list, **kwargs: Any) -> list[float]:
        return [0.0] * len(completions)


class _ReferenceReward:
    """Similarity of each completion to a reference column, as an ordinary (per-completion) TRL reward function."""

    def __init__(self, name: str, similarity: str, column: str):
        self.__name__ = name
        self.metric = get_similarity(similarity)
        self.column = column

    def __call__(self, completions: list, **kwargs: Any) -> list[float | None]:
        references = kwargs.get(self.column)
        if references is None:
            raise ValueError(
                f"reward term {self.__name__!r} needs a {self.column!r} column with references in the dataset"
            )
        rewards = reference_rewards(completions, references, similarity=self.metric)
        return [None if np.isnan(r) else float(r) for r in rewards]


class _FunctionReward:
    """A user's TRL reward function with the recipe's keyword arguments bound (TRL logs it under ``name``).

    A failure inside it, or a return value outside TRL's contract (one float or None per completion), is a
    :class:`RewardFunctionError` naming the term, the function, the step and the user's own frame.
    """

    def __init__(self, name: str, function: Any, kwargs: dict[str, Any], path: str | None = None):
        self.__name__ = name
        self.function = function
        self.kwargs = dict(kwargs)
        self.path = path or getattr(function, "__qualname__", repr(function))

    def __call__(self, **trl_kwargs: Any) -> Any:
        clash = sorted(set(self.kwargs) & set(trl_kwargs))
        if clash:
            raise ValueError(
                f"reward term {self.__name__!r}: kwargs {clash} clash with what TRL passes (dataset "
                "columns, prompts, completions, ...); rename the function's parameter"
            )
        state = trl_kwargs.get("trainer_state")
        step = state.global_step + 1 if state is not None else None  # the step whose batch is being scored
        try:
            values = self.function(**trl_kwargs, **self.kwargs)
        except Exception as exc:
            raise RewardFunctionError(reward_call_failure(self.__name__, self.function, self.path, exc, step)) from exc
        return check_reward_values(values, len(trl_kwargs.get("completions") or ()), self.__name__, self.path, step)


def _term_function(term: RewardTerm, args: "PSGRPOConfig") -> Any:
    if term.needs_sets:
        return _SetTermPlaceholder(term.name)
    if term.type == "reference":
        return _ReferenceReward(term.name, term.similarity, term.column or args.answers_column)
    return _FunctionReward(term.name, load_reward_function(term.function), term.kwargs, term.function)


def has_paraphrase_sets(dataset: Any, args: "PSGRPOConfig") -> bool:
    """Whether rows carry set or paraphrase ids (else they are ordinary prompts: one TRL group per prompt).

    Either id alone counts: such rows were meant as sets, and the column check then names the missing one.
    """
    columns = getattr(dataset, "column_names", None) or []
    return args.set_id_column in columns or args.paraphrase_id_column in columns


class _EpochPositioned(Sampler):
    """TRL's train sampler (``RepeatSampler``, ordinary prompts) with ``set_epoch``, which transformers calls before
    every epoch: a run resumed in a later epoch then shuffles as the uninterrupted run did in that epoch
    (:func:`grpo_sim.trl_internals.position_repeat_sampler`). Iterates exactly as the wrapped sampler."""

    def __init__(self, sampler: Any):
        self.sampler = sampler

    def __iter__(self):
        return iter(self.sampler)

    def __len__(self) -> int:
        return len(self.sampler)

    def set_epoch(self, epoch: int) -> None:
        trl_internals.position_repeat_sampler(self.sampler, epoch)


class PSGRPOTrainer(GRPOTrainer):
    """``trl.GRPOTrainer`` with reward terms and the PS-GRPO set reward (see the module docstring).

    A drop-in for ``trl.GRPOTrainer``: the same arguments in the same order with the same defaults (``args=None``
    builds a default :class:`PSGRPOConfig` named ``<model>-GRPO``, as TRL does). The rewards are
    ``args.reward_terms`` plus ``reward_funcs`` (TRL reward functions, models, environment-owned rewards), the latter
    weighted by ``args.reward_weights``. Datasets with ``set_id`` and ``paraphrase_id`` columns (names configurable)
    are paraphrase sets; any other data (ordinary prompts, environment-owned data, streams) is trained exactly as
    ``trl.GRPOTrainer`` trains it under the default config: the default reward term (consistency) and the default
    collapse penalty apply to paraphrase sets only. A set term given explicitly on ordinary data is an error.
    Errors about TRL's arguments are TRL's own.
    """

    def __init__(
        self,
        model: Any,
        reward_funcs: Any = None,
        args: PSGRPOConfig | None = None,
        train_dataset: Any = None,
        eval_dataset: Any = None,
        processing_class: Any = None,
        reward_processing_classes: Any = None,
        callbacks: Any = None,
        optimizers: tuple[Any, Any] = (None, None),
        quantization_config: Any = None,
        peft_config: Any = None,
        tools: Any = None,
        rollout_func: Any = None,
        environment_factory: Any = None,
    ):
        if args is None:  # as TRL: a default config named after the model
            args = PSGRPOConfig(trl_internals.default_output_dir(model))
        elif not isinstance(args, PSGRPOConfig):
            raise TypeError(
                f"PSGRPOTrainer needs args=PSGRPOConfig(...), got {type(args).__module__}.{type(args).__name__}: "
                "PSGRPOConfig takes every GRPOConfig field (from grpo_sim import PSGRPOConfig as GRPOConfig)"
            )
        self.uses_sets = (
            train_dataset is not None
            and not isinstance(train_dataset, dict)
            and has_paraphrase_sets(train_dataset, args)
        )
        terms = args.terms_for(self.uses_sets)
        self._terms = terms
        #: the collapse penalty in force (PSGRPOConfig.collapse_penalty None: on for paraphrase sets only)
        self.collapse_penalty = args.collapse_penalty_for(self.uses_sets)
        set_terms = [t.name for t in terms if t.needs_sets]
        if set_terms and not self.uses_sets:
            data = (
                "there is no train_dataset"
                if train_dataset is None
                else f"train_dataset has no '{args.set_id_column}'/'{args.paraphrase_id_column}' columns "
                "(ordinary prompts)"
            )
            raise SetLayoutError(
                f"reward term(s) {set_terms} compare the paraphrases of a set, but {data}; use paraphrase-set "
                "data or drop those terms"
            )
        if not self.uses_sets and args.advantage_mode == "set":
            raise ValueError(
                "advantage_mode='set' normalises over paraphrase sets, but train_dataset has none; use "
                "'paraphrase' (one group per prompt, as TRL) or 'batch'"
            )
        self._set_terms = [(k, term) for k, term in enumerate(terms) if term.needs_sets]
        self._consistency_index = next((k for k, t in self._set_terms if t.type == "consistency"), None)
        weights_for_init = contextlib.nullcontext()
        if terms:  # the terms come first in TRL's reward list; reward_weights weighs only the user's reward_funcs
            user_funcs = (
                [] if reward_funcs is None else (reward_funcs if isinstance(reward_funcs, list) else [reward_funcs])
            )
            user_weights = args.reward_weights
            if user_weights is not None and len(user_weights) != len(user_funcs):
                raise ValueError(
                    f"reward_weights has {len(user_weights)} entries but {len(user_funcs)} extra reward_funcs were "
                    "given; in grpo-sim reward_weights weighs only the extra reward_funcs (the reward terms carry "
                    "their own weights)"
                )
            reward_funcs = [_term_function(term, args) for term in terms] + user_funcs
            weights = [term.weight for term in terms]
            weights.extend(user_weights if user_weights is not None else [1.0] * len(user_funcs))
            weights_for_init = trl_internals.reward_weights_for_init(args, weights)
            if reward_processing_classes is not None:  # TRL pairs them with reward_funcs: none for the terms
                given = (
                    reward_processing_classes
                    if isinstance(reward_processing_classes, list)
                    else [reward_processing_classes]
                )
                reward_processing_classes = [None] * len(terms) + list(given)

        for key, dataset in (("train_dataset", train_dataset), ("eval_dataset", eval_dataset)):
            if dataset is not None and not isinstance(dataset, dict):
                self._check_columns(dataset, args, key, terms, self.uses_sets)
        consistency = [term for _, term in self._set_terms if term.type == "consistency"]
        # the first consistency term's metric; tests (and users) may swap it on the trainer
        self.similarity = get_similarity(consistency[0].similarity) if consistency else None
        self._term_metrics = {
            k: get_similarity(t.similarity) for k, t in self._set_terms[1:] if t.type == "consistency"
        }
        self._train_layout = self._layout(train_dataset, args, "train_dataset") if self.uses_sets else None
        with (
            weights_for_init,
            trl_internals.vllm_generation_class(vllm_generation_factory(args)),  # the weight sync: grpo_sim.vllm_sync
        ):
            super().__init__(
                model=model,
                reward_funcs=reward_funcs,
                args=args,
                train_dataset=train_dataset,
                eval_dataset=eval_dataset,
                processing_class=processing_class,
                reward_processing_classes=reward_processing_classes,
                callbacks=callbacks,
                optimizers=optimizers,
                quantization_config=quantization_config,
                peft_config=peft_config,
                tools=tools,
                rollout_func=rollout_func,
                environment_factory=environment_factory,
            )
        self._sets_per_batch = None
        if self._train_layout is not None:
            self._sets_per_batch = check_batch_fits_sets(
                self._train_layout.paraphrases_per_set,
                self.num_generations,
                args.generation_batch_size,
                args.per_device_train_batch_size,
                self.accelerator.num_processes,
                args.steps_per_generation,
            )
        self._initial_entropy: float | None = None
        self._last_warning_step = -(10**9)
        self._global_rewards: torch.Tensor | None = None
        self._global_set_codes: np.ndarray | None = None
        self._global_para_codes: np.ndarray | None = None
        self._resumed_generation: dict[str, Any] | None = None  # read by train(), put back by training_step()

    # ----------------------------------------------------------------------------- data checks
    @staticmethod
    def _check_columns(
        dataset: Any, args: PSGRPOConfig, what: str, terms: list[RewardTerm] = (), uses_sets: bool = True
    ) -> None:
        columns = getattr(dataset, "column_names", None)
        if columns is None:
            if not uses_sets:
                return  # an ordinary stream: TRL's own checks apply
            raise TypeError(
                f"{what}: PS-GRPO needs an indexable datasets.Dataset (got {type(dataset).__name__}); sets must be "
                "grouped before training, which a stream cannot do"
            )
        # ordinary rows: TRL owns the prompt (an environment may supply it); only our terms' columns are ours
        needed = [args.set_id_column, args.paraphrase_id_column, "prompt"] if uses_sets else []
        needed += [term.column or args.answers_column for term in terms if term.type == "reference"]
        missing = list(dict.fromkeys(c for c in needed if c not in columns))
        if missing:
            layout = (
                f" PS-GRPO rows are one paraphrase each, with '{args.set_id_column}' (which set) and "
                f"'{args.paraphrase_id_column}' (which paraphrase); grpo_sim.data.to_training_rows builds them "
                "from paraphrase sets."
                if uses_sets
                else " Reference terms read their 'column'."
            )
            raise SetLayoutError(f"{what} is missing column(s) {missing} (has {columns}).{layout}")

    @staticmethod
    def _layout(dataset: Any, args: PSGRPOConfig, what: str):
        if dataset is None or isinstance(dataset, dict):
            return None
        return build_set_layout(dataset[args.set_id_column], dataset[args.paraphrase_id_column], what)

    # ----------------------------------------------------------------------------- samplers
    def _get_train_sampler(self, dataset: Any = None):
        if not self.uses_sets:
            return _EpochPositioned(super()._get_train_sampler(dataset))
        layout = self._train_layout if dataset is None else self._layout(dataset, self.args, "train_dataset")
        return ParaphraseSetSampler(
            layout,
            mini_repeat_count=self.num_generations,
            sets_per_batch=self.args.generation_batch_size // (layout.paraphrases_per_set * self.num_generations),
            repeat_count=self.num_iterations * self.args.steps_per_generation,
            shuffle=self.shuffle_dataset,
            seed=self.args.seed,
        )

    def _get_eval_sampler(self, eval_dataset: Any):
        if not has_paraphrase_sets(eval_dataset, self.args):
            if self.uses_sets and self._set_terms:
                raise SetLayoutError("eval_dataset has no paraphrase sets, but the set reward terms need them")
            return super()._get_eval_sampler(eval_dataset)
        layout = self._layout(eval_dataset, self.args, "eval_dataset")
        eval_batch = self.args.per_device_eval_batch_size * self.accelerator.num_processes
        check_batch_fits_sets(
            layout.paraphrases_per_set,
            self.num_generations_eval,
            eval_batch,
            self.args.per_device_eval_batch_size,
            self.accelerator.num_processes,
            1,
            what="per_device_eval_batch_size x processes",
        )
        return ParaphraseSetSampler(layout, mini_repeat_count=self.num_generations_eval, seed=self.args.seed)

    def get_train_dataloader(self):
        if self.uses_sets and self._train_layout is None:
            raise SetLayoutError("PSGRPOTrainer needs a train_dataset with paraphrase sets")
        return super().get_train_dataloader()

    # ----------------------------------------------------------------------------- rewards
    def _reward_seed(self, mode: str) -> tuple[int, int, int]:
        """``(seed, stream, generation batch)``: identical on every process and in a resumed run."""
        generation = generation_index(
            int(self.state.global_step),
            trl_internals.micro_step(self),
            self.args.gradient_accumulation_steps,
            self.args.steps_per_generation,
            self.num_iterations,
        )
        return int(self.args.seed), REWARD_STREAMS[mode], generation

    def _consistency_rewards(
        self, texts, set_ids, para_ids, mode: str, index: int | None = None, term: RewardTerm | None = None
    ) -> np.ndarray:
        """Score this process's share of the sets, then gather every process's share."""
        if term is None:  # the first consistency term
            index, term = next((k, t) for k, t in self._set_terms if t.type == "consistency")
        metric = self._term_metrics.get(index, self.similarity)
        relaxed = RelaxedSampling.parse(term.relaxed)
        shards = set_shards(set_ids, self.accelerator.num_processes)
        mine = np.flatnonzero(shards == self.accelerator.process_index)
        own_sets = list(dict.fromkeys(set_ids[k] for k in mine))
        share, error = None, None
        try:
            share = group_similarity_rewards(
                texts,
                set_ids,
                para_ids,
                metric,
                approx=relaxed,
                seed=self._reward_seed(mode),
                sets=own_sets,
            )[mine]
        except Exception as exc:  # noqa: BLE001 - re-raised below on EVERY process
            error = exc
        # One process failing alone would leave the others waiting in the gather: fail everywhere together.
        shares = gather_object([(share, None if error is None else f"{type(error).__name__}: {error}")])
        failures = [(rank, message) for rank, (_, message) in enumerate(shares) if message is not None]
        if failures:
            rank, message = failures[0]
            raise ValueError(f"{term.name} reward ({term.similarity}) failed on process {rank}: {message}") from error
        return merge_shards([values for values, _ in shares], shards)

    @torch.no_grad()
    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        started = time.perf_counter()
        rewards_per_func = self._score_rewards(inputs, prompts, completions, completion_ids_list)
        mode = "train" if self.model.training else "eval"
        # what the relaxed reward saves: seconds spent scoring one generation batch (every term, gathers included)
        self._metrics[mode]["ps_grpo/reward_seconds"].append(time.perf_counter() - started)
        return rewards_per_func

    def _score_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        mode = "train" if self.model.training else "eval"
        with_sets = (
            bool(inputs) and self.args.set_id_column in inputs[0] and self.args.paraphrase_id_column in inputs[0]
        )
        if not with_sets and not self.collapse_penalty:  # ordinary rows, no penalty: exactly TRL's rewards
            if mode == "train":  # warned, not logged: the logs stay TRL's (this process's completions)
                self._warn_on_repetition(repetitive_answer_rate(as_texts(completions)))
            self._global_rewards = trl_internals.weighted_reward_sum(rewards_per_func, self.reward_weights)
            self._global_set_codes = np.arange(rewards_per_func.shape[0], dtype=np.int64)
            self._global_para_codes = self._global_set_codes
            return rewards_per_func
        if with_sets:
            local = [
                (text, row[self.args.set_id_column], row[self.args.paraphrase_id_column])
                for text, row in zip(as_texts(completions), inputs)
            ]
        else:  # ordinary prompts: every completion is its own "set" for the statistics below
            local = [(text, None, None) for text in as_texts(completions)]
        gathered = gather_object(local)  # process order == TRL's gathered reward order
        texts = [t for t, _, _ in gathered]
        set_ids = [s for _, s, _ in gathered]
        para_ids = [p for _, _, p in gathered]
        for index, term in self._set_terms if with_sets else ():
            if term.type == "consistency":
                values = self._consistency_rewards(texts, set_ids, para_ids, mode, index, term)
            else:  # agreement: cheap, the same on every process
                values = majority_agreement_rewards(texts, set_ids, para_ids, ignore_empty=term.ignore_empty)
            rewards_per_func[:, index] = torch.as_tensor(
                values, dtype=rewards_per_func.dtype, device=rewards_per_func.device
            )
        short = short_completion_mask(texts, self.args.collapse_min_words)
        if self.collapse_penalty and short.any():
            penalised = apply_collapse_penalty(rewards_per_func.cpu().double().numpy(), short)
            rewards_per_func = torch.as_tensor(penalised, dtype=rewards_per_func.dtype, device=rewards_per_func.device)
        combined = trl_internals.weighted_reward_sum(rewards_per_func, self.reward_weights)
        self._global_rewards = combined
        if with_sets:
            self._global_set_codes = group_codes(set_ids)
            self._global_para_codes = group_codes(set_ids, para_ids)
            self._log_set_statistics(mode, texts, set_ids, para_ids, combined, short)
        else:
            self._global_set_codes = np.arange(len(texts), dtype=np.int64)
            self._global_para_codes = self._global_set_codes
            trl_internals.log_metric(
                self, mode, "ps_grpo/frac_penalised", float(short.mean()) if self.collapse_penalty else 0.0
            )
            repetitive = repetitive_answer_rate(texts)  # "The The The ...": degenerate whatever the reward says
            trl_internals.log_metric(self, mode, "ps_grpo/frac_repetitive", repetitive)
            if mode == "train":
                self._warn_on_repetition(repetitive)
        return rewards_per_func

    def _log_set_statistics(self, mode, texts, set_ids, para_ids, combined, short) -> None:
        stats = set_statistics(
            texts, set_ids, para_ids, rewards=combined.cpu().double().numpy(), min_words=self.args.collapse_min_words
        )
        logged = {
            "ps_grpo/agreement": stats["agreement"],
            "ps_grpo/frac_empty": stats["frac_empty"],
            "ps_grpo/frac_sets_identical": stats["frac_sets_identical"],
            "ps_grpo/frac_reward_zero_std_paraphrase": stats["frac_zero_std_paraphrase"],
            "ps_grpo/frac_reward_zero_std_set": stats["frac_zero_std_set"],
            "ps_grpo/frac_penalised": float(short.mean()) if self.collapse_penalty else 0.0,
            "ps_grpo/frac_repetitive": stats["frac_repetitive"],
        }
        for key, value in logged.items():
            trl_internals.log_metric(self, mode, key, value)
        if mode == "train":
            self._warn_on_collapse(stats)
            self._warn_on_repetition(stats["frac_repetitive"])

    def _warn_on_repetition(self, rate: float) -> None:
        """A warning (at most every COLLAPSE_WARNING_EVERY_STEPS steps) when completions repeat a word or phrase."""
        if not rate >= REPETITIVE_ANSWER_WARN_RATE:
            return
        if self.state.global_step - getattr(self, "_last_repetition_warning_step", -COLLAPSE_WARNING_EVERY_STEPS) < (
            COLLAPSE_WARNING_EVERY_STEPS
        ):
            return
        self._last_repetition_warning_step = self.state.global_step
        logger.warning(
            "degenerate completions at step %d: %.0f%% repeat a word or phrase %d+ times in a row (e.g. 'The The "
            "The'; warning at %.0f%%); check the completions, lower the learning rate or raise the temperature",
            self.state.global_step,
            100 * rate,
            REPEAT_MIN_COPIES,
            100 * REPETITIVE_ANSWER_WARN_RATE,
        )

    def _warn_on_collapse(self, stats: dict[str, float]) -> None:
        entropy = trl_internals.last_metric(self, "train", "entropy")
        if entropy is not None and self._initial_entropy is None and entropy > 0:
            self._initial_entropy = entropy
        reasons = []
        if stats["frac_empty"] >= self.args.collapse_warn_empty:
            reasons.append(
                f"{stats['frac_empty']:.0%} of completions are empty or shorter than "
                f"{self.args.collapse_min_words} word(s)"
            )
        if stats["frac_sets_identical"] >= self.args.collapse_warn_identical:
            # Identical answers within a set are what consistency training wants; collapse is one
            # answer for different questions. With one set per batch that cannot be told apart, so
            # fall back to "short answers or no accuracy reward".
            if stats.get("num_sets", 1) >= 2:
                suspicious = stats.get("frac_modal_answer", 0.0) >= 0.5
            else:
                suspicious = stats["mean_words"] < 2 * max(
                    self.args.collapse_min_words, 1
                ) or not PSGRPOTrainer._has_anchor(self)
            if suspicious:
                shared = ""
                if "frac_modal_answer" in stats:
                    shared = (
                        f", {stats['frac_modal_answer']:.0%} of all completions answer "
                        f"{stats.get('modal_answer', '')[:40]!r}"
                    )
                reasons.append(
                    f"{stats['frac_sets_identical']:.0%} of sets give every paraphrase the identical answer "
                    f"(mean {stats['mean_words']:.1f} words{shared})"
                )
        if (
            entropy is not None
            and self._initial_entropy
            and entropy < self.args.collapse_warn_entropy_ratio * self._initial_entropy
        ):
            reasons.append(f"policy entropy fell to {entropy:.3f} from {self._initial_entropy:.3f}")
        if reasons and self.state.global_step - self._last_warning_step >= COLLAPSE_WARNING_EVERY_STEPS:
            self._last_warning_step = self.state.global_step
            if any(term.needs_sets for term in self.args.terms) and not PSGRPOTrainer._has_anchor(self):
                advice = (
                    "a similarity-only reward is maximised by one constant answer: add an accuracy reward "
                    "(a reference term against the gold answers), keep collapse_penalty on, or lower the "
                    "learning rate"
                )
            else:
                advice = "check the completions; lower the learning rate or raise the temperature if this persists"
            logger.warning("possible collapse at step %d: %s (%s)", self.state.global_step, "; ".join(reasons), advice)

    def _has_anchor(self) -> bool:
        """Whether a reference term (e.g. accuracy against gold answers) is weighted: it pays for being right."""
        return any(term.type == "reference" and term.weight != 0 for term in self.args.terms)

    # ----------------------------------------------------------------------------- a lost rollout server
    def _watch_rollout_server(self) -> None:
        """Rank 0 talks to the vLLM server alone (server mode); wrap its client once (see _RolloutServerWatch)."""
        generation = getattr(self, "vllm_generation", None)
        if (
            not getattr(self, "use_vllm", False)
            or generation is None
            or getattr(generation, "mode", None) != "server"
            or not self.accelerator.is_main_process
        ):
            return
        client = getattr(generation, "vllm_client", None)
        if client is not None and not isinstance(client, _RolloutServerWatch):
            generation.vllm_client = _RolloutServerWatch(client)

    def train(self, *args: Any, **kwargs: Any):
        """TRL's train; a lost rollout server ends it with a checkpoint of the last completed step on every rank.

        Resuming (``resume_from_checkpoint``) also restores the checkpoint's generation state: see
        :meth:`_save_checkpoint`.
        """
        checkpoint = kwargs.get("resume_from_checkpoint", args[0] if args else None)
        resumed = self._read_generation_state(checkpoint)
        if checkpoint and self.accelerator.num_processes > 1:
            # all or none: a process generating while the others reuse their batch would wait in a collective
            readable = gather_object([resumed is not None])
            if not all(readable):
                if resumed is not None:
                    logger.warning(
                        "%s: process(es) %s cannot restore their generation state; every process generates anew",
                        checkpoint,
                        [rank for rank, ok in enumerate(readable) if not ok],
                    )
                resumed = None
        self._resumed_generation = resumed
        try:
            return super().train(*args, **kwargs)
        except RolloutServerLost as lost:
            checkpoint = self.save_checkpoint_now()
            raise RolloutServerLost(
                f"{lost}. Saved {checkpoint} (step {self.state.global_step}); restart the server and continue with "
                "--resume auto"
            ) from None

    def save_checkpoint_now(self) -> str:
        """Save ``checkpoint-<global_step>`` as the trainer's own periodic save does, on every process.

        Generation starts a step, so the model and optimizer hold the last completed step; the callbacks hear
        ``on_save`` (grpo-sim's runner marks the checkpoint complete there); transformers' private
        ``_save_checkpoint`` is called through grpo_sim.trl_internals.
        """
        trl_internals.save_checkpoint(self)
        self.control = self.callback_handler.on_save(self.args, self.state, self.control)
        self.accelerator.wait_for_everyone()
        return f"{self.args.output_dir}/checkpoint-{self.state.global_step}"

    # ----------------------------------------------------------------------------- exact resume
    def _save_checkpoint(self, model: Any, trial: Any) -> None:
        """transformers' checkpoint, plus what TRL would otherwise generate again when resuming inside a window.

        TRL generates one batch every ``steps_per_generation x num_iterations`` micro-steps and trains on its
        slices in between; a checkpoint saved inside that window holds the weights and RNG states but not the
        batch, so a resumed run would generate anew from the moved weights and drift from the uninterrupted run.
        Each process saves its own slice of the batch, TRL's micro-step count, the metrics and loss gathered
        since the last log (:func:`grpo_sim.trl_internals.generation_state`) and the collapse watch's state, as
        ``GENERATION_STATE_FILE``; resuming puts them back before the first step. Not with ``save_only_model``
        (no optimizer or RNG either: such a resume is not exact anyway).
        """
        super()._save_checkpoint(model, trial)
        if self.args.save_only_model:
            return
        folder = Path(trl_internals.checkpoint_folder(self, trial))
        folder.mkdir(parents=True, exist_ok=True)
        state = {
            "global_step": int(self.state.global_step),
            "layout": self._generation_layout(),
            "trl": trl_internals.generation_state(self),
            "collapse_watch": {"initial_entropy": self._initial_entropy, "last_warning_step": self._last_warning_step},
        }
        target = folder / GENERATION_STATE_FILE.format(rank=self.accelerator.process_index)
        partial = target.with_name(target.name + ".partial")
        try:
            torch.save(state, partial)
            os.replace(partial, target)
        except Exception as exc:  # noqa: BLE001 - a long run must not die at a checkpoint over what only exactness needs
            partial.unlink(missing_ok=True)
            logger.warning(
                "%s: could not save the generation state (%s: %s); resuming from it generates a new batch",
                folder,
                type(exc).__name__,
                exc,
            )
        # no process returns (and the main one marks the checkpoint complete) before every process wrote its file
        self.accelerator.wait_for_everyone()

    def _generation_layout(self) -> dict[str, int]:
        layout = {key: int(getattr(self.args, key)) for key in GENERATION_LAYOUT}
        layout["num_processes"] = int(self.accelerator.num_processes)
        return layout

    def _read_generation_state(self, checkpoint: Any) -> dict[str, Any] | None:
        """This process's generation state saved in ``checkpoint``, or None (with a warning saying why)."""
        if checkpoint is None or checkpoint is False:
            return None
        if checkpoint is True:  # transformers' own meaning: the newest checkpoint in output_dir
            from transformers.trainer_utils import get_last_checkpoint

            checkpoint = get_last_checkpoint(self.args.output_dir)
            if checkpoint is None:
                return None  # transformers says so itself
        path = Path(checkpoint) / GENERATION_STATE_FILE.format(rank=self.accelerator.process_index)
        if not path.is_file():
            logger.warning(
                "%s has no %s (saved by an earlier grpo-sim, by trl.GRPOTrainer, or by fewer processes): the "
                "resumed run generates its first batch anew, so it can differ from an uninterrupted run when the "
                "checkpoint falls inside a generation window",
                checkpoint,
                path.name,
            )
            return None
        device = self.accelerator.device  # on CPU under DDP "cpu:0", which torch.load does not map
        try:
            state = torch.load(path, map_location="cpu" if device.type == "cpu" else device, weights_only=True)
        except Exception as exc:  # noqa: BLE001 - the checkpoint itself is still good: resume as TRL would
            logger.warning(
                "%s: cannot read %s (%s: %s); the resumed run generates its first batch anew, so it can differ "
                "from an uninterrupted run",
                checkpoint,
                path.name,
                type(exc).__name__,
                exc,
            )
            return None
        saved, now = state.get("layout", {}), self._generation_layout()
        if saved != now:
            changed = ", ".join(f"{k} {saved.get(k)} -> {now[k]}" for k in now if saved.get(k) != now[k])
            logger.warning(
                "%s: the saved generation batch was cut for other settings (%s); the resumed run generates a new "
                "one, so it can differ from an uninterrupted run",
                checkpoint,
                changed,
            )
            return None
        return state

    def training_step(self, model: Any, inputs: Any, num_items_in_batch: Any = None):
        """TRL's step; the first one of a resumed run first puts the checkpoint's generation state back."""
        resumed, self._resumed_generation = self._resumed_generation, None
        if resumed is not None:
            trl_internals.restore_generation_state(self, resumed["trl"])
            self._initial_entropy = resumed["collapse_watch"]["initial_entropy"]
            self._last_warning_step = int(resumed["collapse_watch"]["last_warning_step"])
        return super().training_step(model, inputs, num_items_in_batch)

    # ----------------------------------------------------------------------------- advantages
    def _generate_and_score_completions(self, inputs):
        self._watch_rollout_server()
        output = super()._generate_and_score_completions(inputs)
        if self.args.advantage_mode == "paraphrase":
            return output
        groups = self._global_set_codes if self.args.advantage_mode == "set" else np.zeros_like(self._global_set_codes)
        advantages, zero_std = group_advantages(self._global_rewards, groups, scale=self.args.scale_rewards)
        advantages = advantages.to(output["advantages"].device, output["advantages"].dtype)
        local = len(output["advantages"])
        start = self.accelerator.process_index * local
        output["advantages"] = advantages[start : start + local]
        mode = "train" if self.model.training else "eval"
        # TRL logged the per-paraphrase zero-spread fraction and advantages; report the mode actually used
        trl_internals.replace_last_metric(self, mode, "frac_reward_zero_std", zero_std.float().mean().item())
        trl_internals.replace_logged_advantages(self, advantages.tolist())
        return output
