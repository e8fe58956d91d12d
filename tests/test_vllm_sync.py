"""The vLLM weight sync without vLLM installed (grpo_sim.vllm_sync): the reload path driven by PSGRPOTrainer against
a local HTTP stand-in for the server's /collective_rpc (server mode) and a recording engine (colocate), the lost and
the hung server during a reload, the switch, tied embeddings sent under both names and the numba module-scan guard.

The real engine runs the same paths in tests/real_vllm/ (make test-vllm).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

from grpo_sim.trainer import PSGRPOConfig, PSGRPOTrainer, RolloutServerLost
from grpo_sim.vllm_sync import (
    SyncedVLLMGeneration,
    guard_vllm_module_scan,
    post_reload,
    resolve_weight_sync,
    vllm_generation_factory,
)
from grpo_sim.weight_sync import WEIGHTS_FILE

from trainer_helpers import build_policy, common_args, dataset, policy

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def policy_path(tmp_path_factory):
    return build_policy(tmp_path_factory.mktemp("policy"))


class ReloadServer:
    """/collective_rpc reload_weights as vLLM's dev-mode server answers it: reads the safetensors it is pointed at.

    ``hang_on``: the reload call (1-based) that sleeps ``hang_seconds`` before answering.
    """

    def __init__(self, hang_on: int | None = None, hang_seconds: float = 0.0):
        self.reloads: list[dict[str, torch.Tensor]] = []
        self.requests: list[dict] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if self.path != "/collective_rpc":
                    self.send_error(404)
                    return
                owner.requests.append(body)
                if hang_on is not None and len(owner.requests) == hang_on:
                    time.sleep(hang_seconds)
                    return
                owner.reloads.append(load_file(str(Path(body["kwargs"]["weights_path"]) / WEIGHTS_FILE)))
                payload = b'{"results": [null]}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class FakeClient:
    """TRL's VLLMClient as the trainer uses it: generation (fake completions), the server's info, a cache reset."""

    def __init__(self, base_url, tokenizer, dtype="bfloat16"):
        self.base_url = base_url
        self.tokenizer = tokenizer
        self.dtype = dtype
        self.resets = 0

    def get_server_info(self):
        return {"model_config": {"dtype": self.dtype}}

    def reset_prefix_cache(self):
        self.resets += 1

    def generate(self, prompts, n, **kwargs):
        eos, words = self.tokenizer.eos_token_id, len(self.tokenizer) - 8  # the last ids are ordinary words
        completions = [[words + (i + j) % 4, words + 4 + j % 2, eos] for i in range(len(prompts)) for j in range(n)]
        return {
            "prompt_ids": prompts,
            "completion_ids": completions,
            "logprobs": [[[-1.0]] * len(c) for c in completions],
        }


def attach(trainer, tokenizer, mode, client=None, llm=None, weight_sync="reload", **kwargs):
    """SyncedVLLMGeneration built as PSGRPOTrainer builds it, with the fake client / engine in place of vLLM (its
    start, which needs vllm installed, is skipped: _generation_without_engine)."""
    factory = vllm_generation_factory(trainer.args)
    generation = factory(
        model=trainer.model,
        accelerator=trainer.accelerator,
        processing_class=tokenizer,
        mode=mode,
        max_completion_length=5,
        **kwargs,
    )
    generation.vllm_client, generation.llm = client, llm
    generation.weight_sync = resolve_weight_sync(weight_sync, trainer.accelerator.device)
    trainer.use_vllm = True
    trainer.vllm_generation = generation
    trainer.vllm_importance_sampling_correction = False
    trainer._last_loaded_step = -1
    return generation


def _generation_without_engine(monkeypatch):
    """SyncedVLLMGeneration's constructor with the engine / client start skipped (vllm is not installed here)."""
    monkeypatch.setattr(SyncedVLLMGeneration, "_init_vllm", lambda self: None)


class StepWeights(TrainerCallback):
    def __init__(self):
        self.after_step = []

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.after_step.append({k: v.detach().clone() for k, v in model.named_parameters()})


def _trainer(policy_path, tmp_path, **overrides):
    args = PSGRPOConfig(
        **common_args(tmp_path / "run", **{"per_device_train_batch_size": 12, "max_steps": 3, **overrides}),
        similarity="token_f1",
    )
    model, tokenizer = policy(policy_path)
    trainer = PSGRPOTrainer(model=model, args=args, train_dataset=dataset(), processing_class=tokenizer)
    return trainer, tokenizer


def test_the_switch():
    assert resolve_weight_sync("auto", "cpu") == "reload"
    assert resolve_weight_sync("auto", torch.device("cuda", 0)) == "nccl"
    assert resolve_weight_sync("nccl", "cpu") == "nccl" and resolve_weight_sync("reload", "cuda") == "reload"
    with pytest.raises(ValueError, match="vllm_weight_sync='rsync' is not valid: use one of auto, nccl, reload"):
        PSGRPOConfig(output_dir="x", use_cpu=True, bf16=False, vllm_weight_sync="rsync")
    from grpo_sim.recipe.training_keys import _check_training

    assert _check_training({"vllm_weight_sync": "reload"}) == ({"vllm_weight_sync": "reload"}, [])
    _, problems = _check_training({"vllm_weight_sync": "rsync"})
    assert problems and problems[0].startswith("training.vllm_weight_sync:")


