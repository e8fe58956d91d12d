"""bm25s sets its logger to DEBUG when imported; grpo-sim's retriever undoes that once."""

from __future__ import annotations

import logging
import subprocess
import sys


def test_building_an_index_logs_nothing_below_warning():
    code = (
        "import logging; logging.basicConfig(level=logging.DEBUG)\n"
        "from grpo_sim.data.retrieval import BM25Retriever\n"
        "from grpo_sim.data.schema import Passage\n"
        "BM25Retriever([Passage(id='a', text='paris is in france'), Passage(id='b', text='rome')])\n"
        "import logging as L; print('LEVEL', L.getLogger('bm25s').level)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "Building index" not in proc.stderr, proc.stderr
    assert f"LEVEL {logging.WARNING}" in proc.stdout
