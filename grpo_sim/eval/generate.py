"""Answer every paraphrase of every set with a model: batched HF generation (CPU/GPU) or vLLM.

Two generation levels (Hamman et al., 2025):

* ``"e2e"``: each paraphrase with its own retrieved passages (the full RAG pipeline);
* ``"generator"``: every paraphrase with the passages of the set's first paraphrase
  (``paraphrase_id`` 0 when present, else the first listed), so only the wording varies.

Prompts are the messages training uses: the user message :func:`grpo_sim.data.schema.to_training_rows` builds
(template ``rag_short_answer`` by default) after the recipe's system prompt, rendered with the tokenizer's chat
template, ``add_generation_prompt=True`` and the recipe's chat template arguments, as TRL renders them (a
tokenizer without a chat template gets the plain text of the last message).
Generation is greedy by default (deterministic); ``do_sample=True`` samples with
``temperature`` / ``top_p`` (top-k disabled, so both backends sample the same distribution),
seeded by ``seed``. Only the new tokens are decoded (special tokens skipped) and stripped.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import re
from pathlib import Path
from typing import Any, Iterable, Mapping

from ..data.prompts import with_system_prompt
from ..data.schema import ParaphraseSet, _coerce_sets, build_rag_prompt

__all__ = [
    "build_eval_prompts",
    "generate_predictions",
    "load_eval_model",
    "resolve_model_dir",
]

_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)?$")


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def _checkpoint_step(p: Path) -> int:
    try:
        return int(p.name.rsplit("-", 1)[1])
    except (IndexError, ValueError):
        return -1


def resolve_model_dir(path_or_id: str | os.PathLike[str]) -> tuple[str, str]:
    """``(kind, location)`` of a model argument.

    kind is ``"model"`` (a directory with ``config.json``), ``"adapter"`` (a directory with
    ``adapter_config.json``: a PEFT/LoRA training output) or ``"hub"`` (not a local path; a hub
    id for ``from_pretrained``). A training output directory holding only ``checkpoint-N``
    subdirectories resolves to the highest N. A path that does not exist and does not look like
    a hub id raises :class:`FileNotFoundError` naming it.
    """
    src = str(path_or_id)
    p = Path(src).expanduser()
    if p.exists():
        if not p.is_dir():
            raise FileNotFoundError(
                f"model {src!r} is a file; expected a model directory (config.json), "
                "a training output directory (adapter_config.json / checkpoint-N) or a hub id"
            )
        if (p / "adapter_config.json").is_file():
            return "adapter", str(p)
        if (p / "config.json").is_file():
            return "model", str(p)
        ckpts = sorted(
            (c for c in p.glob("checkpoint-*") if c.is_dir() and _checkpoint_step(c) >= 0), key=_checkpoint_step
        )
        if ckpts:
            return resolve_model_dir(ckpts[-1])
        raise FileNotFoundError(
            f"model directory {src!r} has no config.json, adapter_config.json or "
            "checkpoint-N subdirectory: not a saved model or training output"
        )
    looks_local = src.startswith((".", "/", "~")) or os.sep + os.sep in src or src.count("/") > 1 or "\\" in src
    if looks_local or not _HUB_ID.match(src):
        raise FileNotFoundError(
            f"model path {src!r} does not exist (give a model directory, a training output "
            "directory or a Hugging Face hub id)"
        )
    return "hub", src


def load_eval_model(model_or_path: Any, device: str | None = None, dtype: Any = None) -> tuple[Any, Any, str]:
    """``(model, tokenizer, description)`` for evaluation.

    Accepts a local directory or hub id (loaded with :func:`grpo_sim.models.loading.load_policy`),
    a training output directory with ``adapter_config.json`` (the base model from
    ``base_model_name_or_path`` plus the adapter, merged via ``peft``; the adapter directory's
    tokenizer is preferred when it saved one) or one with ``checkpoint-N`` subdirectories (the
    last). ``device``: ``None``/``"auto"`` -> CUDA when available else CPU.
    """
    from ..models.loading import load_policy, load_tokenizer, prepare_tokenizer

    kind, loc = resolve_model_dir(model_or_path)
    desc = loc
    if kind == "adapter":
        try:
            cfg = json.loads((Path(loc) / "adapter_config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ValueError(f"{loc}/adapter_config.json is not readable JSON ({exc})") from exc
        base = cfg.get("base_model_name_or_path")
        if not base:
            raise ValueError(f"{loc}/adapter_config.json has no 'base_model_name_or_path': cannot find the base model")
        base_kind, base_loc = resolve_model_dir(base)
        model, tokenizer = _load(load_policy, base_loc, dtype)
        if (Path(loc) / "tokenizer_config.json").is_file() or (Path(loc) / "tokenizer.json").is_file():
            tokenizer = prepare_tokenizer(load_tokenizer(loc), model)
        try:
            from peft import PeftModel
        except ImportError as exc:  # pragma: no cover - peft is a dependency
            raise ImportError(f"{loc} is a LoRA/PEFT adapter: loading it needs peft (pip install peft)") from exc
        model = PeftModel.from_pretrained(model, loc)
        model = model.merge_and_unload()
        desc = f"{loc} (adapter on {base_loc})"
    else:
        model, tokenizer = _load(load_policy, loc, dtype)
    model = _to_device(model, device)
    model.eval()
    return model, tokenizer, desc


def _load(load_policy: Any, loc: str, dtype: Any) -> tuple[Any, Any]:
    try:
        return load_policy(loc, dtype=dtype)
    except (OSError, ValueError) as exc:
        if Path(loc).exists():
            raise ValueError(f"cannot load model {loc!r}: {exc}") from exc
        raise FileNotFoundError(
            f"model {loc!r}: no such local directory, and loading it as a Hugging Face hub "
            f"id failed ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
        ) from exc


def _to_device(model: Any, device: str | None) -> Any:
    import torch

    if getattr(model, "hf_device_map", None):  # placed by accelerate (device_map=...): leave it
        return model
    if device in (None, "auto"):
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return model.to(device)


# --------------------------------------------------------------------------------------------
# Prompts
# --------------------------------------------------------------------------------------------


def _reference_paraphrase(s: ParaphraseSet) -> Any:
    for p in s.paraphrases:
        if p.paraphrase_id == 0:
            return p
    return s.paraphrases[0]


def render_prompt(
    tokenizer: Any, messages: list[dict[str, str]], chat_template_kwargs: Mapping[str, Any] | None = None
) -> str:
    """The chat-template text of ``messages`` with the generation prompt and ``chat_template_kwargs``, as TRL renders
    a conversational prompt (plain text of the last message without a template)."""
    if tokenizer is not None and getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True, **(chat_template_kwargs or {})
        )
    return messages[-1]["content"]


def build_eval_prompts(
    sets: Iterable[ParaphraseSet | Mapping[str, Any]],
    level: str = "e2e",
    template: str = "rag_short_answer",
    tokenizer: Any = None,
    system_prompt: str | None = None,
    chat_template_kwargs: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """One row per paraphrase (sets and paraphrases in data order): ``set_id``,
    ``paraphrase_id``, ``question``, ``passage_ids`` (the passages actually in the prompt),
    ``answers`` (gold), ``level``, ``messages`` and ``prompt`` (rendered text).

    ``system_prompt`` and ``chat_template_kwargs``: the recipe's ``data.system_prompt`` and
    ``model.chat_template_kwargs``, so that the prompts are the training prompts' format."""
    if level not in ("e2e", "generator"):
        raise ValueError(f"level must be 'e2e' or 'generator', got {level!r}")
    rows = []
    for s in _coerce_sets(sets):
        ref = _reference_paraphrase(s)
        for p in s.paraphrases:
            passages = p.passages if level == "e2e" else ref.passages
            messages = with_system_prompt(
                [{"role": "user", "content": build_rag_prompt(p.question, passages, template=template)}], system_prompt
            )
            rows.append(
                {
                    "set_id": s.set_id,
                    "paraphrase_id": p.paraphrase_id,
                    "question": p.question,
                    "passage_ids": [x.id for x in passages],
                    "answers": list(s.answers),
                    "level": level,
                    "messages": messages,
                    "prompt": render_prompt(tokenizer, messages, chat_template_kwargs),
                }
            )
    return rows


