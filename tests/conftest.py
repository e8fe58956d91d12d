import importlib.util
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# deepspeed (optional extra) is imported by save_pretrained and warns "Setting accelerator to CPU" in every
# process where it has to guess; tests run on CPU, so tell it (and the subprocesses the tests start).
if "DS_ACCELERATOR" not in os.environ:
    import torch

    if not torch.cuda.is_available():
        os.environ["DS_ACCELERATOR"] = "cpu"

# tests/real_vllm/ drives the real vLLM engine: it runs in its own venv (make test-vllm); elsewhere it is left out.
# (Not named tests/vllm: with tests/ on sys.path that directory would pass for a `vllm` package, and TRL's
# is_vllm_available() would then fail on its missing version.)
if importlib.util.find_spec("vllm") is None:
    collect_ignore = ["real_vllm"]