def test_server_reload_sends_each_steps_weights_in_the_engine_dtype(policy_path, tmp_path, monkeypatch):
    """Every step starts with one reload; what the server reads is the policy after the previous step, in the dtype
    the server reports (bfloat16; the policy trains in float32)."""
    _generation_without_engine(monkeypatch)
    server = ReloadServer()
    trainer, tokenizer = _trainer(policy_path, tmp_path)
    initial = {k: v.detach().clone() for k, v in trainer.model.named_parameters()}
    steps = StepWeights()
    trainer.add_callback(steps)
    client = FakeClient(server.base_url, tokenizer)
    generation = attach(trainer, tokenizer, "server", client=client)
    try:
        trainer.train()
    finally:
        server.stop()
    assert len(server.reloads) == 3 and client.resets == 3 and generation.syncs == 3
    expected = [initial] + steps.after_step[:2]
    for reloaded, weights in zip(server.reloads, expected):
        # the policy's embeddings are tied: the reload gets them under both names (else the CPU engine's prepacked
        # output layer stays stale, see SyncedVLLMGeneration._iter_named_params)
        assert set(reloaded) == set(weights) | {"lm_head.weight"}
        assert torch.equal(reloaded["lm_head.weight"], reloaded["model.embed_tokens.weight"])
        for name, value in weights.items():
            assert reloaded[name].dtype == torch.bfloat16
            assert torch.equal(reloaded[name], value.to(torch.bfloat16)), name
    assert any(not torch.equal(server.reloads[0][k], server.reloads[2][k]) for k in initial)  # it trained
    sync_dir = Path(server.requests[0]["kwargs"]["weights_path"])
    assert sync_dir == (tmp_path / "run" / "vllm-weights").resolve()


def test_a_server_lost_during_the_reload_ends_with_a_checkpoint(policy_path, tmp_path, monkeypatch):
    """The server goes away after two reloads: the third sync marks it lost, and the run ends with RolloutServerLost
    and checkpoint-2 (the last finished step), as a server lost before a generation does."""
    _generation_without_engine(monkeypatch)
    server = ReloadServer()
    trainer, tokenizer = _trainer(policy_path, tmp_path, max_steps=4)
    generation = attach(trainer, tokenizer, "server", client=FakeClient(server.base_url, tokenizer))
    original = generation.sync_weights

    def sync_then_die():
        if generation.syncs == 2:
            server.stop()
        original()

    generation.sync_weights = sync_then_die
    with pytest.raises(RolloutServerLost) as lost:
        trainer.train()
    message = str(lost.value)
    assert "during the weight reload" in message and "checkpoint-2" in message and "--resume auto" in message
    assert (tmp_path / "run" / "checkpoint-2" / "model.safetensors").is_file()


def test_a_server_hung_in_the_reload_is_given_up_after_the_request_timeout(policy_path, tmp_path, monkeypatch):
    """The bound on a reload is vllm_server_timeout: a server that does not answer the second reload ends the run
    (checkpoint-1) about that many seconds later, not after TRL's retries or a collective timeout."""
    _generation_without_engine(monkeypatch)
    server = ReloadServer(hang_on=2, hang_seconds=30)
    trainer, tokenizer = _trainer(policy_path, tmp_path, vllm_server_timeout=2.0)
    attach(trainer, tokenizer, "server", client=FakeClient(server.base_url, tokenizer))
    started = time.monotonic()
    with pytest.raises(RolloutServerLost, match="checkpoint-1"):
        trainer.train()
    assert time.monotonic() - started < 20
    server.stop()


def test_post_reload_names_dev_mode_when_the_endpoint_is_missing(tmp_path):
    server = ReloadServer()
    try:
        with pytest.raises(RuntimeError, match="dev mode"):
            post_reload(server.base_url + "/nothing", tmp_path, timeout=5)
    finally:
        server.stop()
    with pytest.raises(ConnectionError):
        post_reload(server.base_url, tmp_path, timeout=5)  # stopped: nothing listens


class RecordingLLM:
    """vLLM's LLM as the colocated sync uses it: collective_rpc("reload_weights", kwargs={"weights_iterator": ...})."""

    class _Config:
        dtype = torch.float32

    def __init__(self):
        self.reloads = []
        self.resets = 0
        self.llm_engine = type("Engine", (), {"model_config": self._Config()})()

    def collective_rpc(self, method, kwargs):
        assert method == "reload_weights"
        self.reloads.append({name: tensor.clone() for name, tensor in kwargs["weights_iterator"]})

    def reset_prefix_cache(self):
        self.resets += 1

    def generate(self, prompts, sampling_params, use_tqdm):
        outputs = []
        for k, prompt in enumerate(prompts):
            for _ in range(sampling_params.n):
                token_ids = [5 + k % 3, 0]
                outputs.append(type("O", (), {"token_ids": token_ids, "logprobs": None})())
        return [
            type("R", (), {"prompt_token_ids": p["prompt_token_ids"], "outputs": [o]})()
            for p, o in zip(prompts, outputs)
        ]