# --------------------------------------------------------------------------------------------
# Generation
# --------------------------------------------------------------------------------------------


def _progress(enabled: bool, total: int, description: str):
    from contextlib import nullcontext

    if not enabled:
        return nullcontext(None)
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    prog = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
    )
    return _ProgressCtx(prog, total, description)


class _ProgressCtx:
    def __init__(self, prog: Any, total: int, description: str):
        self.prog, self.total, self.description = prog, total, description

    def __enter__(self):
        self.prog.__enter__()
        self.task = self.prog.add_task(self.description, total=self.total)
        return self

    def advance(self, n: int) -> None:
        self.prog.advance(self.task, n)

    def __exit__(self, *exc: Any) -> None:
        self.prog.__exit__(*exc)


def _generate_hf(
    model: Any,
    tokenizer: Any,
    texts: list[str],
    max_new_tokens: int,
    batch_size: int,
    do_sample: bool,
    temperature: float,
    top_p: float,
    seed: int,
    progress: bool,
    label: str,
) -> list[str]:
    import torch

    add_special = not bool(getattr(tokenizer, "chat_template", None))
    encoded = tokenizer(texts, add_special_tokens=add_special)["input_ids"]
    # longest first: fewer pad tokens per batch; order restored below
    order = sorted(range(len(texts)), key=lambda k: (-len(encoded[k]), k))
    gc = copy.deepcopy(getattr(model, "generation_config", None))
    if gc is None:
        from transformers import GenerationConfig

        gc = GenerationConfig()
    gc.max_new_tokens = int(max_new_tokens)
    gc.do_sample = bool(do_sample)
    if do_sample:
        gc.temperature, gc.top_p, gc.top_k = float(temperature), float(top_p), 0
    else:
        gc.temperature = gc.top_p = gc.top_k = None
    if tokenizer.pad_token_id is not None:
        gc.pad_token_id = tokenizer.pad_token_id
    kwargs: dict[str, Any] = {"generation_config": gc}
    device = getattr(model, "device", torch.device("cpu"))
    answers: list[str] = [""] * len(texts)
    old_side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    fork_devices = [device.index or 0] if getattr(device, "type", "cpu") == "cuda" else []
    try:
        with (
            torch.random.fork_rng(devices=fork_devices),
            torch.inference_mode(),
            _progress(progress, len(texts), f"generating ({label})") as bar,
        ):
            torch.manual_seed(int(seed))
            for start in range(0, len(order), max(1, int(batch_size))):
                idx = order[start : start + max(1, int(batch_size))]
                batch = tokenizer.pad({"input_ids": [encoded[k] for k in idx]}, padding=True, return_tensors="pt")
                input_ids = batch["input_ids"].to(device)
                out = model.generate(input_ids=input_ids, attention_mask=batch["attention_mask"].to(device), **kwargs)
                new = out[:, input_ids.shape[1] :]
                for k, text in zip(idx, tokenizer.batch_decode(new, skip_special_tokens=True)):
                    answers[k] = text.strip()
                if bar is not None:
                    bar.advance(len(idx))
    finally:
        tokenizer.padding_side = old_side
    return answers


