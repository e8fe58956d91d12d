"""The similarity registry refuses a second metric under a taken name, and a failed import of the built-in
metrics is an error that a later import retries (it used to be swallowed for good by a flag set first)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from grpo_sim.similarity import available, get_similarity, register
from grpo_sim.similarity.base import CallableSimilarity
from grpo_sim.similarity.registry import _DEFAULTS, _FACTORIES


def _constant(**_params):
    return CallableSimilarity(lambda a, b: [[1.0] * len(b) for _ in a], name="constant")


def test_a_taken_name_is_refused_unless_replaced_on_purpose(monkeypatch):
    monkeypatch.setattr("grpo_sim.similarity.registry._FACTORIES", dict(_FACTORIES))
    monkeypatch.setattr("grpo_sim.similarity.registry._DEFAULTS", dict(_DEFAULTS))
    with pytest.raises(ValueError, match="'bleu2' is already registered .*replace=True"):
        register("bleu2")(_constant)
    assert get_similarity("bleu2").matrix(["a b"], ["c d"])[0, 0] == 0.0  # the built-in is untouched
    register("bleu2", replace=True)(_constant)
    assert get_similarity("bleu2").matrix(["a b"], ["c d"])[0, 0] == 1.0
    register("my_constant")(_constant)
    register("my_constant")(_constant)  # the same factory again (a reloaded plugin) is no clash
    assert "my_constant" in available()


def test_a_failed_import_of_the_builtin_metrics_is_retried():
    script = """
import sys
sys.modules["grpo_sim.similarity.lexical"] = None  # lexical.py fails to import once
try:
    from grpo_sim.similarity import available
    available()
except ImportError:
    pass
else:
    raise SystemExit("the failed import was swallowed")
del sys.modules["grpo_sim.similarity.lexical"]
from grpo_sim.similarity import available
assert "bleu2" in available(), available()
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
