"""Deterministic synthetic retrieval-augmented QA with paraphrase sets (CPU demo and tests).

A small world of made-up people, cities and companies, each a single word (one token of the
word-level tokenizer in :mod:`grpo_sim.models.tiny`). Facts use four relations whose answers
are entity names::

    born_in   "Varenko was born in Oslandia."   / "Oslandia is the birthplace of Varenko."
    lives_in  "Varenko lives in Kesmar."        / "Kesmar is home to Varenko." ...
    founded   "Varenko founded Zeltek."         / "Zeltek was founded by Varenko."
    works_for "Varenko works for Brolix."       / "Brolix employs Varenko."

The corpus has one passage per fact: the facts of the people asked about plus those of
distractor people. A person has 2-4 facts, so the same name shows up in passages that answer
another relation (born_in vs lives_in share the answer type, so do founded vs works_for).
Every question of a set is asked with a different wording and gets its own BM25 top-k
passages, so the gold passage moves between ranks (and now and then drops out) across the
wordings of one set — the source of inconsistency PS-GRPO trains against.

Train and eval sets ask about disjoint people and have disjoint answer names; distractor
people use a third pool of cities and companies. Everything derives from ``random.Random(seed)``
(no hash-ordered iteration), so the output is byte-identical for a seed.
"""

from __future__ import annotations

import random
from typing import Sequence

from ..data.schema import PROMPT_TEMPLATES, Paraphrase, ParaphraseSet, Passage, build_rag_prompt

__all__ = [
    "MAX_PARAPHRASES",
    "QUESTION_WORDINGS",
    "RELATIONS",
    "RELATION_NAMES",
    "build_demo_dataset",
    "demo_text_corpus",
    "gold_ranks",
]


# --------------------------------------------------------------------------------------------
# Names
# --------------------------------------------------------------------------------------------

_ONSETS = [
    "Va",
    "Ko",
    "Tal",
    "Bre",
    "Mor",
    "Shi",
    "Dra",
    "Ful",
    "Gel",
    "Hes",
    "Isk",
    "Jor",
    "Kel",
    "Lum",
    "Nav",
    "Orv",
    "Pel",
    "Quo",
    "Rin",
    "Sab",
    "Tor",
    "Ulm",
    "Vex",
    "Wen",
    "Yar",
    "Zor",
    "Ath",
    "Bal",
    "Cor",
    "Dun",
]
_MIDDLES = [
    "ren",
    "li",
    "ma",
    "do",
    "ste",
    "ga",
    "vi",
    "no",
    "ra",
    "te",
    "mi",
    "su",
    "ka",
    "lo",
    "be",
    "zu",
    "pa",
    "ri",
    "go",
    "fe",
]
_SUFFIXES = {
    "person": ["nko", "var", "mir", "dan", "vik", "sha", "lin", "tus"],
    "city": ["landia", "burg", "mar", "heim", "stad", "polis", "ford", "vale"],
    "company": ["tek", "corp", "lix", "soft", "works", "tron", "gen", "dyne"],
}


def _make_names(rng: random.Random, kind: str, n: int, taken: set[str]) -> list[str]:
    """``n`` new distinct single-word names of ``kind`` (capitalised, letters only)."""
    out: list[str] = []
    suffixes = _SUFFIXES[kind]
    attempts = 0
    while len(out) < n:
        attempts += 1
        if attempts > 200 * (n + 10):
            raise RuntimeError(f"could not generate {n} distinct {kind} names")
        parts = [rng.choice(_ONSETS)]
        # two-syllable stems first; three when the space gets crowded
        for _ in range(1 if attempts < 20 * (n + 10) else 2):
            parts.append(rng.choice(_MIDDLES))
        parts.append(rng.choice(suffixes))
        name = "".join(parts)
        if name in taken:
            continue
        taken.add(name)
        out.append(name)
    return out


# --------------------------------------------------------------------------------------------
# Relations: passage wordings and question wordings
# --------------------------------------------------------------------------------------------