def _generate_vllm(
    llm: Any,
    tokenizer: Any,
    texts: list[str],
    max_new_tokens: int,
    do_sample: bool,
    temperature: float,
    top_p: float,
    seed: int,
    progress: bool,
) -> list[str]:
    try:
        from vllm import SamplingParams
    except ImportError as exc:
        raise ImportError("backend='vllm' needs vLLM (pip install 'grpo-sim[vllm]'); or use backend='hf'") from exc
    lora_request = None
    if isinstance(llm, tuple):  # (LLM, LoRARequest) from _vllm_engine
        llm, lora_request = llm
    params = SamplingParams(
        max_tokens=int(max_new_tokens),
        temperature=float(temperature) if do_sample else 0.0,
        top_p=float(top_p) if do_sample else 1.0,
        top_k=-1,
        seed=int(seed),
    )
    add_special = not bool(getattr(tokenizer, "chat_template", None))
    # token ids, not text: vLLM's own tokenizer loading may differ from ours (tiny word-level policies)
    prompts = [{"prompt_token_ids": tokenizer(t, add_special_tokens=add_special)["input_ids"]} for t in texts]
    kwargs: dict[str, Any] = {"use_tqdm": bool(progress)}
    if lora_request is not None:
        kwargs["lora_request"] = lora_request
    outputs = llm.generate(prompts, params, **kwargs)
    return [tokenizer.decode(list(o.outputs[0].token_ids), skip_special_tokens=True).strip() for o in outputs]


