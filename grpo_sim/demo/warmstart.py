"""Supervised warm start of the tiny demo policy, with *noisy supervision on some wordings*.

Why a noisy warm start
----------------------
PS-GRPO needs a policy that already answers sensibly but answers the wordings of one question
differently. In real data much of that inconsistency comes from the supervision itself: some ways
of asking a question are labelled less carefully than others (an annotator who copies the name
from the wrong passage, a weakly-supervised label that takes the first name that fits, a
template whose crowd-sourced answers were never checked). A model fine-tuned on such data learns
the label noise *as a function of the wording*.

The demo reproduces exactly that, deterministically:

* every relation of the synthetic world (:data:`grpo_sim.demo.world.RELATIONS`) has six
  question wordings (templates); :data:`NOISY_TEMPLATES` marks three of them per relation as
  *noisy* (never template 0, the canonical wording that every paraphrase set contains);
* a training example (one paraphrase of a training set) asked with a noisy wording gets, with
  probability ``noise_rate``, the **answer from a distractor passage** as its target: the
  other name (not the subject) of the highest-ranked retrieved passage that is not the gold
  passage, i.e. "the annotator copied the answer from the wrong passage". Clean wordings always
  get the gold answer. Which examples are corrupted is drawn once from ``seed`` (labels are
  fixed, as in a real data set);
* the policy is trained with teacher forcing on ``chat(prompt) -> answer <eos>`` (loss on the
  answer and ``<eos>`` only), plain AdamW, a fixed number of steps.

The result answers clean wordings mostly correctly and noisy wordings mostly with a distractor's
name, but not always (``noise_rate`` < 1 leaves some probability on the gold name, so GRPO
rollouts of a noisy wording still differ from each other and carry a learning signal). Since
every paraphrase set mixes the canonical wording with three random others, nearly every set mixes
clean and noisy wordings: the policy is inconsistent across the WORDING of paraphrases, on top
of the inconsistency that per-wording BM25 retrieval (different passage order) already causes.
Evaluation sets use the same templates with people and answer names never seen in training, so
what carries over is the wording-dependent behaviour, not memorised answers.

Making a 0.3M-parameter model read names it has never seen
----------------------------------------------------------
Held-out sets ask about people, cities and companies that never occur in training, and each name
is one token of the word-level vocabulary. Trained naively (trainable embeddings), the tiny model
memorises the training names instead of copying from the passages: in our runs it reached 0.81
accuracy on training sets and 0.00 on held-out ones. Three measures fix that:

* a frozen, "pretrained-like" embedding table (``freeze_embeddings``): random vectors of std
  ``embedding_std`` plus a shared *kind vector* for every person / city / company name of the
  passage corpus (``kind_scale``), the way a pretrained model knows that an unseen word is a city;
* ``name_redraw``: before every step, the identity part of every name that occurs in the training
  prompts is redrawn at random, so nothing can be tied to a particular training name; the only way
  to lower the loss is to find the answer's name in the context and copy it (held-out names are
  never touched and come from the same distribution);
* a short curriculum (``curriculum_steps``): the first steps show each question with only the
  passage its label comes from. Without it, learning to copy through a 3-passage context sat on a
  loss plateau for anything between 300 and 2,000+ steps depending on the seed; with it, every seed
  we tried left the plateau within the curriculum.

Caching
-------
:func:`warm_start` writes the policy (``save_pretrained`` model + tokenizer, plus
``warmstart.json`` with settings, timings and training statistics) to
``cache_dir/warmstart-<hash>`` where the hash covers every setting and a fingerprint of the data;
a second call with the same inputs trains nothing and returns the directory. Training is
deterministic for a seed on a given machine (same torch build and thread count).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import re
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from ..data.schema import ParaphraseSet, Passage, build_rag_prompt

__all__ = [
    "NOISY_TEMPLATES",
    "WarmStartConfig",
    "cache_key",
    "corpus_name_kinds",
    "data_fingerprint",
    "distractor_answer",
    "encode_examples",
    "publish_warm_start",
    "init_embeddings",
    "name_pools",
    "passage_answer",
    "policy_dir",
    "sft_examples",
    "train_sft",
    "warm_start",
]


#: Per relation, the question templates (indices into ``RELATIONS[r]["questions"]``) whose
#: training labels are noisy. Template 0 (the canonical wording, in every set) is always clean.
NOISY_TEMPLATES: dict[str, tuple[int, ...]] = {
    # born_in: "What is the birthplace of {s}?", "{s} was born in which city?",
    #          "What city did {s} come into the world in?"
    "born_in": (1, 2, 5),
    # lives_in: "In which city does {s} live?", "What is the home city of {s}?", "Which city is home to {s}?"
    "lives_in": (1, 3, 4),
    # founded: "{s} founded which company?", "Name the company that {s} started.",
    #          "What is the company created by {s}?"
    "founded": (2, 3, 5),
    # works_for: "{s} works for which company?", "At which company is {s} employed?", "Which firm does {s} work at?"
    "works_for": (2, 4, 5),
}

_NAME_RE = re.compile(r"\b[A-Z][a-z]+\b")


@dataclass(frozen=True)
class WarmStartConfig:
    """Everything that determines the warm-started policy (all of it goes into the cache key)."""

    # model
    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 8
    # frozen "pretrained-like" embedding table (see init_embeddings) and name identities redrawn
    # at every step (see train_sft); both keep the policy reading names from the context
    freeze_embeddings: bool = True
    embedding_std: float = 0.5
    kind_scale: float = 1.0
    name_redraw: bool = True
    # supervised training; the first `curriculum_steps` steps see only the passage each target
    # comes from (learning to copy a name is much easier without the passage choice)
    curriculum_steps: int = 300
    steps: int = 4000
    batch_size: int = 32
    learning_rate: float = 3e-3
    weight_decay: float = 0.0
    warmup_steps: int = 100
    min_lr_ratio: float = 0.1
    template: str = "rag_short_answer"
    # noisy supervision
    noisy_templates: tuple[tuple[str, tuple[int, ...]], ...] = tuple(sorted(NOISY_TEMPLATES.items()))
    noise_rate: float = 0.75
    seed: int = 0

    def __post_init__(self) -> None:
        # accept {relation: [templates]} or [[relation, [templates]], ...] (YAML / to_dict round trip)
        items = self.noisy_templates.items() if isinstance(self.noisy_templates, Mapping) else self.noisy_templates
        object.__setattr__(
            self, "noisy_templates", tuple(sorted((str(rel), tuple(int(t) for t in tids)) for rel, tids in items))
        )
        if not 0.0 <= self.noise_rate <= 1.0:
            raise ValueError(f"noise_rate must lie in [0, 1], got {self.noise_rate}")
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError("steps and batch_size must be >= 1")
        for rel, tids in self.noisy_templates:
            if 0 in tids:
                raise ValueError(f"template 0 (canonical wording) of {rel!r} cannot be noisy")

    def noisy_map(self) -> dict[str, set[int]]:
        return {rel: set(tids) for rel, tids in self.noisy_templates}

    def to_dict(self) -> dict[str, Any]:
        """JSON-able settings; ``WarmStartConfig(**config.to_dict()) == config``."""
        d = asdict(self)
        d["noisy_templates"] = {rel: list(tids) for rel, tids in self.noisy_templates}
        return d


# ------------------------------------------------------------------------------------------
# Noisy supervision
# ------------------------------------------------------------------------------------------


def passage_answer(passage: Passage) -> str | None:
    """The name in a synthetic passage that is not its subject (the passage's title), or None."""
    names = [w for w in _NAME_RE.findall(passage.text) if w != passage.title]
    return names[0] if names else None


def distractor_passage(pset: ParaphraseSet, paraphrase_index: int) -> Passage | None:
    """The highest-ranked retrieved passage of a paraphrase that is not the gold passage and
    names something other than the gold answer (None if there is none)."""
    gold_pid = pset.metadata.get("gold_passage_id")
    gold = set(pset.answers)
    for p in pset.paraphrases[paraphrase_index].passages:
        if p.id == gold_pid:
            continue
        name = passage_answer(p)
        if name and name not in gold:
            return p
    return None


def distractor_answer(pset: ParaphraseSet, paraphrase_index: int) -> str | None:
    """Answer of :func:`distractor_passage` (None if there is none)."""
    p = distractor_passage(pset, paraphrase_index)
    return None if p is None else passage_answer(p)


def _gold_passage(pset: ParaphraseSet) -> Passage | None:
    gold_pid = pset.metadata.get("gold_passage_id")
    for para in pset.paraphrases:
        for p in para.passages:
            if p.id == gold_pid:
                return p
    return None


def sft_examples(sets: Sequence[ParaphraseSet], config: WarmStartConfig) -> list[dict[str, Any]]:
    """One supervised example per paraphrase: ``prompt`` (chat messages), ``easy_prompt`` (the
    same question with only the passage the target comes from, for the curriculum), ``target``,
    ``gold``, ``noisy_template`` and ``corrupted`` (the target is a distractor's name)."""
    rng = random.Random(config.seed * 7919 + 17)
    noisy = config.noisy_map()
    out = []
    for s in sets:
        rel = s.metadata.get("relation")
        tids = s.metadata.get("templates") or [None] * len(s.paraphrases)
        for k, p in enumerate(s.paraphrases):
            is_noisy = rel in noisy and tids[k] in noisy[rel]
            draw = rng.random()  # drawn for every example so the stream does not depend on the flags
            target = s.answers[0]
            corrupted = False
            source = _gold_passage(s)
            if is_noisy and draw < config.noise_rate:
                wrong = distractor_passage(s, k)
                if wrong is not None:
                    target, corrupted, source = passage_answer(wrong), True, wrong
            out.append(
                {
                    "prompt": [{"role": "user", "content": build_rag_prompt(p.question, p.passages, config.template)}],
                    # curriculum prompt: only the passage the target was taken from
                    "easy_prompt": None
                    if source is None
                    else [{"role": "user", "content": build_rag_prompt(p.question, [source], config.template)}],
                    "target": target,
                    "gold": s.answers[0],
                    "set_id": s.set_id,
                    "paraphrase_id": p.paraphrase_id,
                    "template": tids[k],
                    "noisy_template": bool(is_noisy),
                    "corrupted": corrupted,
                }
            )
    return out


# ------------------------------------------------------------------------------------------
# Training
# ------------------------------------------------------------------------------------------


_CITY_WORDS = ("born", "birthplace", "lives", "home", "house")


def name_pools(tokenizer, sets: Sequence[ParaphraseSet]) -> dict[str, list[int]]:
    """Token ids of the names that occur in the prompts of ``sets``, by kind (``person``,
    ``city``, ``company``): the names whose identity :func:`train_sft` redraws every step."""
    pools: dict[str, set[str]] = {"person": set(), "city": set(), "company": set()}
    for s in sets:
        for p in s.paraphrases:
            for x in p.passages:
                if x.title:
                    pools["person"].add(x.title)
                obj = passage_answer(x)
                if obj:
                    kind = "city" if any(w in x.text.split() for w in _CITY_WORDS) else "company"
                    pools[kind].add(obj)
        for a in s.answers:
            kind = "city" if s.metadata.get("relation") in ("born_in", "lives_in") else "company"
            pools[kind].add(a)
    vocab = tokenizer.get_vocab()
    unk = tokenizer.unk_token_id
    out = {}
    for kind, names in pools.items():
        ids = sorted({vocab.get(n, unk) for n in names} - {unk})
        out[kind] = ids
    return out


def encode_examples(tokenizer, examples: Sequence[dict[str, Any]], key: str = "prompt") -> list[tuple[list[int], int]]:
    """``(ids, prompt_length)`` per example: chat prompt (with the assistant marker) + answer + eos.

    The prompt is tokenized exactly as TRL's GRPOTrainer does (``apply_chat_template`` with
    ``add_generation_prompt=True``) so the warm start and GRPO see identical prompts.
    """
    examples = [e for e in examples if e.get(key) is not None]
    if not examples:
        return []
    prompts = tokenizer.apply_chat_template(
        [e[key] for e in examples], add_generation_prompt=True, tokenize=True, return_dict=True
    )["input_ids"]
    answers = tokenizer([e["target"] for e in examples], add_special_tokens=False)["input_ids"]
    eos = tokenizer.eos_token_id
    return [(list(p) + list(a) + [eos], len(p)) for p, a in zip(prompts, answers)]


def _lr_lambda(config: WarmStartConfig) -> Callable[[int], float]:
    def f(step: int) -> float:
        if step < config.warmup_steps:
            return (step + 1) / config.warmup_steps
        t = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
        return config.min_lr_ratio + (1 - config.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))

    return f