RELATIONS: dict[str, dict] = {
    "born_in": {
        "object": "city",
        "passages": ["{s} was born in {o}.", "{o} is the birthplace of {s}."],
        "questions": [
            "Where was {s} born?",
            "What is the birthplace of {s}?",
            "{s} was born in which city?",
            "In which city was {s} born?",
            "Which city is the birthplace of {s}?",
            "What city did {s} come into the world in?",
        ],
    },
    "lives_in": {
        "object": "city",
        "passages": ["{s} lives in {o}.", "{o} is home to {s}.", "{s} has a house in {o}."],
        "questions": [
            "Where does {s} live?",
            "In which city does {s} live?",
            "{s} lives in which city?",
            "What is the home city of {s}?",
            "Which city is home to {s}?",
            "Where is the house of {s}?",
        ],
    },
    "founded": {
        "object": "company",
        "passages": ["{s} founded {o}.", "{o} was founded by {s}."],
        "questions": [
            "Which company did {s} found?",
            "What company was founded by {s}?",
            "{s} founded which company?",
            "Name the company that {s} started.",
            "Which firm was started by {s}?",
            "What is the company created by {s}?",
        ],
    },
    "works_for": {
        "object": "company",
        "passages": ["{s} works for {o}.", "{o} employs {s}.", "{s} is employed at {o}."],
        "questions": [
            "Which company does {s} work for?",
            "Who employs {s}?",
            "{s} works for which company?",
            "What is the employer of {s}?",
            "At which company is {s} employed?",
            "Which firm does {s} work at?",
        ],
    },
}
RELATION_NAMES: list[str] = list(RELATIONS)
#: the question templates of every relation, for grpo_sim.data.paraphrase.template_paraphrases(wordings=...)
QUESTION_WORDINGS: list[list[str]] = [list(r["questions"]) for r in RELATIONS.values()]
MAX_PARAPHRASES: int = min(len(r["questions"]) for r in RELATIONS.values())


def _world(
    rng: random.Random, n_people: int, taken: set[str], pool_size: int
) -> tuple[list[str], dict[str, list[str]]]:
    people = _make_names(rng, "person", n_people, taken)
    pools = {
        "city": _make_names(rng, "city", pool_size, taken),
        "company": _make_names(rng, "company", pool_size, taken),
    }
    return people, pools


def _facts_for(
    rng: random.Random, person: str, pools: dict[str, list[str]], must: str | None
) -> list[tuple[str, str, str]]:
    """2-4 (relation, subject, object) facts of one person; ``must`` is always among them.
    The two relations with the same answer type never share an object for one person."""
    n = rng.choice([2, 3, 3, 4])
    rels = [r for r in RELATION_NAMES if r != must]
    rng.shuffle(rels)
    chosen = ([must] if must else []) + rels[: n - (1 if must else 0)]
    chosen = [r for r in RELATION_NAMES if r in chosen]  # canonical order
    facts = []
    used: list[str] = []
    for r in chosen:
        pool = pools[RELATIONS[r]["object"]]
        o = rng.choice(pool)
        while o in used and len(pool) > len(used):
            o = rng.choice(pool)
        used.append(o)
        facts.append((r, person, o))
    return facts


