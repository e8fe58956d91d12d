"""``grpo-sim data ...``: validate, import, prompts, split, merge, filter, paraphrase, retrieve, corpus.

Mounted by the main CLI as ``grpo-sim data``; usable on its own as
``python -m grpo_sim.data.cli``. Bad input (missing/malformed files, wrong options) prints
what is wrong and where (file, row, field, what to change) on stderr and exits with status 2;
a paraphrase run in which some questions failed after all retries writes what it has and exits
with status 1 (rerun to retry them; finished questions come from the cache).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

import typer

from .schema import DataError, load_psets, validate_file, write_psets

app = typer.Typer(
    help="Paraphrase-set data: validate files, import QA datasets, generate paraphrases, retrieve passages.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_BAD_INPUT = (DataError, ValueError, FileNotFoundError, ImportError, OSError)


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def _echo(message: str) -> None:
    typer.echo(message)


# ------------------------------------------------------------------------------------------
# validate
# ------------------------------------------------------------------------------------------


@app.command("validate")
def validate_cmd(
    file: Path = typer.Argument(
        ..., help="JSONL paraphrase-set file, or a directory written by datasets' save_to_disk"
    ),
    for_training: bool = typer.Option(
        False, "--for-training", help="also run the trainer's set checks and list EVERY set it would reject"
    ),
    paraphrases_per_set: Optional[int] = typer.Option(
        None, "--paraphrases-per-set", "-n", min=2, help="with --for-training: the recipe's data.paraphrases_per_set"
    ),
) -> None:
    """Check a paraphrase-set file; list every bad row (row, field, what is wrong) and exit 2 if any."""
    problems = validate_file(file)
    if problems:
        unit_sep = ":" if not file.is_dir() else ": row "
        typer.echo(f"{file}: {len(problems)} problem(s):", err=True)
        for row, field, msg in problems:
            where = f"{file}{unit_sep}{row}" if row is not None else str(file)
            if field == "<file>":
                typer.echo(f"  {msg}", err=True)
            else:
                typer.echo(f"  {where}: field '{field}': {msg}", err=True)
        raise typer.Exit(2)
    if paraphrases_per_set is not None and not for_training:
        _fail("--paraphrases-per-set applies to --for-training")
    sets = load_psets(file)
    if for_training:
        from .ops import training_problems

        rejected = training_problems(sets, paraphrases_per_set, what=str(file))
        if rejected:
            typer.echo(f"{file}: the trainer rejects this file as data.train ({len(rejected)} problem(s)):", err=True)
            for problem in rejected:
                typer.echo("  - " + "\n    ".join(problem.splitlines()), err=True)
            counts = sorted({len(s.paraphrases) for s in sets})
            keep = paraphrases_per_set or max((n for n in counts if n >= 2), default=2)
            typer.echo(
                f"fix: grpo-sim data filter {file} --out FILTERED.jsonl --paraphrases-per-set {keep} "
                f"(drops sets with fewer than {keep} paraphrases and keeps the first {keep} of the others; "
                f"counts here: {', '.join(map(str, counts))})",
                err=True,
            )
            raise typer.Exit(2)
    n_par = sum(len(s.paraphrases) for s in sets)
    n_pass = sum(len(p.passages) for s in sets for p in s.paraphrases)
    no_ans = sum(1 for s in sets if not s.answers)
    _echo(
        f"{file}: OK - {len(sets)} sets, {n_par} paraphrases ({n_par / max(len(sets), 1):.2f} per set), "
        f"{n_pass} attached passages, {no_ans} sets without gold answers"
        + ("; the trainer accepts it as data.train" if for_training else "")
    )


# ------------------------------------------------------------------------------------------
# merge / filter
# ------------------------------------------------------------------------------------------


@app.command("merge")
def merge_cmd(
    files: list[Path] = typer.Argument(..., help="paraphrase-set JSONL files, in order"),
    out: Path = typer.Option(..., "--out", "-o", help="merged JSONL to write"),
    on_duplicate: str = typer.Option(
        "error",
        "--on-duplicate",
        help="a set id in several files: error | prefix (rename every copy to "
        "NAME:ID, NAME = the file name without .jsonl) | keep-first",
    ),
) -> None:
    """Concatenate set files; set ids that occur in more than one file are resolved as --on-duplicate says."""
    from .ops import merge_sets

    try:
        merged, report = merge_sets([(str(f), load_psets(f)) for f in files], on_duplicate)  # type: ignore[arg-type]
        write_psets(out, merged)
    except _BAD_INPUT as e:
        _fail(str(e))
    _echo(f"merged {len(files)} files -> {out}: {len(merged)} sets")
    for line in report.lines():
        _echo(line)


@app.command("filter")
def filter_cmd(
    in_file: Path = typer.Argument(..., help="paraphrase-set JSONL"),
    out: Path = typer.Option(..., "--out", "-o", help="filtered JSONL to write"),
    min_paraphrases: Optional[int] = typer.Option(
        None, "--min-paraphrases", min=1, help="drop sets with fewer paraphrases than this"
    ),
    paraphrases_per_set: Optional[int] = typer.Option(
        None,
        "--paraphrases-per-set",
        "-n",
        min=1,
        help="equalise: drop sets with fewer, keep the first N of the others (the trainer needs equal counts)",
    ),
) -> None:
    """Drop short sets and equalise paraphrase counts; print what was dropped."""
    from .ops import filter_sets

    try:
        kept, report = filter_sets(load_psets(in_file), min_paraphrases, paraphrases_per_set)
        if not kept:
            _fail(
                f"{in_file}: no set is left after filtering ({report.sets_in} sets, none with enough paraphrases); "
                "lower the numbers or add paraphrases"
            )
        write_psets(out, kept)
    except _BAD_INPUT as e:
        _fail(str(e))
    _echo(f"filtered {in_file} -> {out}")
    minimum = max(min_paraphrases or 0, paraphrases_per_set or 0)
    for line in report.lines(minimum, paraphrases_per_set):
        _echo(line)


# ------------------------------------------------------------------------------------------
# prompts / split
# ------------------------------------------------------------------------------------------


def _write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    import json

    from ..io import atomic_write_lines

    atomic_write_lines(path, (json.dumps(row, ensure_ascii=False) for row in rows))


def _prompt_rows_report(rows: list[dict[str, Any]], out: Path, template: Optional[str]) -> str:
    no_refs = sum(1 for row in rows if not row["answers"])
    columns = "id, question, answers" + (", prompt" if template else "")
    return (
        f"wrote {len(rows)} ordinary rows ({columns}) -> {out}"
        + (f"; {no_refs} without references" if no_refs else "")
        + "; train on them with data.format: prompts and data.columns: {prompt: "
        + ("prompt" if template else "question")
        + ", answers: answers}"
    )


@app.command("prompts")
def prompts_cmd(
    in_file: Path = typer.Argument(..., help="paraphrase-set JSONL (e.g. from 'import')"),
    out: Path = typer.Option(..., "--out", "-o", help="JSONL of ordinary rows {id, question, answers} to write"),
    template: Optional[str] = typer.Option(
        None,
        "--template",
        help="also write 'prompt': the wording with its passages in this template (rag_short_answer, "
        "rag_long_answer, closed_book or a format string)",
    ),
    all_wordings: bool = typer.Option(
        False, "--all-wordings", help="one row per wording (ids SET#N, set_id kept) instead of one per set"
    ),
) -> None:
    """Ordinary (prompt, reference) rows from paraphrase sets: one {id, question, answers} row per set (its
    original wording), for reference-similarity recipes (recipes/semantic-reward/) and `grpo-sim eval`."""
    from .ops import prompt_rows_from_sets

    try:
        rows = prompt_rows_from_sets(load_psets(in_file), template, all_wordings)
        _write_rows(out, rows)
    except _BAD_INPUT as e:
        _fail(str(e))
    _echo(_prompt_rows_report(rows, out, template))


@app.command("split")
def split_cmd(
    in_file: Path = typer.Argument(..., help="paraphrase-set JSONL, or JSONL of ordinary rows"),
    train_out: Path = typer.Option(..., "--train", help="JSONL to write the training part to"),
    eval_out: Path = typer.Option(..., "--eval", help="JSONL to write the held-out part to"),
    eval_size: float = typer.Option(
        0.1, "--eval-size", help="held out: a fraction of the sets (below 1, e.g. 0.2) or a count of sets (e.g. 50)"
    ),
    seed: int = typer.Option(0, "--seed", help="shuffling seed: the same seed gives the same split"),
) -> None:
    """Split a file into training and held-out parts by set (seeded): a paraphrase set, or the rows sharing a
    set_id (else an id), never lands on both sides. Both files are written atomically."""
    from .ops import split_groups
    from .prompts import looks_like_paraphrase_sets, read_jsonl_rows

    if train_out.resolve() == eval_out.resolve():
        _fail(f"--train and --eval are the same file ({train_out}): give two paths")
    try:
        if not in_file.is_file():
            raise FileNotFoundError(f"{in_file}: no such file")
        rows = read_jsonl_rows(in_file)
        if not rows:
            _fail(f"{in_file}: no rows to split")
        is_sets = looks_like_paraphrase_sets(rows[0])
        if is_sets:
            sets = load_psets(in_file)
            keys = [s.set_id for s in sets]
        else:
            group = next((c for c in ("set_id", "id") if all(c in row for row in rows)), None)
            keys = [str(row[group]) if group else str(k) for k, row in enumerate(rows)]
        train_idx, eval_idx = split_groups(keys, eval_size, seed)
        if is_sets:
            write_psets(train_out, [sets[i] for i in train_idx])
            write_psets(eval_out, [sets[i] for i in eval_idx])
        else:
            _write_rows(train_out, [rows[i] for i in train_idx])
            _write_rows(eval_out, [rows[i] for i in eval_idx])
    except _BAD_INPUT as e:
        _fail(str(e))
    unit = "sets" if is_sets else ("rows" if group is None else f"rows (kept together by {group})")
    n_groups = len(set(keys))
    n_eval = len({keys[i] for i in eval_idx})
    held = "sets" if is_sets else (f"{group}s" if group else "rows")
    _echo(
        f"split {in_file} ({len(keys)} {unit}, seed {seed}): {len(train_idx)} -> {train_out}, "
        f"{len(eval_idx)} -> {eval_out} ({n_eval} of {n_groups} {held} held out)"
    )


# ------------------------------------------------------------------------------------------
# import / corpus
# ------------------------------------------------------------------------------------------


@app.command("import")
def import_cmd(
    name: str = typer.Argument(..., help="triviaqa | hotpotqa | 2wikimultihopqa | musique | eli5"),
    path: str = typer.Argument(
        ..., help="the dataset's file in its release format (JSON/JSONL, .gz ok), or a Hugging Face dataset name"
    ),
    out: Path = typer.Option(..., "--out", "-o", help="output JSONL of paraphrase sets"),
    limit: Optional[int] = typer.Option(None, "--limit", min=0, help="import at most this many questions"),
    split: Optional[str] = typer.Option(None, "--split", help="split name (recorded; the hub split to load)"),
    corpus_out: Optional[Path] = typer.Option(
        None, "--corpus-out", help="also write the dataset-provided passages as a corpus JSONL"
    ),
    evidence_dir: Optional[Path] = typer.Option(
        None, "--evidence-dir", help="TriviaQA: the release's evidence/ folder (documents -> passages)"
    ),
    aliases: Optional[Path] = typer.Option(None, "--aliases", help="2WikiMultiHopQA: id_aliases.json"),
    max_answers: int = typer.Option(3, "--max-answers", min=1, help="ELI5: keep this many top-scored answers"),
    hf_config: Optional[str] = typer.Option(None, "--hf-config", help="config name for hub datasets"),
    out_format: str = typer.Option(
        "sets",
        "--format",
        help="sets: paraphrase sets (one wording each); prompts: ordinary rows {id, question, answers} "
        "(as 'grpo-sim data prompts' writes them)",
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Import a QA dataset into paraphrase sets (one paraphrase per set: the original question), or into ordinary
    (prompt, reference) rows with --format prompts."""
    from ..progress import spinner
    from .importers import canonical_name, export_corpus, import_dataset

    kwargs: dict[str, Any] = {}
    if out_format not in ("sets", "prompts"):
        _fail(f"unknown --format {out_format!r}: use sets or prompts")
    try:
        cname = canonical_name(name)
        if evidence_dir is not None:
            if cname != "triviaqa":
                _fail("--evidence-dir applies to triviaqa only")
            kwargs["evidence_dir"] = evidence_dir
        if aliases is not None:
            if cname != "2wikimultihopqa":
                _fail("--aliases applies to 2wikimultihopqa only")
            kwargs["aliases_path"] = aliases
        if cname == "eli5":
            kwargs["max_answers"] = max_answers
        if hf_config is not None:
            kwargs["hf_config"] = hf_config
        notes: list[str] = []
        with spinner(f"importing {cname} from {path}", progress):
            sets = import_dataset(cname, path, split=split, limit=limit, notes=notes, **kwargs)
        if not sets:
            _fail(f"{path}: no questions found (empty file or every row filtered)")
        corpus_notes: list[str] = []
        # empty: error, nothing written; TriviaQA without evidence: the search-result snippets (said in corpus_notes)
        n_corpus = export_corpus(sets, corpus_out, corpus_notes) if corpus_out is not None else None
        if out_format == "prompts":
            from .ops import prompt_rows_from_sets

            rows = prompt_rows_from_sets(sets)
            _write_rows(out, rows)
        else:
            write_psets(out, sets)
        n_pass = sum(len(s.metadata.get("passages") or []) for s in sets)
        n_ans = sum(len(s.answers) for s in sets)
        _echo(
            f"imported {len(sets)} {cname} questions from {path} -> {out} "
            f"({n_ans} gold answers, {n_pass} dataset passages in metadata)"
        )
        if out_format == "prompts":
            _echo(_prompt_rows_report(rows, out, None))
        if n_corpus is not None:
            _echo(f"wrote {n_corpus} distinct passages -> {corpus_out}")
        for note in corpus_notes:
            _echo(f"note: {note}")
        from .importers.common import missing_passages_message

        no_passages = missing_passages_message(sets) if out_format == "prompts" else None
        for note in notes:
            if note != no_passages:  # ordinary rows carry no passages: that note does not apply to them
                typer.echo(f"warning: {note}", err=True)
    except _BAD_INPUT as e:
        _fail(str(e))