def test_colocate_reload_passes_the_weights_in_process(policy_path, tmp_path, monkeypatch):
    import trl.generation.vllm_generation as vg

    _generation_without_engine(monkeypatch)
    monkeypatch.setattr(vg, "SamplingParams", lambda **kw: type("SP", (), kw)(), raising=False)
    monkeypatch.setattr(
        vg, "extract_logprobs", lambda outputs: ([[[-1.0]] * len(o.outputs[0].token_ids) for o in outputs], None)
    )
    trainer, tokenizer = _trainer(policy_path, tmp_path, max_steps=2, per_device_train_batch_size=6)
    steps = StepWeights()
    trainer.add_callback(steps)
    llm = RecordingLLM()
    attach(trainer, tokenizer, "colocate", llm=llm)
    trainer.train()
    assert len(llm.reloads) == 2 and llm.resets == 2
    assert all(torch.equal(llm.reloads[1][k], v) for k, v in steps.after_step[0].items())


def _vllm_style_scan():
    """What vllm.triton_utils.dispatcher._rebind_kernels (vLLM 0.31) does to every loaded module, minus rebinding."""
    for module in list(sys.modules.values()):
        namespace = getattr(module, "__dict__", None)
        if not namespace:
            continue
        for _attr, value in list(namespace.items()):
            if hasattr(value, "__dict__"):
                vars(value).get("kernel")


def test_numba_loaded_breaks_vllms_module_scan_until_guarded():
    pytest.importorskip("numba")
    import bm25s  # noqa: F401 - imports numba, as retrieval data does
    import llvmlite.binding.ffi as ffi

    ffi.lib._fntab.pop("__dict__", None)  # as after a fresh import
    with pytest.raises(AttributeError, match="_lib_fn_wrapper"):
        _vllm_style_scan()
    guard_vllm_module_scan()
    _vllm_style_scan()
    guard_vllm_module_scan()  # idempotent
    _vllm_style_scan()


def test_trls_own_sync_path_takes_lora_from_the_seam(monkeypatch):
    """vllm_weight_sync nccl keeps TRL's sync_weights (here its colocate branch, load_weights per tensor, stands in for
    the NCCL broadcast, which needs CUDA) but the tensors come from the seam: after 50 syncs of a bf16 LoRA model the
    base is bit-identical and the engine received W + scale * B @ A under the base names (TRL's own walk merges and
    unmerges in place)."""
    import copy

    from accelerate import Accelerator
    from peft import LoraConfig, get_peft_model

    from grpo_sim.models.tiny import build_tiny_qwen2, build_word_tokenizer

    tokenizer = build_word_tokenizer(["a b c d e f"])
    base = build_tiny_qwen2(tokenizer, hidden_size=32, num_layers=1, num_heads=1, tie_word_embeddings=False)
    config = LoraConfig(r=2, target_modules=["q_proj", "v_proj"], init_lora_weights=False, task_type="CAUSAL_LM")
    model = get_peft_model(base.to(torch.bfloat16), config)
    loaded = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" not in n}

    received = {}
    engine_model = type("M", (), {"load_weights": lambda self, pairs: received.update(pairs)})()
    runner = type("R", (), {"model": engine_model})()
    worker = type("W", (), {"model_runner": runner})()
    engine = type("E", (), {"model_executor": type("X", (), {"driver_worker": worker})()})()
    llm = RecordingLLM()
    llm.llm_engine = engine
    engine.model_config = type("C", (), {"dtype": torch.bfloat16})()

    _generation_without_engine(monkeypatch)
    generation = SyncedVLLMGeneration(
        model=model, accelerator=Accelerator(cpu=True), processing_class=tokenizer, mode="colocate", weight_sync="nccl"
    )
    generation.weight_sync, generation.llm = "nccl", llm
    for step in range(50):
        generation.sync_weights()
        with torch.no_grad():
            for name, param in model.named_parameters():
                if param.requires_grad:
                    param.add_(1e-3 * torch.randn(param.shape, generator=torch.Generator().manual_seed(step)))
    generation.sync_weights()
    assert all(torch.equal(p, loaded[n]) for n, p in model.named_parameters() if "lora_" not in n)
    merged = copy.deepcopy(model).float().merge_and_unload()
    assert set(received) == {n for n, _ in merged.named_parameters()}
    for name, param in merged.named_parameters():
        assert torch.equal(received[name], param.detach().to(torch.bfloat16)), name