def _vllm_engine(model: Any, seed: int, **llm_kwargs: Any) -> Any:
    """A ``vllm.LLM`` for a path / hub id / adapter directory (an existing engine is returned as is)."""
    if not isinstance(model, (str, os.PathLike)):
        return model
    try:
        from vllm import LLM
    except ImportError as exc:
        raise ImportError("backend='vllm' needs vLLM (pip install 'grpo-sim[vllm]'); or use backend='hf'") from exc
    kind, loc = resolve_model_dir(model)
    if kind == "adapter":
        from vllm.lora.request import LoRARequest

        cfg = json.loads((Path(loc) / "adapter_config.json").read_text(encoding="utf-8"))
        base = cfg.get("base_model_name_or_path")
        if not base:
            raise ValueError(f"{loc}/adapter_config.json has no 'base_model_name_or_path'")
        llm = LLM(
            model=base, seed=int(seed), enable_lora=True, max_lora_rank=max(8, int(cfg.get("r", 8))), **llm_kwargs
        )
        return llm, LoRARequest("eval-adapter", 1, loc)
    return LLM(model=loc, seed=int(seed), **llm_kwargs)


@dataclasses.dataclass(frozen=True)
class GenerationOptions:
    """How answers are generated: the keyword arguments :func:`generate_predictions` and ``evaluate_model``
    share (see :func:`generate_predictions`)."""

    template: str = "rag_short_answer"
    max_new_tokens: int = 32
    batch_size: int = 32
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int = 0
    backend: str = "hf"
    progress: bool = True
    system_prompt: str | None = None
    chat_template_kwargs: Mapping[str, Any] | None = None

    def generate(
        self, model: Any, tokenizer: Any, sets: Iterable[ParaphraseSet | Mapping[str, Any]], level: str = "e2e"
    ) -> list[dict[str, Any]]:
        """:func:`generate_predictions` with these options."""
        return generate_predictions(model, tokenizer, sets, level=level, **dataclasses.asdict(self))


def generate_predictions(
    model: Any,
    tokenizer: Any,
    sets: Iterable[ParaphraseSet | Mapping[str, Any]],
    level: str = "e2e",
    template: str = "rag_short_answer",
    max_new_tokens: int = 32,
    batch_size: int = 32,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_p: float = 1.0,
    seed: int = 0,
    backend: str = "hf",
    progress: bool = True,
    system_prompt: str | None = None,
    chat_template_kwargs: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Generate one answer per paraphrase (prompts as :func:`build_eval_prompts` builds them).

    Returns rows ``set_id, paraphrase_id, prompt, passage_ids, answer, level`` (plus
    ``question`` and gold ``answers``), in data order. ``backend="hf"``: ``model`` is a
    transformers causal LM (batched ``generate`` with left padding on the model's device).
    ``backend="vllm"``: ``model`` is a ``vllm.LLM`` or a path / hub id / adapter directory
    (prompts are sent as token ids of ``tokenizer``; ``tokenizer=None`` loads the model's own).
    """
    if backend not in ("hf", "vllm"):
        raise ValueError(f"backend must be 'hf' or 'vllm', got {backend!r}")
    if int(max_new_tokens) < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if do_sample and not (float(temperature) > 0 and 0 < float(top_p) <= 1):
        raise ValueError(f"sampling needs temperature > 0 and 0 < top_p <= 1 (got {temperature}, {top_p})")
    if tokenizer is None:
        if backend == "vllm" and isinstance(model, (str, os.PathLike)):
            from ..models.loading import load_tokenizer

            kind, loc = resolve_model_dir(model)
            tokenizer = load_tokenizer(loc)
        else:
            raise ValueError("generate_predictions needs the model's tokenizer")
    rows = build_eval_prompts(
        sets,
        level=level,
        template=template,
        tokenizer=tokenizer,
        system_prompt=system_prompt,
        chat_template_kwargs=chat_template_kwargs,
    )
    texts = [r["prompt"] for r in rows]
    if not texts:
        return []
    if backend == "hf":
        answers = _generate_hf(
            model, tokenizer, texts, max_new_tokens, batch_size, do_sample, temperature, top_p, seed, progress, level
        )
    else:
        answers = _generate_vllm(
            _vllm_engine(model, seed), tokenizer, texts, max_new_tokens, do_sample, temperature, top_p, seed, progress
        )
    out = []
    for r, a in zip(rows, answers):
        out.append(
            {
                "set_id": r["set_id"],
                "paraphrase_id": r["paraphrase_id"],
                "level": r["level"],
                "question": r["question"],
                "prompt": r["prompt"],
                "passage_ids": r["passage_ids"],
                "answer": a,
                "answers": r["answers"],
            }
        )
    return out
