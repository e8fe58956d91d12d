"""The run directory: its file names, checkpoints and which one to resume from, and when it may be reused."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from ..recipe import Recipe

logger = logging.getLogger(__name__)

COMPLETE_MARKER = ".grpo_sim_complete"
RESOLVED_RECIPE = "recipe.resolved.yaml"
METRICS_FILE = "metrics.jsonl"
FINAL_DIR = "final"
#: the trained LoRA adapter when ``model.merge_adapters`` puts the merged model into final/
FINAL_ADAPTER_DIR = "final_adapter"


class RunError(RuntimeError):
    """The run cannot start or continue as asked (output directory, checkpoints)."""


def _step_of(path: Path) -> int:
    try:
        return int(path.name.rsplit("-", 1)[1])
    except (IndexError, ValueError):
        return -1


def find_checkpoints(output_dir: Path) -> tuple[list[Path], list[Path]]:
    """(complete, incomplete) checkpoints, newest first. Complete = our marker was written after the save."""
    if not output_dir.is_dir():
        return [], []
    candidates = sorted(
        (p for p in output_dir.glob("checkpoint-*") if p.is_dir() and _step_of(p) >= 0), key=_step_of, reverse=True
    )
    complete = [p for p in candidates if (p / COMPLETE_MARKER).exists()]
    incomplete = [p for p in candidates if not (p / COMPLETE_MARKER).exists()]
    return complete, incomplete


def resolve_resume(output_dir: Path, resume: str | None) -> str | None:
    """Checkpoint path to resume from (``auto`` = newest complete one), or None to start fresh."""
    if resume is None:
        return None
    if resume != "auto":
        path = Path(resume)
        if not path.is_dir():
            raise RunError(f"--resume {resume}: no such checkpoint directory")
        if not (path / "trainer_state.json").exists():
            raise RunError(f"--resume {resume}: not a complete checkpoint (no trainer_state.json)")
        return str(path)
    complete, incomplete = find_checkpoints(output_dir)
    newest_complete = _step_of(complete[0]) if complete else -1
    for path in incomplete:
        if _step_of(path) > newest_complete:
            logger.warning("skipping %s: its write did not finish (no %s marker)", path, COMPLETE_MARKER)
    if complete:
        return str(complete[0])
    logger.warning("--resume auto: no complete checkpoint in %s, starting from step 0", output_dir)
    return None


def never_trained(output_dir: Path) -> bool:
    """True if the directory holds only what a start leaves before training (the resolved recipe, empty folders).

    Such a directory is what a failed start (e.g. a model that would not load) leaves behind; its
    rerun may reuse it without --overwrite.
    """
    entries = list(output_dir.iterdir())
    return any(p.name == RESOLVED_RECIPE for p in entries) and all(
        p.name == RESOLVED_RECIPE or (p.is_dir() and not any(p.iterdir())) for p in entries
    )


def check_output_dir(output_dir: Path, resume: str | None, overwrite: bool) -> bool:
    """Refuse to mix runs: a non-empty directory needs --resume or --overwrite. Returns "must empty it".

    Reads only, so every process can run it before any process writes.
    """
    if output_dir.exists() and not output_dir.is_dir():
        raise RunError(f"output directory {output_dir} exists and is not a directory")
    existing = [p.name for p in output_dir.iterdir()] if output_dir.is_dir() else []
    if existing and resume is None:
        if never_trained(output_dir):
            logger.info("%s holds only the files of a start that never trained; replacing them", output_dir)
            return True
        if not overwrite:
            shown = ", ".join(sorted(existing)[:5]) + (" ..." if len(existing) > 5 else "")
            raise RunError(
                f"output directory {output_dir} is not empty ({shown}). Continue that run with --resume auto, "
                "start again with --overwrite (deletes it), or choose another --output-dir."
            )
        return True
    return False


def run_directory(recipe: Recipe, output_dir: str | os.PathLike[str] | None = None) -> Path:
    """--output-dir, else the recipe's output_dir, else runs/<recipe name>."""
    return Path(output_dir or recipe.output_dir or f"runs/{Path(recipe._source).stem}").resolve()


#: the trainer config class a checkpoint's training_args.bin holds -> the kind of run that wrote it
_CONFIG_KINDS = ((b"PSGRPOConfig", "grpo"), (b"GRPOConfig", "grpo"), (b"SFTConfig", "sft"))
#: what each command calls the runs it resumes
_KIND_NAMES = {"grpo": "GRPO (grpo-sim train)", "sft": "SFT warm-start (grpo-sim sft)"}


def checkpoint_kind(checkpoint: Path) -> str | None:
    """``"grpo"`` or ``"sft"``: which trainer wrote ``checkpoint``, read off the config class named in its
    ``training_args.bin`` (a torch zip whose pickle is stored uncompressed: nothing is unpickled); None if unknown."""
    try:
        data = (checkpoint / "training_args.bin").read_bytes()
    except OSError:
        return None
    return next((kind for name, kind in _CONFIG_KINDS if name in data), None)


def resume_target_problems(checkpoint: Path, recipe: Recipe, resume: str | None, expected: str = "grpo") -> list[str]:
    """Why ``checkpoint`` cannot be resumed by this ``expected`` kind of run with ``recipe``: a checkpoint of the
    other kind (an SFT warm start is a model to start from, not a run to continue), or a run trained with another
    model or other reward terms (its run directory's recipe.resolved.yaml)."""
    from ..recipe import parse_recipe
    from ..validation import load_yaml

    flag = f"--resume {resume}" if resume and resume != "auto" else f"--resume auto ({checkpoint})"
    kind = checkpoint_kind(checkpoint)
    if kind is not None and kind != expected:
        return [
            f"{flag}: {checkpoint} is a checkpoint of an {_KIND_NAMES[kind]} run, not of a {_KIND_NAMES[expected]} "
            "run: resuming would continue its optimizer and schedule. To start from its weights instead, use it "
            f"as model.name_or_path to warm-start (model.name_or_path: {checkpoint}) without --resume"
        ]
    saved_path = checkpoint.parent / RESOLVED_RECIPE
    try:
        saved = parse_recipe(load_yaml(saved_path.read_text(encoding="utf-8")), str(saved_path))
    except (OSError, ValueError):
        return []  # no saved recipe beside it (a copied checkpoint) or one this version cannot read: nothing to compare
    problems = []
    if not _same_model(saved.model.name_or_path, recipe.model.name_or_path):
        problems.append(
            f"{flag}: that run trained model.name_or_path {saved.model.name_or_path!r} ({saved_path}), this recipe "
            f"names {recipe.model.name_or_path!r}: resume with the recipe it was trained with, or start a new run "
            f"from its weights (model.name_or_path: {checkpoint}, no --resume)"
        )
    if expected == "grpo" and saved.reward_terms() != recipe.reward_terms():
        problems.append(
            f"{flag}: that run was trained with other reward terms ({saved_path}: "
            f"{_terms_text(saved.reward_terms())}; this recipe: {_terms_text(recipe.reward_terms())}): resume with the "
            f"recipe it was trained with, or start a new run from its weights (model.name_or_path: {checkpoint}, no "
            "--resume)"
        )
    return problems


def _terms_text(terms: list[dict]) -> str:
    return ", ".join(
        f"{t.get('name') or t.get('type')} ({t.get('type')}, weight {t.get('weight', 1.0)})" for t in terms
    )


def _same_model(a: str, b: str) -> bool:
    """The same hub id or name, or two spellings of one local directory."""
    if a == b:
        return True
    try:
        return Path(a).expanduser().exists() and Path(a).expanduser().samefile(Path(b).expanduser())
    except OSError:
        return False
