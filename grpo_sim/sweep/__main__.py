"""``python -m grpo_sim.sweep SWEEP.yaml``: the same as ``grpo-sim sweep``."""

from .run import main

main()
