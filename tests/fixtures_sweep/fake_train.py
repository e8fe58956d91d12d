"""Stand-in for ``grpo-sim train`` in the sweep tests (starts in milliseconds instead of seconds).

    python fake_train.py RECIPE TRIAL_DIR

Reads the trial recipe, logs ``training.max_steps`` rows to ``TRIAL_DIR/metrics.jsonl`` with
``reward = learning_rate * step`` (``FAKE_STEP_S`` seconds per step), and exits with status 3 when
``training.run_name`` is ``crash``. Writes its pid to ``TRIAL_DIR/fake.pid``.
"""

import json
import os
import sys
import time
from pathlib import Path

import yaml

recipe_path, out = sys.argv[1], Path(sys.argv[2])
training = (yaml.safe_load(Path(recipe_path).read_text()) or {}).get("training") or {}
(out / "fake.pid").write_text(str(os.getpid()))
print(f"fake training of {recipe_path} in {out}", flush=True)
if training.get("run_name") == "crash":
    print("simulated crash: CUDA out of memory", file=sys.stderr, flush=True)
    sys.exit(3)
lr = float(training.get("learning_rate", 1e-3))
for step in range(1, int(training.get("max_steps", 2)) + 1):
    time.sleep(float(os.environ.get("FAKE_STEP_S", "0")))
    with open(out / "metrics.jsonl", "a") as fh:
        fh.write(json.dumps({"step": step, "loss": 1.0 / step, "reward": lr * step}) + "\n")
print("done", flush=True)