def _answer_loss(model, input_ids, attention_mask, labels):
    """Mean cross-entropy over labelled positions, projecting only those hidden states to the
    vocabulary (the full ``lm_head`` over every prompt position is about half the compute of the
    tiny model)."""
    import torch

    decoder = getattr(model, "model", None)
    head = getattr(model, "lm_head", None)
    if decoder is None or head is None:  # not a *ForCausalLM with the usual layout
        return model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss
    hidden = decoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    target = labels[:, 1:]
    keep = target != -100
    logits = head(hidden[:, :-1][keep]).float()
    return torch.nn.functional.cross_entropy(logits, target[keep])


def train_sft(
    model,
    tokenizer,
    encoded: Sequence[tuple[list[int], int]],
    config: WarmStartConfig,
    progress: Callable[[int, float], None] | None = None,
    redraw: Mapping[str, tuple[Sequence[int], Any]] | None = None,
    easy: Sequence[tuple[list[int], int]] | None = None,
) -> list[float]:
    """Teacher-forced training on ``encoded`` (loss on answer tokens + eos); returns the loss every 50 steps.

    ``easy`` (curriculum) examples are used instead for the first ``config.curriculum_steps``.

    ``redraw`` maps a kind to ``(token ids, kind vector)``: before every step the (frozen)
    embedding rows of those names get a fresh random identity, ``kind vector + N(0, std)``. The
    policy can then never tie anything to a particular training name: the only way to lower the
    loss is to read the answer's name from the context and copy it, which is what carries over
    to held-out sets whose names it has never seen (their rows are never touched).
    """
    import torch

    pad = tokenizer.pad_token_id
    gen = torch.Generator().manual_seed(config.seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        if config.freeze_embeddings:
            # names never seen in training keep their random embeddings; a trainable embedding table
            # lets the model memorise training names instead of learning to copy from the context
            model.get_input_embeddings().weight.requires_grad_(False)
        params = [p for p in model.parameters() if p.requires_grad]
        emb = model.get_input_embeddings().weight
        redraw_rows = (
            [(torch.tensor(list(ids), dtype=torch.long), vec) for ids, vec in (redraw or {}).values() if len(ids)]
            if config.freeze_embeddings and config.name_redraw
            else []
        )
        opt = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(config))
        model.train()
        order: list[int] = []
        easy_order: list[int] = []
        losses: list[float] = []
        running = 0.0
        for step in range(config.steps):
            if easy and step < config.curriculum_steps:
                if len(easy_order) < config.batch_size:
                    easy_order.extend(torch.randperm(len(easy), generator=gen).tolist())
                batch = [easy[i] for i in easy_order[: config.batch_size]]
                del easy_order[: config.batch_size]
            else:
                if len(order) < config.batch_size:
                    order.extend(torch.randperm(len(encoded), generator=gen).tolist())
                batch = [encoded[i] for i in order[: config.batch_size]]
                del order[: config.batch_size]
            width = max(len(ids) for ids, _ in batch)
            input_ids = torch.full((len(batch), width), pad, dtype=torch.long)
            labels = torch.full((len(batch), width), -100, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for r, (ids, plen) in enumerate(batch):  # right padding for teacher forcing
                input_ids[r, : len(ids)] = torch.tensor(ids)
                mask[r, : len(ids)] = 1
                labels[r, plen : len(ids)] = torch.tensor(ids[plen:])
            if redraw_rows:
                with torch.no_grad():
                    for ids, kind_vec in redraw_rows:
                        emb[ids] = kind_vec + config.embedding_std * torch.randn(
                            (len(ids), emb.shape[1]), generator=gen
                        )
            loss = _answer_loss(model, input_ids, mask, labels)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            running += loss.item()
            if (step + 1) % 50 == 0 or step + 1 == config.steps:
                n = (step % 50) + 1
                losses.append(running / n)
                running = 0.0
                if progress is not None:
                    progress(step + 1, losses[-1])
        model.eval()
        model.get_input_embeddings().weight.requires_grad_(True)
    return losses


def corpus_name_kinds(tokenizer, corpus: Sequence[Passage]) -> dict[str, list[int]]:
    """Token ids of every entity name of the passage corpus by kind (``person`` = passage
    subjects, ``city`` / ``company`` = passage objects by relation)."""
    kinds: dict[str, set[str]] = {"person": set(), "city": set(), "company": set()}
    for x in corpus:
        if x.title:
            kinds["person"].add(x.title)
        obj = passage_answer(x)
        if obj:
            kinds["city" if any(w in x.text.split() for w in _CITY_WORDS) else "company"].add(obj)
    vocab = tokenizer.get_vocab()
    unk = tokenizer.unk_token_id
    return {k: sorted({vocab.get(n, unk) for n in v} - {unk}) for k, v in kinds.items()}


def init_embeddings(model, std: float, seed: int, kinds: Mapping[str, Sequence[int]], kind_scale: float):
    """Frozen "pretrained-like" embedding table; returns ``{kind: kind vector}``.

    Random vectors of std ``std`` (at the default 0.02 the tied output logits are too flat to
    learn from), and every entity name of a kind shares a kind vector (``kind_scale`` x a random
    vector of the same std) on top of its own random identity, the way a pretrained model knows
    that a word it has never seen in fine-tuning is the name of a city.
    """
    import torch

    emb = model.get_input_embeddings().weight
    vectors = {}
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 1)
        emb.normal_(0.0, std)
        for kind in sorted(kinds):
            vectors[kind] = kind_scale * std * torch.randn(emb.shape[1])
            ids = torch.tensor(list(kinds[kind]), dtype=torch.long)
            if len(ids):
                emb[ids] += vectors[kind]
    return vectors


