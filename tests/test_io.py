"""Atomic writes leave the permissions an ordinary write would: umask for new files, the old mode on replace."""

from __future__ import annotations

import os
import stat
from contextlib import contextmanager

import pytest

from grpo_sim.data.schema import read_corpus, write_corpus, write_psets
from grpo_sim.io import (
    atomic_directory,
    atomic_open,
    atomic_write_bytes,
    atomic_write_lines,
    atomic_write_text,
    current_umask,
)

SET = {"set_id": "s0", "question": "Who?", "paraphrases": [{"paraphrase_id": 0, "question": "Who?"}]}


@contextmanager
def umask(mask: int):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def ordinary_write_mode(tmp_path, mask: int) -> int:
    with umask(mask):
        plain = tmp_path / f"plain-{mask:o}"
        plain.write_text("x")
    return mode(plain)


@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077, 0o000])
@pytest.mark.parametrize("writer", ["text", "bytes", "lines", "psets", "corpus", "open_wb"])
def test_new_file_gets_the_mode_of_an_ordinary_write(tmp_path, mask, writer):
    target = tmp_path / "out.jsonl"
    with umask(mask):
        if writer == "text":
            atomic_write_text(target, "x")
        elif writer == "bytes":
            atomic_write_bytes(target, b"x")
        elif writer == "lines":
            atomic_write_lines(target, ["a", "b"])
        elif writer == "psets":
            write_psets(target, [SET])
        elif writer == "corpus":
            write_corpus(target, [{"id": "p0", "text": "t"}])
        else:
            with atomic_open(target, "wb") as fh:
                fh.write(b"x")
    assert mode(target) == ordinary_write_mode(tmp_path, mask) == 0o666 & ~mask


def test_replacing_a_file_keeps_its_mode(tmp_path):
    target = tmp_path / "shared.json"
    target.write_text("old")
    os.chmod(target, 0o640)
    with umask(0o077):
        atomic_write_text(target, "new")
    assert target.read_text() == "new" and mode(target) == 0o640
    os.chmod(target, 0o604)
    write_corpus(target, [{"id": "p0", "text": "t"}])
    assert mode(target) == 0o604 and read_corpus(target)[0].id == "p0"


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "keep.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_open(target) as fh:
            fh.write("half")
            raise RuntimeError("boom")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]


def test_current_umask_reads_without_changing_it():
    with umask(0o027):
        assert current_umask() == 0o027
        assert current_umask() == 0o027


@pytest.mark.parametrize("mask", [0o022, 0o077])
def test_atomic_directory_gets_the_mode_of_an_ordinary_mkdir(tmp_path, mask):
    with umask(mask):
        plain = tmp_path / "plain"
        plain.mkdir()
        with atomic_directory(tmp_path / "index") as tmp:
            (tmp / "data.bin").write_bytes(b"x")
    assert mode(tmp_path / "index") == mode(plain) == 0o777 & ~mask