def build_demo_dataset(
    num_train_sets: int,
    num_eval_sets: int,
    num_paraphrases: int = 4,
    passages_per_prompt: int = 3,
    seed: int = 0,
    num_distractor_people: int | None = None,
) -> tuple[list[ParaphraseSet], list[ParaphraseSet], list[Passage]]:
    """Build ``(train_sets, eval_sets, corpus)``.

    Each set asks one relation of one person with ``num_paraphrases`` different wordings
    (paraphrase 0 is the canonical wording, template 0 of the relation); each wording gets
    its own BM25 top-``passages_per_prompt`` passages from ``corpus``. ``answers`` holds the
    single gold name; ``metadata`` has ``relation``, ``subject``, ``gold_passage_id``,
    ``split`` and the template index of every paraphrase.
    """
    from ..data.retrieval import BM25Retriever

    if not 1 <= num_paraphrases <= MAX_PARAPHRASES:
        raise ValueError(f"num_paraphrases must be in 1..{MAX_PARAPHRASES}, got {num_paraphrases}")
    if passages_per_prompt < 1:
        raise ValueError(f"passages_per_prompt must be >= 1, got {passages_per_prompt}")
    if num_train_sets < 0 or num_eval_sets < 0:
        raise ValueError("num_train_sets and num_eval_sets must be >= 0")
    if num_distractor_people is None:
        num_distractor_people = max(8, (num_train_sets + num_eval_sets) // 2)

    rng = random.Random(seed)
    taken: set[str] = set()
    splits = [("train", num_train_sets), ("eval", num_eval_sets), ("distractor", num_distractor_people)]
    worlds = {}
    for split, n in splits:
        worlds[split] = _world(rng, n, taken, pool_size=max(4, (n + 1) // 2))

    # facts -> passages
    facts: list[tuple[str, str, str, str]] = []  # (split, relation, subject, object)
    questions: dict[str, list[tuple[str, str, str]]] = {"train": [], "eval": []}
    for split, n in splits:
        people, pools = worlds[split]
        for person in people:
            must = rng.choice(RELATION_NAMES) if split != "distractor" else None
            person_facts = _facts_for(rng, person, pools, must)
            facts.extend((split, r, s, o) for r, s, o in person_facts)
            if must is not None:
                obj = next(o for r, _, o in person_facts if r == must)
                questions[split].append((must, person, obj))

    order = list(range(len(facts)))
    rng.shuffle(order)
    corpus: list[Passage] = []
    gold_id: dict[tuple[str, str], str] = {}
    for new_idx, i in enumerate(order):
        _, r, s, o = facts[i]
        text = rng.choice(RELATIONS[r]["passages"]).format(s=s, o=o)
        pid = f"p{new_idx:05d}"
        corpus.append(Passage(id=pid, title=s, text=text))
        gold_id[(r, s)] = pid

    retriever = BM25Retriever(corpus)
    out: dict[str, list[ParaphraseSet]] = {}
    for split in ("train", "eval"):
        pending = []
        for j, (r, s, o) in enumerate(questions[split]):
            n_templates = len(RELATIONS[r]["questions"])
            tids = [0] + rng.sample(range(1, n_templates), num_paraphrases - 1)
            wordings = [RELATIONS[r]["questions"][t].format(s=s) for t in tids]
            pending.append((j, r, s, o, tids, wordings))
        all_q = [w for p in pending for w in p[5]]
        retrieved = retriever.retrieve(all_q, k=passages_per_prompt) if all_q else []
        sets: list[ParaphraseSet] = []
        pos = 0
        for j, r, s, o, tids, wordings in pending:
            paras = []
            for k, w in enumerate(wordings):
                paras.append(Paraphrase(paraphrase_id=k, question=w, passages=list(retrieved[pos])))
                pos += 1
            sets.append(
                ParaphraseSet(
                    set_id=f"{split}-{j:05d}",
                    question=wordings[0],
                    paraphrases=paras,
                    answers=[o],
                    metadata={
                        "relation": r,
                        "subject": s,
                        "gold_passage_id": gold_id[(r, s)],
                        "split": split,
                        "templates": tids,
                        "seed": seed,
                    },
                )
            )
        out[split] = sets
    return out["train"], out["eval"], corpus


def gold_ranks(pset: ParaphraseSet) -> list[int | None]:
    """0-based rank of the gold passage in each paraphrase's passages (``None``: not retrieved)."""
    gold = pset.metadata.get("gold_passage_id")
    ranks: list[int | None] = []
    for p in pset.paraphrases:
        ids = [x.id for x in p.passages]
        ranks.append(ids.index(gold) if gold in ids else None)
    return ranks


def demo_text_corpus(sets: Sequence[ParaphraseSet], corpus: Sequence[Passage]) -> list[str]:
    """All text a tokenizer for the demo must cover: every prompt (every template) with its
    passages, the answers, the corpus passages and every question wording of every relation."""
    texts: list[str] = []
    for name, fmt in PROMPT_TEMPLATES.items():
        texts.append(fmt.format(passages="", question=""))
    for r in RELATIONS.values():
        texts.extend(q.format(s="") for q in r["questions"])
        texts.extend(p.format(s="", o="") for p in r["passages"])
    for s in sets:
        for p in s.paraphrases:
            texts.append(build_rag_prompt(p.question, p.passages, template="rag_short_answer"))
        texts.extend(s.answers)
    for p in corpus:
        texts.append(f"{p.title}: {p.text}" if p.title else p.text)
    return texts