# ------------------------------------------------------------------------------------------
# Cached entry point
# ------------------------------------------------------------------------------------------


def data_fingerprint(*parts: Sequence[Any]) -> str:
    """sha256 of the JSON of paraphrase sets / passages (pydantic models or dicts)."""
    h = hashlib.sha256()
    for part in parts:
        for item in part:
            d = item.model_dump(mode="json") if hasattr(item, "model_dump") else item
            h.update(json.dumps(d, sort_keys=True, ensure_ascii=False).encode("utf-8"))
            h.update(b"\n")
        h.update(b"\x00")
    return h.hexdigest()


def cache_key(config: WarmStartConfig, train_sets, corpus, tokenizer_texts_fingerprint: str) -> str:
    payload = {
        "version": 1,
        "config": config.to_dict(),
        "train": data_fingerprint(train_sets),
        "corpus": data_fingerprint(corpus),
        "tokenizer_texts": tokenizer_texts_fingerprint,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode("utf-8")).hexdigest()[:16]


def policy_dir(
    train_sets: Sequence[ParaphraseSet],
    corpus: Sequence[Passage],
    tokenizer_texts: Sequence[str],
    cache_dir: str | os.PathLike[str],
    config: WarmStartConfig,
) -> Path:
    """Where :func:`warm_start` keeps this policy: ``cache_dir/warmstart-<key>`` (finished when it holds
    ``warmstart.json``)."""
    texts_fp = hashlib.sha256("\n".join(tokenizer_texts).encode("utf-8")).hexdigest()
    return Path(cache_dir) / f"warmstart-{cache_key(config, train_sets, corpus, texts_fp)}"


