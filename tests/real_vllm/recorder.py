"""A reward term that records what the trainer scored (``function: recorder:record``, weight 0).

Each call appends one JSON line per completion to ``$GRPO_SIM_RECORD.<rank>``: the step, the row's set and
paraphrase ids (None for ordinary rows), the prompt and the completion. It imports bm25s (and so numba) at import
time, as a run with retrieval data does, which is what broke vLLM's engine start in colocate mode
(grpo_sim.vllm_sync.guard_vllm_module_scan).
"""

from __future__ import annotations

import json
import os

import bm25s  # noqa: F401 - numba loaded before the engine starts


def _text(value):
    return value[-1]["content"] if isinstance(value, list) else value


def record(prompts, completions, set_id=None, paraphrase_id=None, trainer_state=None, **kwargs):
    path = f"{os.environ['GRPO_SIM_RECORD']}.{os.environ.get('RANK', '0')}"
    step = None if trainer_state is None else int(trainer_state.global_step)
    n = len(completions)
    set_ids = set_id if set_id is not None else [None] * n
    para_ids = paraphrase_id if paraphrase_id is not None else [None] * n
    with open(path, "a") as out:
        for k in range(n):
            row = {
                "step": step,
                "set_id": set_ids[k],
                "paraphrase_id": para_ids[k],
                "prompt": _text(prompts[k]),
                "completion": _text(completions[k]),
            }
            out.write(json.dumps(row) + "\n")
    return [0.0] * n