@app.command("corpus")
def corpus_cmd(
    in_file: Path = typer.Argument(..., help="paraphrase-set JSONL written by 'import'"),
    out: Path = typer.Option(..., "--out", "-o", help="corpus JSONL to write (id, title, text per line)"),
) -> None:
    """Export the dataset-provided passages (metadata.passages) of a paraphrase-set file as a corpus."""
    from .importers import export_corpus

    corpus_notes: list[str] = []
    try:
        sets = load_psets(in_file)
        n = export_corpus(sets, out, corpus_notes)
    except _BAD_INPUT as e:
        _fail(str(e))
    if n == 0:
        _fail(f"{in_file}: no set has metadata.passages (TriviaQA needs --evidence-dir at import; ELI5 has none)")
    _echo(f"wrote {n} distinct passages -> {out}")
    for note in corpus_notes:
        _echo(f"note: {note}")


# ------------------------------------------------------------------------------------------
# paraphrase
# ------------------------------------------------------------------------------------------


@app.command("paraphrase")
def paraphrase_cmd(
    in_file: Path = typer.Argument(..., help="paraphrase-set JSONL (e.g. from 'import')"),
    out: Path = typer.Option(..., "--out", "-o", help="output JSONL"),
    backend: str = typer.Option("openai", "--backend", "-b", help="openai | vllm | template"),
    url: Optional[str] = typer.Option(None, "--url", help="OpenAI-compatible API base, e.g. http://127.0.0.1:8000/v1"),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="model id (server model name / vLLM model)"),
    n: int = typer.Option(4, "--n", min=1, help="paraphrases to add per question"),
    template_file: Optional[Path] = typer.Option(
        None, "--template-file", help="prompt template with {question} (and optionally {n})"
    ),
    concurrency: int = typer.Option(8, "--concurrency", min=1, help="parallel HTTP requests (openai backend)"),
    cache: Optional[Path] = typer.Option(
        None, "--cache", help="cache JSONL (default: OUT.cache.jsonl; template backend: none)"
    ),
    timeout: float = typer.Option(60.0, "--timeout", min=0.001, help="seconds per HTTP request"),
    retries: int = typer.Option(4, "--retries", min=0, help="retries per question (exponential backoff)"),
    backoff: float = typer.Option(1.0, "--backoff", min=0.0, help="first backoff delay in seconds"),
    temperature: float = typer.Option(0.8, "--temperature", min=0.0),
    api_key_env: str = typer.Option("OPENAI_API_KEY", "--api-key-env", help="environment variable holding the API key"),
    max_chars: int = typer.Option(400, "--max-chars", min=1, help="drop longer paraphrases"),
    near_dup: Optional[float] = typer.Option(
        None,
        "--near-duplicate-threshold",
        "--near-dup",
        min=0.0,
        max=1.0,
        help="character similarity at/above which a wording is a "
        "near-duplicate and dropped (default 0.92; template backend 0.98)",
    ),
    replace: bool = typer.Option(False, "--replace", help="replace existing paraphrases (except paraphrase 0)"),
    seed: int = typer.Option(0, "--seed", help="template/vLLM seed"),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Generate n paraphrases per question (LLM or rule templates), filter them, and write the sets."""
    from .paraphrase import FilterConfig, GenerationError, ParaphraseCache, load_template, make_backend, paraphrase_sets

    try:
        sets = load_psets(in_file)
        template = load_template(template_file)
        kind = backend.lower()
        if kind == "openai":
            if not url:
                _fail("--backend openai needs --url (the server's API base, e.g. http://127.0.0.1:8000/v1)")
            if not model:
                _fail("--backend openai needs --model (the model id the server serves)")
            be = make_backend(
                "openai",
                url=url,
                model=model,
                api_key=os.environ.get(api_key_env),
                timeout=timeout,
                max_retries=retries,
                backoff=backoff,
                temperature=temperature,
                concurrency=concurrency,
            )
        elif kind == "vllm":
            if not model:
                _fail("--backend vllm needs --model (a local path or hub id)")
            be = make_backend("vllm", model=model, temperature=temperature, seed=seed)
        elif kind == "template":
            be = make_backend("template", seed=seed)
        else:
            _fail(f"unknown --backend {backend!r}: use openai, vllm or template")
        cache_path = cache if cache is not None else (None if kind == "template" else Path(f"{out}.cache.jsonl"))
        pc = ParaphraseCache(cache_path)
        filters = None
        if near_dup is not None or max_chars != 400:
            filters = FilterConfig(
                max_chars=max_chars,
                near_dup_threshold=near_dup if near_dup is not None else (0.98 if kind == "template" else 0.92),
            )
        new_sets, stats = paraphrase_sets(
            sets,
            be,
            n=n,
            template=template,
            cache=pc,
            filters=filters,
            concurrency=concurrency,
            progress=progress,
            replace_existing=replace,
        )
        write_psets(out, new_sets)
    except GenerationError as e:
        _fail(str(e))
    except _BAD_INPUT as e:
        _fail(str(e))
    s = stats
    _echo(f"paraphrased {s.questions} sets with {getattr(be, 'model_id', kind)} -> {out}")
    _echo(
        f"  requests {s.requests} (retries {s.retries}), cache hits {s.cache_hits}, generated {s.generated}, "
        f"failed {s.failed}, already complete {s.skipped_complete}"
        + (f", cache {cache_path}" if cache_path is not None else "")
    )
    dropped = ", ".join(f"{r} {c}" for r, c in s.filtered.items() if c) or "none"
    _echo(
        f"  candidates {s.candidates}, kept {s.kept}; filtered: {dropped}; "
        f"sets with fewer than {n} new paraphrases: {s.short_sets}"
    )
    for line in s.near_duplicate_lines():
        _echo(f"  {line}")
    if pc.corrupt_lines:
        _echo(f"  note: skipped {pc.corrupt_lines} unreadable cache line(s) (an interrupted write)")
    if s.failed:
        for set_id, err in list(s.errors.items())[:10]:
            typer.echo(f"  failed {set_id}: {err}", err=True)
        typer.echo(
            f"{s.failed} question(s) failed after all retries; their sets keep their current wordings. "
            "Rerun the same command to retry them (finished questions come from the cache).",
            err=True,
        )
        raise typer.Exit(1)


# ------------------------------------------------------------------------------------------
# retrieve
# ------------------------------------------------------------------------------------------


@app.command("retrieve")
def retrieve_cmd(
    in_file: Path = typer.Argument(..., help="paraphrase-set JSONL"),
    corpus: Path = typer.Option(..., "--corpus", "-c", help="corpus JSONL: one {id, title, text} per line"),
    out: Path = typer.Option(..., "--out", "-o", help="output JSONL (passages attached to every paraphrase)"),
    retriever: str = typer.Option("bm25", "--retriever", "-r", help="bm25 | dense"),
    model: Optional[str] = typer.Option(
        None, "--model", "-m", help="dense model (default: packaged all-MiniLM-L6-v2; e.g. intfloat/e5-base-v2)"
    ),
    k: int = typer.Option(3, "--k", "-k", min=1, help="passages per paraphrase"),
    index_dir: Optional[Path] = typer.Option(
        None, "--index-dir", help="cache the index here (built once, reused while the corpus is unchanged)"
    ),
    device: Optional[str] = typer.Option(None, "--device", help="dense encoder device (default cuda if available)"),
    batch_size: int = typer.Option(64, "--batch-size", min=1, help="dense encoder batch size"),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Retrieve top-k passages for every paraphrase and print the retriever consistency."""
    from .pipeline import retrieve_file

    if retriever.lower() not in ("bm25", "dense"):
        _fail(f"unknown --retriever {retriever!r}: use bm25 or dense")
    if model is not None and retriever.lower() == "bm25":
        _fail("--model applies to --retriever dense only")
    try:
        stats = retrieve_file(
            in_file,
            corpus,
            out,
            retriever=retriever,
            model=model,
            k=k,
            index_dir=index_dir,
            device=device,
            batch_size=batch_size,
            progress=progress,
        )
    except _BAD_INPUT as e:
        _fail(str(e))
    where = f" ({stats['index']} {stats['index_path']})" if stats.get("index_path") else ""
    _echo(
        f"retrieved top-{k} of {stats['num_passages']} passages for {stats['num_queries']} paraphrases "
        f"of {stats['num_sets']} sets with {stats['retriever']}"
        f"{'' if not stats.get('model') else ' ' + stats['model']}"
        f"{where} -> {out}"
    )
    if stats["consistency"] is None:
        _echo("retriever consistency: n/a (no set has two or more paraphrases)")
    else:
        _echo(
            f"retriever consistency (mean pairwise Jaccard of top-{k} ids across paraphrases): "
            f"{stats['consistency']:.4f} over {stats['sets_scored']} sets "
            f"(min {stats['consistency_min']:.4f}, median {stats['consistency_median']:.4f})"
        )
    if "supporting_hit_rate" in stats:
        _echo(f"paraphrases whose top-{k} holds a supporting passage: {stats['supporting_hit_rate']:.3f}")


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