def warm_start(
    train_sets: Sequence[ParaphraseSet],
    corpus: Sequence[Passage],
    tokenizer_texts: Sequence[str],
    cache_dir: str | os.PathLike[str],
    config: WarmStartConfig | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> Path:
    """Build the word tokenizer on ``tokenizer_texts`` and a tiny Qwen2 policy, fine-tune it on
    ``train_sets`` with noisy supervision (module docstring), save it and return its directory.

    ``corpus`` is the passage corpus (its names get the kind vectors of the frozen embedding
    table). The directory is ``cache_dir/warmstart-<key>`` (:func:`cache_key`: every setting and
    a fingerprint of the training sets, corpus and tokenizer texts); when it already holds a
    finished policy (``warmstart.json`` is written last, then the directory is renamed into place)
    it is returned at once without loading or training anything.
    """

    from ..models.tiny import build_tiny_qwen2, build_word_tokenizer

    config = config or WarmStartConfig()
    log = log or (print if progress else (lambda _msg: None))
    out = policy_dir(train_sets, corpus, tokenizer_texts, cache_dir, config)
    key = out.name.removeprefix("warmstart-")
    done = out / "warmstart.json"
    if done.is_file():
        log(f"warm start: cached policy {out}")
        return out

    t0 = time.perf_counter()
    tokenizer = build_word_tokenizer(tokenizer_texts)
    model = build_tiny_qwen2(
        tokenizer,
        hidden_size=config.hidden_size,
        num_layers=config.num_layers,
        num_heads=config.num_heads,
        seed=config.seed,
    )
    redraw = None
    if config.freeze_embeddings:
        kind_vectors = init_embeddings(
            model, config.embedding_std, config.seed, corpus_name_kinds(tokenizer, corpus), config.kind_scale
        )
        if config.name_redraw:
            pools = name_pools(tokenizer, train_sets)
            redraw = {kind: (ids, kind_vectors[kind]) for kind, ids in pools.items()}
    examples = sft_examples(train_sets, config)
    encoded = encode_examples(tokenizer, examples)
    n_noisy = sum(e["noisy_template"] for e in examples)
    n_corrupt = sum(e["corrupted"] for e in examples)
    log(
        f"warm start: {len(examples)} examples, {n_noisy} with a noisy wording, {n_corrupt} labelled with a "
        f"distractor's answer; {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M params, "
        f"{config.steps} steps of batch {config.batch_size}"
    )
    t_train = time.perf_counter()

    def report(step: int, loss: float) -> None:
        if progress and (step % 250 == 0 or step == config.steps):
            rate = step / max(1e-9, time.perf_counter() - t_train)
            log(f"  sft step {step}/{config.steps}  loss {loss:.3f}  ({rate:.1f} steps/s)")

    easy = encode_examples(tokenizer, examples, key="easy_prompt") if config.curriculum_steps else None
    losses = train_sft(model, tokenizer, encoded, config, progress=report, redraw=redraw, easy=easy)
    train_s = time.perf_counter() - t_train

    meta = {
        "key": key,
        "config": config.to_dict(),
        "num_examples": len(examples),
        "num_noisy_wording": n_noisy,
        "num_corrupted_labels": n_corrupt,
        "losses_every_50_steps": [round(x, 5) for x in losses],
        "train_seconds": round(train_s, 2),
        "total_seconds": round(time.perf_counter() - t0, 2),
    }
    return publish_warm_start(model, tokenizer, out, "warmstart.json", meta, log)


def publish_warm_start(
    model: Any, tokenizer: Any, out: Path, meta_file: str, meta: Mapping[str, Any], log: Callable[[str], None]
) -> Path:
    """Save a trained warm start (model, tokenizer and ``meta_file`` with ``meta`` plus the parameter count and torch
    version) to a temporary directory next to ``out``, then move it into place in one step, so that the cache never
    holds half a policy; a concurrent run that finished first keeps its copy. Returns ``out``."""
    import torch

    from ..models.tiny import save_tiny_policy

    tmp = out.parent / f".{out.name}.tmp{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    save_tiny_policy(model, tokenizer, tmp)
    meta = {**meta, "num_parameters": int(sum(p.numel() for p in model.parameters())), "torch": torch.__version__}
    (tmp / meta_file).write_text(json.dumps(meta, indent=2), encoding="utf-8")
    if out.exists():  # a concurrent run finished first; keep its copy
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        os.replace(tmp, out)
    log(f"warm start: trained in {meta['train_seconds']:.0f}s -> {out}")
    return out
