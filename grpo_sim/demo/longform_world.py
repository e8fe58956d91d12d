"""The long-form demo's world and warm start: right answers that can be worded several ways.

The world
---------
The facts, passages, BM25 retrieval and paraphrase sets are those of the short-answer demo
(:func:`grpo_sim.demo.world.build_demo_dataset`: made-up people, cities and companies, four
relations, six question wordings per relation, disjoint held-out people and answer names). What
changes is the answer: instead of a bare name it is a short sentence, and every relation has three
acceptable phrasings of it (:data:`PHRASINGS`), e.g. for "Where was Varenko born?"::

    they were born in Oslandia.      their birthplace is Oslandia.      Oslandia is where they were born.

A set's ``answers`` hold all three (phrasing 0 first), so accuracy scored as the best match over the
gold answers (token F1, ROUGE-L) gives full marks to any of them: being right does not force saying
it one way. ``metadata["entity"]`` keeps the name the sentence must contain.

The warm start
--------------
A tiny Qwen2 with a word-level tokenizer, trained like the short demo's warm start
(:func:`grpo_sim.demo.warmstart.train_sft`: frozen "pretrained-like" embeddings, name identities redrawn
every step, a short single-passage curriculum), in two stages: ``name_steps`` on the bare name as
the target (``chat(prompt) -> name <eos>``, the short demo's task), then ``steps`` on
``chat(prompt) -> sentence <eos>``. Trained on sentences from the start, the loss on the one name
token is diluted by six easy phrasing tokens and the model sat on the copy-from-context plateau
(training-set name accuracy 0.34 after 3,000 steps at seed 0); learning to find the name first
avoids that. Every label
names the gold entity; only the phrasing varies: each question wording has a preferred phrasing
(:data:`WORDING_PHRASING`, two wordings per phrasing, chosen to echo the question: "What is the
birthplace of X?" -> "their birthplace is ..."), used with probability ``phrasing_fidelity``,
otherwise one of the other two at random (drawn once per example from the seed, like a data set
written by several annotators with their own habits). Since every set mixes four of the six
wordings, the policy answers the paraphrases of a set mostly right but in different words
(greedy decoding follows the wording's preferred phrasing), and sampling still tries the other
phrasings now and then, which is what a consistency reward can learn from. Cached under
``cache_dir/longform-warmstart-<key>`` (every setting and a fingerprint of the data in the key).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from ..data.schema import ParaphraseSet, Passage, build_rag_prompt
from ..similarity.text import normalize_answer

#: Three acceptable phrasings of the answer per relation (``{o}``: the answer's name).
PHRASINGS: dict[str, tuple[str, str, str]] = {
    "born_in": ("they were born in {o}.", "their birthplace is {o}.", "{o} is where they were born."),
    "lives_in": ("they live in {o}.", "their home is in {o}.", "{o} is where they live."),
    "founded": ("they founded {o}.", "the company they started is {o}.", "{o} was founded by them."),
    "works_for": ("they work for {o}.", "their employer is {o}.", "{o} is where they work."),
}

#: The warm start's preferred phrasing (index into :data:`PHRASINGS`) for each question wording
#: (index into ``grpo_sim.demo.world.RELATIONS[r]["questions"]``); two wordings per phrasing.
WORDING_PHRASING: dict[str, tuple[int, ...]] = {
    # Where was {s} born? / What is the birthplace of {s}? / {s} was born in which city? /
    # In which city was {s} born? / Which city is the birthplace of {s}? / What city did {s} come into the world in?
    "born_in": (0, 1, 2, 0, 1, 2),
    # Where does {s} live? / In which city does {s} live? / {s} lives in which city? /
    # What is the home city of {s}? / Which city is home to {s}? / Where is the house of {s}?
    "lives_in": (0, 2, 0, 1, 1, 2),
    # Which company did {s} found? / What company was founded by {s}? / {s} founded which company? /
    # Name the company that {s} started. / Which firm was started by {s}? / What is the company created by {s}?
    "founded": (0, 2, 0, 1, 1, 2),
    # Which company does {s} work for? / Who employs {s}? / {s} works for which company? /
    # What is the employer of {s}? / At which company is {s} employed? / Which firm does {s} work at?
    "works_for": (0, 1, 0, 1, 2, 2),
}

#: Prompt template of the long-form task: the short demo's (passages, question, "Answer:"); every label is a
#: sentence, so an instruction line asking for one would only add ~20% to the compute of every step.
LONGFORM_TEMPLATE = "rag_short_answer"


# ------------------------------------------------------------------------------------------
# Data
# ------------------------------------------------------------------------------------------


def phrase(relation: str, entity: str, phrasing: int) -> str:
    """The answer sentence of ``relation`` naming ``entity`` in phrasing ``phrasing`` (0, 1 or 2)."""
    return PHRASINGS[relation][phrasing].format(o=entity)


def to_longform(sets: Sequence[ParaphraseSet]) -> list[ParaphraseSet]:
    """Short-answer demo sets -> long-form sets: ``answers`` become the three phrasings (phrasing 0
    first), ``metadata`` gains ``entity`` (the short answer) and ``phrasings`` (each paraphrase's
    preferred phrasing, from its wording)."""
    out = []
    for s in sets:
        rel = s.metadata["relation"]
        entity = s.answers[0]
        meta = dict(s.metadata)
        meta["entity"] = entity
        meta["phrasings"] = [WORDING_PHRASING[rel][t] for t in s.metadata["templates"]]
        out.append(s.model_copy(update={"answers": [phrase(rel, entity, k) for k in range(3)], "metadata": meta}))
    return out


def short_view(sets: Sequence[ParaphraseSet]) -> list[ParaphraseSet]:
    """The same sets with the entity as the only answer (what the short demo's helpers expect)."""
    return [s.model_copy(update={"answers": [s.metadata["entity"]]}) for s in sets]


def build_longform_dataset(
    num_train_sets: int, num_eval_sets: int, num_paraphrases: int = 4, passages_per_prompt: int = 3, seed: int = 0
) -> tuple[list[ParaphraseSet], list[ParaphraseSet], list[Passage]]:
    """``(train_sets, eval_sets, corpus)``: the short demo's world (same people, passages and
    retrieval for the seed; held-out people and answer names disjoint from training) with
    sentence answers (:func:`to_longform`). Deterministic for the seed."""
    from .world import build_demo_dataset

    train, eval_, corpus = build_demo_dataset(
        num_train_sets,
        num_eval_sets,
        num_paraphrases=num_paraphrases,
        passages_per_prompt=passages_per_prompt,
        seed=seed,
    )
    return to_longform(train), to_longform(eval_), corpus


def longform_text_corpus(sets: Sequence[ParaphraseSet], corpus: Sequence[Passage]) -> list[str]:
    """Everything the word-level tokenizer must cover: the short demo's texts plus every phrasing and answer."""
    from .world import demo_text_corpus

    texts = demo_text_corpus(short_view(sets), corpus)
    texts.extend(p.format(o="") for ps in PHRASINGS.values() for p in ps)
    texts.extend(a for s in sets for a in s.answers)
    return texts


_WORD = re.compile(r"\w+")


def mentions(answer: str, entity: str) -> bool:
    """Whether ``answer`` names ``entity`` (as a whole word, case-insensitive)."""
    return entity.lower() in {w.lower() for w in _WORD.findall(answer)}


def phrasing_of(answer: str, relation: str) -> int | None:
    """Which phrasing of ``relation`` ``answer`` uses whatever name it gives (``None``: none of them).

    The answer's capitalised words (names) are replaced by a placeholder before comparing with the
    normalised phrasings, so "their birthplace is Kesmar." is phrasing 1 of ``born_in`` even when
    Kesmar is the wrong city.
    """
    pattern = normalize_answer(re.sub(r"\b[A-Z][a-z]+\b", "ENTITYX", answer))
    for k, p in enumerate(PHRASINGS[relation]):
        if normalize_answer(p.format(o="ENTITYX")) == pattern:
            return k
    return None


# ------------------------------------------------------------------------------------------
# Warm start
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LongformWarmStartConfig:
    """Everything that determines the long-form warm start (all of it goes into the cache key).

    The model and SFT fields mean what they mean in :class:`grpo_sim.demo.warmstart.WarmStartConfig`.
    """

    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 8
    embedding_std: float = 0.5
    kind_scale: float = 1.0
    curriculum_steps: int = 300
    #: stage 1: steps on the bare name as the target (curriculum first), to learn to find the name
    name_steps: int = 1200
    #: stage 2: steps on the sentence targets
    steps: int = 1300
    batch_size: int = 32
    learning_rate: float = 3e-3
    warmup_steps: int = 100
    min_lr_ratio: float = 0.1
    #: probability that a label uses its wording's preferred phrasing (else one of the other two)
    phrasing_fidelity: float = 0.75
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.phrasing_fidelity <= 1.0:
            raise ValueError(f"phrasing_fidelity must lie in [0, 1], got {self.phrasing_fidelity}")
        if self.steps < 1 or self.batch_size < 1 or self.name_steps < 0:
            raise ValueError("steps and batch_size must be >= 1, name_steps >= 0")

    def sft_config(self, stage: int):
        """The :class:`grpo_sim.demo.warmstart.WarmStartConfig` :func:`grpo_sim.demo.warmstart.train_sft` reads in
        ``stage`` 1 (bare names, with the curriculum) or 2 (sentences, no curriculum)."""
        from .warmstart import WarmStartConfig

        fields = {k: v for k, v in asdict(self).items() if k not in ("phrasing_fidelity", "name_steps")}
        if stage == 1:
            fields["steps"] = self.name_steps
        else:
            fields["curriculum_steps"] = 0
            fields["warmup_steps"] = min(self.warmup_steps, self.steps)
        return WarmStartConfig(
            **fields,
            freeze_embeddings=True,
            name_redraw=True,
            template=LONGFORM_TEMPLATE,
            noisy_templates=(),
            noise_rate=0.0,
        )


def sft_examples(sets: Sequence[ParaphraseSet], config: LongformWarmStartConfig) -> list[dict[str, Any]]:
    """One example per paraphrase: ``prompt``, ``easy_prompt`` (gold passage only), ``target`` (a
    phrasing naming the gold entity), ``phrasing``, ``preferred`` (the wording's own phrasing)."""
    rng = random.Random(config.seed * 7919 + 29)
    out = []
    for s in sets:
        rel, entity = s.metadata["relation"], s.metadata["entity"]
        gold_pid = s.metadata.get("gold_passage_id")
        gold = next((x for p in s.paraphrases for x in p.passages if x.id == gold_pid), None)
        for k, p in enumerate(s.paraphrases):
            preferred = s.metadata["phrasings"][k]
            draw, other = rng.random(), rng.randrange(2)  # both drawn for every example: a fixed stream
            chosen = preferred if draw < config.phrasing_fidelity else [j for j in range(3) if j != preferred][other]
            out.append(
                {
                    "prompt": [
                        {"role": "user", "content": build_rag_prompt(p.question, p.passages, LONGFORM_TEMPLATE)}
                    ],
                    "easy_prompt": None
                    if gold is None
                    else [{"role": "user", "content": build_rag_prompt(p.question, [gold], LONGFORM_TEMPLATE)}],
                    "target": phrase(rel, entity, chosen),
                    "name": entity,
                    "phrasing": chosen,
                    "preferred": preferred,
                    "set_id": s.set_id,
                    "paraphrase_id": p.paraphrase_id,
                }
            )
    return out


def _cache_key(config: LongformWarmStartConfig, train_sets, corpus, texts: Sequence[str]) -> str:
    from .warmstart import data_fingerprint

    payload = {
        "version": 1,
        "config": asdict(config),
        "train": data_fingerprint(train_sets),
        "corpus": data_fingerprint(corpus),
        "tokenizer_texts": hashlib.sha256("\n".join(texts).encode("utf-8")).hexdigest(),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode("utf-8")).hexdigest()[:16]


def longform_warm_start(
    train_sets: Sequence[ParaphraseSet],
    corpus: Sequence[Passage],
    tokenizer_texts: Sequence[str],
    cache_dir: str | os.PathLike[str],
    config: LongformWarmStartConfig | None = None,
    log: Callable[[str], None] = print,
) -> Path:
    """Train (or find in ``cache_dir``) the long-form warm start; returns its directory.

    ``longform-warmstart.json`` is written last and the directory renamed into place, so a directory
    with it is always a finished policy.
    """

    from ..models.tiny import build_tiny_qwen2, build_word_tokenizer
    from .warmstart import (
        corpus_name_kinds,
        encode_examples,
        init_embeddings,
        name_pools,
        publish_warm_start,
        train_sft,
    )

    config = config or LongformWarmStartConfig()
    key = _cache_key(config, train_sets, corpus, tokenizer_texts)
    out = Path(cache_dir) / f"longform-warmstart-{key}"
    if (out / "longform-warmstart.json").is_file():
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
    kind_vectors = init_embeddings(
        model, config.embedding_std, config.seed, corpus_name_kinds(tokenizer, corpus), config.kind_scale
    )
    pools = name_pools(tokenizer, short_view(train_sets))
    redraw = {kind: (ids, kind_vectors[kind]) for kind, ids in pools.items()}
    examples = sft_examples(train_sets, config)
    off = sum(e["phrasing"] != e["preferred"] for e in examples)
    log(
        f"warm start: {len(examples)} examples ({off} not in their wording's preferred phrasing), "
        f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f}M params, {config.name_steps} steps on the bare "
        f"names then {config.steps} on the sentences, batch {config.batch_size}"
    )
    t_train = time.perf_counter()
    losses: list[float] = []
    for stage, total in ((1, config.name_steps), (2, config.steps)):
        if not total:
            continue
        # stage 1 learns to find the name in the passages (the bare name is the target: all of the loss is on
        # it); stage 2 learns to say it in a sentence
        staged = examples if stage == 2 else [{**e, "target": e["name"]} for e in examples]

        def report(step: int, loss: float, stage=stage, total=total) -> None:
            if step % 500 == 0 or step == total:
                log(f"  sft stage {stage} step {step}/{total}  loss {loss:.3f}  ({time.perf_counter() - t_train:.0f}s)")

        losses += train_sft(
            model,
            tokenizer,
            encode_examples(tokenizer, staged),
            config.sft_config(stage),
            progress=report,
            redraw=redraw,
            easy=encode_examples(tokenizer, staged, key="easy_prompt") if stage == 1 else None,
        )
    train_s = time.perf_counter() - t_train
    meta = {
        "key": key,
        "config": asdict(config),
        "num_examples": len(examples),
        "num_not_preferred_phrasing": off,
        "losses_every_50_steps": [round(x, 5) for x in losses],
        "train_seconds": round(train_s, 2),
        "total_seconds": round(time.perf_counter() - t0, 2),
    }
    return publish_warm_start(model, tokenizer, out, "longform-warmstart.json", meta, log)


__all__ = [
    "LONGFORM_TEMPLATE",
    "PHRASINGS",
    "WORDING_PHRASING",
    "LongformWarmStartConfig",
    "build_longform_dataset",
    "longform_text_corpus",
    "longform_warm_start",
    "mentions",
    "phrase",
    "phrasing_of",
    "sft_examples",
    "short_view",
    "to_longform",
]
