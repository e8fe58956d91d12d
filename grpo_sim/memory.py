"""Per-GPU memory of one GRPO training launch, as pure arithmetic (no torch, no GPU, no download).

:func:`estimate_memory` turns a model's shape (:class:`ModelShape`, from its config.json values) and a launch
(:class:`Launch`: dtype, strategy, number of training GPUs, optimizer, LoRA, reference model, gradient
checkpointing, batch and sequence lengths, vLLM placement, similarity encoders) into a table of terms in bytes
per GPU and a total against the GPU's memory. ``grpo-sim plan`` prints it; ``check``/``train`` refuse a launch
whose total exceeds the GPU (:func:`memory_problems`).

Model states (weights, gradients, fp32 masters, optimizer states) per strategy, P parameters, N training GPUs,
b bytes per weight of the model's dtype:

- DDP / one GPU, float32 masters (grpo_sim.runner.loading upcasts a bf16 model AdamW sees directly): weights 4P,
  gradients 4P, DDP buckets 4P (accelerate keeps ``gradient_as_bucket_view=False``: a second copy; none on one
  GPU), AdamW 8P: 20 B/param (16 on one GPU).
- DDP / one GPU, bf16 weights with a Kahan-summation AdamW (``training.optim: stable_adamw``, torch-optimi):
  weights bP, gradients bP, buckets bP, two AdamW states 2bP, Kahan compensation bP: 12 B/param (10 on one GPU).
- ZeRO-2: bf16 weights 2P, then 18P/N sharded: bf16 + fp32 gradients 6P/N, fp32 masters 4P/N, AdamW 8P/N
  (DeepSpeed's ``estimate_zero2_model_states_mem_needs``, cpu_offload=False, term for term).
- ZeRO-3: everything sharded, 18P/N (bf16 weights 2, fp32 gradients 4, masters 4, AdamW 8), plus the gathered
  largest layer 4L (DeepSpeed's
  ``estimate_zero3_model_states_mem_needs``, cpu_offload=False).
- FSDP2 with bf16 mixed precision: accelerate upcasts the sharded parameters to fp32: weights 4P/N, gradients
  4P/N, AdamW 8P/N, plus the gathered largest layer 4L (as ZeRO-3).
- LoRA: the frozen base in its dtype (bP; ZeRO-3/FSDP: bP/N) and float32 adapters (peft's autocast) with their
  gradients, buckets and AdamW states.

The reference model (beta > 0) is one more copy in the model's dtype, sharded by ZeRO-3 and FSDP (TRL prepares
it with the same plugin); with LoRA TRL uses the adapter-disabled base, no copy. Activations follow Korthikanti
et al. 2022 ("Reducing Activation Recomputation in Large Transformer Models") per token and layer for a SwiGLU
decoder with SDPA/flash attention (no s^2 term), with transformers' RMSNorm saving its float32 input (4H more
per norm): 22H + 8I + 4 kv_dim bytes in bf16 (tests/test_memory.py measures it); with gradient checkpointing
only each layer's input (2H bytes) is kept and one layer is recomputed at a time. The logits of the completion
tokens (TRL passes ``logits_to_keep``) cost B x (C + 1) x V x (b + 8) bytes: the bf16 logits, a float32 log-softmax
and its gradient. vLLM in colocate mode reserves ``gpu_memory_utilization`` x the GPU's memory for the whole run
(weights, its own activations and CUDA graphs, the KV cache in what is left); in server mode it is not on the
training GPUs. docs/memory.md compares the totals with published measurements.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

GiB = 1024**3
CONFIG_DIR = Path(__file__).resolve().parent / "model_configs"

#: bytes per element of the dtypes a recipe names
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2, "auto": 2}
#: what every training process holds besides tensors: CUDA context, cuBLAS/NCCL workspaces, allocator slack
CUDA_OVERHEAD = 1 * GiB
#: vLLM's own activation peak (profiled at start) and CUDA graphs, inside its reservation (colocate)
VLLM_OVERHEAD = int(1.5 * GiB)
#: a recipe fits its stated GPUs when its total leaves this fraction of the memory free
SHIPPED_MARGIN = 0.10
#: the linear layers of a Llama/Qwen2/Mistral decoder block and their (in, out) sizes, for LoRA's "all-linear"
LORA_ALL_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

STRATEGIES = ("single", "ddp", "zero2", "zero3", "fsdp")
#: training.optim values whose optimizer keeps bf16 weights training without float32 masters (Kahan summation)
KAHAN_OPTIMIZERS = ("stable_adamw",)


def kahan_optimizer(training: dict) -> bool:
    """Whether the recipe's ``training.optim`` trains bf16 weights without float32 masters: torch-optimi's
    StableAdamW (transformers' ``stable_adamw``) turns Kahan summation on for bf16 parameters unless
    ``optim_args`` says ``kahan_sum=False``."""
    optim = str(training.get("optim") or "")
    args = str(training.get("optim_args") or "").replace(" ", "").lower()
    return optim in KAHAN_OPTIMIZERS and "kahan_sum=false" not in args


@dataclass(frozen=True)
class ModelShape:
    """What a decoder-only (Llama / Qwen2 / Mistral style) model's memory depends on."""

    name: str
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    vocab: int
    max_context: int
    tied: bool
    head_dim: int | None = None
    qkv_bias: bool = False  # Qwen2: biases on q, k, v

    @classmethod
    def from_config(cls, values: dict, name: str | None = None) -> ModelShape:
        """From config.json values (a ``text_config`` inside wins, as in multimodal configs)."""
        values = {**values, **(values.get("text_config") or {})}
        model_type = str(values.get("model_type", ""))
        heads = int(values["num_attention_heads"])
        return cls(
            name=name or str(values.get("_name_or_path") or model_type or "model"),
            hidden=int(values["hidden_size"]),
            layers=int(values["num_hidden_layers"]),
            heads=heads,
            kv_heads=int(values.get("num_key_value_heads") or heads),
            intermediate=int(values["intermediate_size"]),
            vocab=int(values["vocab_size"]),
            max_context=int(values.get("max_position_embeddings") or 0),
            tied=bool(values.get("tie_word_embeddings", False)),
            head_dim=values.get("head_dim"),
            qkv_bias=model_type == "qwen2" or bool(values.get("attention_bias", False)),
        )

    @property
    def dim_per_head(self) -> int:
        return int(self.head_dim or self.hidden // self.heads)

    @property
    def q_dim(self) -> int:
        return self.heads * self.dim_per_head

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.dim_per_head

    def linear_shapes(self) -> dict[str, tuple[int, int]]:
        """(in, out) of each linear layer of one decoder block."""
        H, Q, K, I = self.hidden, self.q_dim, self.kv_dim, self.intermediate  # noqa: E741
        return {
            "q_proj": (H, Q),
            "k_proj": (H, K),
            "v_proj": (H, K),
            "o_proj": (Q, H),
            "gate_proj": (H, I),
            "up_proj": (H, I),
            "down_proj": (I, H),
        }

    @property
    def block_params(self) -> int:
        weights = sum(i * o for i, o in self.linear_shapes().values())
        bias = self.q_dim + 2 * self.kv_dim if self.qkv_bias else 0
        return weights + bias + 2 * self.hidden  # two RMSNorms

    @property
    def embedding_params(self) -> int:
        return self.vocab * self.hidden

    @property
    def params(self) -> int:
        """Every parameter once (a tied output layer shares the input embedding)."""
        head = 0 if self.tied else self.embedding_params
        return self.embedding_params + self.layers * self.block_params + self.hidden + head

    @property
    def largest_layer_params(self) -> int:
        """The largest module's own parameters (DeepSpeed's ``model_to_params``): the embedding here."""
        return max(self.embedding_params, max(i * o for i, o in self.linear_shapes().values()))

    def lora_params(self, r: int, targets: str | list[str] | tuple[str, ...] = "all-linear") -> int:
        """Parameters of rank-``r`` adapters (A: r x in, B: out x r) on the named linear layers of every block."""
        shapes = self.linear_shapes()
        names = LORA_ALL_LINEAR if targets == "all-linear" else [targets] if isinstance(targets, str) else targets
        chosen = [n for n in shapes if any(n == t or n.endswith(str(t)) for t in names)]
        return self.layers * sum(r * (shapes[n][0] + shapes[n][1]) for n in chosen)

    def kv_bytes_per_token(self, dtype_bytes: int = 2) -> int:
        """K and V of every layer for one token."""
        return 2 * self.layers * self.kv_dim * dtype_bytes

    def activation_bytes_per_token_layer(self) -> int:
        """Bytes (bf16) one decoder block keeps for backward per token, no recomputation, SDPA attention: the two
        RMSNorms' float32 inputs and bf16 outputs (12H), q/k/v/attention output and o_proj input (8H + 4 kv_dim), the
        residual (2H), the MLP's gate, up, activation and product (8I)."""
        return 22 * self.hidden + 8 * self.intermediate + 4 * self.kv_dim


def shipped_config_path(name_or_path: str) -> Path | None:
    """The shipped config.json values of a hub model id (``Qwen/Qwen2.5-3B-Instruct``), if shipped."""
    path = CONFIG_DIR / f"{name_or_path.rstrip('/').split('/')[-1]}.json"
    if path.is_file() and json.loads(path.read_text()).get("_name_or_path") == name_or_path:
        return path
    return None


def shipped_models() -> list[str]:
    return sorted(json.loads(p.read_text())["_name_or_path"] for p in CONFIG_DIR.glob("*.json"))


def model_shape(name_or_path: str) -> ModelShape | None:
    """The shape of a model from a local directory's config.json or the shipped configs; None when unknown."""
    local = Path(name_or_path).expanduser() / "config.json"
    path = local if local.is_file() else shipped_config_path(name_or_path)
    if path is None:
        return None
    try:
        return ModelShape.from_config(json.loads(path.read_text()), name=name_or_path)
    except (KeyError, ValueError, TypeError):
        return None


_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(GiB|GB|MiB|MB|TiB|TB|G|M)?\s*$", re.IGNORECASE)
_UNITS = {"gib": GiB, "g": GiB, "gb": 10**9, "mib": 1024**2, "m": 1024**2, "mb": 10**6, "tib": 1024**4, "tb": 10**12}


def parse_memory(text: str | int | float) -> int:
    """``80GiB``, ``80GB`` (10^9), ``24g``, ``81920MiB`` or a number of bytes -> bytes; ValueError otherwise."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return int(text)
    match = _SIZE.match(str(text))
    if not match:
        raise ValueError(f"{text!r} is not a memory size; write e.g. 80GiB, 80GB or 24GiB")
    unit = (match.group(2) or "").lower()
    return int(float(match.group(1)) * (_UNITS[unit] if unit else 1))


def gib(n: float) -> str:
    return f"{n / GiB:.2f} GiB"


@dataclass(frozen=True)
class Launch:
    """One training process's share of a launch (see the module docstring for what each setting changes)."""

    shape: ModelShape
    dtype_bytes: int = 2
    strategy: str = "ddp"  # single, ddp, zero2, zero3, fsdp
    num_gpus: int = 1  # training processes that shard or replicate the model
    masters_fp32: bool = True  # DDP/single: fp32 master weights (the runner's upcast); False: a Kahan optimizer
    lora_r: int | None = None
    lora_targets: str | tuple[str, ...] = "all-linear"
    beta: float = 0.0
    gradient_checkpointing: bool = False
    batch: int = 1  # completions per forward/backward (per_device_train_batch_size)
    prompt_tokens: int = 512
    completion_tokens: int = 256
    vllm: str | None = None  # None, "colocate", "server"
    vllm_gpu_memory_utilization: float = 0.9
    vllm_max_model_length: int | None = None  # None: the model's full context (what vLLM does)
    vllm_tensor_parallel: int = 1
    vllm_sequences: int = 1  # completions one vLLM call generates on this GPU (colocate)
    encoders: tuple[tuple[str, int], ...] = ()  # (name, parameters) of similarity encoders the reward loads
    gpu_memory: int | None = None  # bytes


@dataclass
class MemoryEstimate:
    launch: Launch
    terms: list[tuple[str, int, str]] = field(default_factory=list)  # (what, bytes per GPU, how)
    kv_cache: int | None = None  # bytes left for vLLM's KV cache (colocate)
    kv_one_sequence: int | None = None  # one sequence of max_model_len
    kv_generation: int | None = None  # this GPU's generation batch at prompt + completion tokens
    notes: list[str] = field(default_factory=list)

    def add(self, what: str, nbytes: float, how: str) -> None:
        if nbytes:
            self.terms.append((what, int(nbytes), how))

    def term(self, what: str) -> int:
        return sum(b for w, b, _ in self.terms if w == what)

    @property
    def total(self) -> int:
        return sum(b for _, b, _ in self.terms)

    @property
    def model_states(self) -> int:
        """Weights, gradients, masters, buckets and optimizer states of the trained model (DeepSpeed's
        "model states")."""
        return sum(b for w, b, _ in self.terms if w in MODEL_STATE_TERMS)

    def free(self) -> int | None:
        return None if self.launch.gpu_memory is None else self.launch.gpu_memory - self.total

    def fits(self, margin: float = 0.0) -> bool | None:
        if self.launch.gpu_memory is None:
            return None
        return self.total <= (1.0 - margin) * self.launch.gpu_memory

    def largest(self, k: int = 3) -> list[tuple[str, int, str]]:
        return sorted(self.terms, key=lambda t: -t[1])[:k]

    def rows(self) -> list[tuple[str, str, str]]:
        """(what, GiB, how) rows of the table, the total and the GPU last."""
        out = [(w, gib(b), how) for w, b, how in self.terms]
        out.append(("total per GPU", gib(self.total), ""))
        if self.launch.gpu_memory is not None:
            free = self.free() or 0
            share = self.total / self.launch.gpu_memory
            out.append(("GPU memory", gib(self.launch.gpu_memory), f"{share:.0%} used, {gib(free)} free"))
        return out


WEIGHTS, GRADS, BUCKETS, MASTERS, OPTIMIZER, GATHERED = (
    "weights",
    "gradients",
    "DDP gradient buckets",
    "fp32 master weights",
    "optimizer states",
    "gathered layer (ZeRO-3/FSDP)",
)
ADAPTERS = "LoRA adapters (weights, grads, AdamW)"
MODEL_STATE_TERMS = (WEIGHTS, GRADS, BUCKETS, MASTERS, OPTIMIZER, GATHERED, ADAPTERS)


def _model_states(est: MemoryEstimate) -> None:
    L = est.launch
    P, N, b, s = L.shape.params, max(L.num_gpus, 1), L.dtype_bytes, L.shape
    ddp_buckets = L.strategy == "ddp" and N > 1
    if L.lora_r:
        A = s.lora_params(L.lora_r, L.lora_targets)
        sharded = L.strategy in ("zero3", "fsdp")
        est.add(WEIGHTS, b * P / (N if sharded else 1), f"frozen base, {b} B/param" + (f" / {N}" if sharded else ""))
        per = 16 + (4 if ddp_buckets else 0)
        est.add(ADAPTERS, per * A, f"{A / 1e6:.1f}M float32 adapter params x {per} B")
        return
    if L.strategy in ("single", "ddp"):
        if L.masters_fp32:
            est.add(WEIGHTS, 4 * P, "float32 masters (bf16 model upcast), 4 B/param")
            est.add(GRADS, 4 * P, "float32, 4 B/param")
            if ddp_buckets:
                est.add(BUCKETS, 4 * P, "DDP's copy of the gradients (gradient_as_bucket_view=False), 4 B/param")
            est.add(OPTIMIZER, 8 * P, "AdamW exp_avg + exp_avg_sq, float32, 8 B/param")
        else:
            est.add(WEIGHTS, b * P, f"model dtype, {b} B/param")
            est.add(GRADS, b * P, f"{b} B/param")
            if ddp_buckets:
                est.add(BUCKETS, b * P, f"DDP's copy of the gradients, {b} B/param")
            est.add(OPTIMIZER, 3 * b * P, f"AdamW states + Kahan compensation in the model dtype, {3 * b} B/param")
    elif L.strategy == "zero2":
        est.add(WEIGHTS, 2 * P, "bf16, 2 B/param")
        est.add(GRADS, 6 * P / N, f"bf16 + fp32 partitions, 6 B/param / {N}")
        est.add(MASTERS, 4 * P / N, f"4 B/param / {N}")
        est.add(OPTIMIZER, 8 * P / N, f"AdamW, 8 B/param / {N}")
    elif L.strategy == "zero3":
        est.add(WEIGHTS, 2 * P / N, f"bf16, 2 B/param / {N}")
        est.add(GRADS, 4 * P / N, f"fp32 partitions, 4 B/param / {N}")
        est.add(MASTERS, 4 * P / N, f"4 B/param / {N}")
        est.add(OPTIMIZER, 8 * P / N, f"AdamW, 8 B/param / {N}")
        est.add(GATHERED, 4 * s.largest_layer_params, "4 B x the largest layer's params")
    elif L.strategy == "fsdp":
        est.add(WEIGHTS, 4 * P / N, f"float32 shards (accelerate upcasts under mixed precision), 4 B/param / {N}")
        est.add(GRADS, 4 * P / N, f"4 B/param / {N}")
        est.add(OPTIMIZER, 8 * P / N, f"AdamW, 8 B/param / {N}")
        est.add(GATHERED, 4 * s.largest_layer_params, "4 B x the largest layer's params")
    else:
        raise ValueError(f"strategy {L.strategy!r}: one of {', '.join(STRATEGIES)}")


def estimate_memory(launch: Launch) -> MemoryEstimate:
    """Every term of one training GPU's memory for ``launch`` (see the module docstring)."""
    L, s = launch, launch.shape
    est = MemoryEstimate(launch)
    N, b = max(L.num_gpus, 1), L.dtype_bytes
    _model_states(est)
    if L.beta > 0 and not L.lora_r:
        sharded = L.strategy in ("zero3", "fsdp")
        est.add(
            "reference model (beta > 0)",
            b * s.params / (N if sharded else 1),
            "a copy in the model dtype" + (f", sharded / {N}" if sharded else ""),
        )
    tokens = L.batch * (L.prompt_tokens + L.completion_tokens)
    per_layer = s.activation_bytes_per_token_layer()
    if L.gradient_checkpointing:
        kept = tokens * 2 * s.hidden * s.layers + tokens * per_layer
        how = f"checkpointed: {L.batch} x {L.prompt_tokens + L.completion_tokens} tokens, layer inputs + one layer"
    else:
        kept = tokens * per_layer * s.layers
        how = f"no checkpointing: {L.batch} x {L.prompt_tokens + L.completion_tokens} tokens x {s.layers} layers"
    est.add("activations", kept, how)
    est.add(
        "logits (completion tokens)",
        L.batch * (L.completion_tokens + 1) * s.vocab * (b + 8),
        f"{L.batch} x {L.completion_tokens + 1} x vocab {s.vocab} x {b + 8} B",
    )
    for name, params in L.encoders:
        est.add(f"similarity encoder {name}", 4 * params + 256 * 1024**2, "float32 weights + encode batch")
    est.add("CUDA context, NCCL, allocator", CUDA_OVERHEAD, "fixed")
    if L.vllm == "colocate":
        if L.gpu_memory is None:
            est.notes.append("vLLM colocate: its reservation is a share of the GPU's memory, which is not known")
        else:
            reserved = L.vllm_gpu_memory_utilization * L.gpu_memory
            est.add(
                "vLLM reservation (colocate)",
                reserved,
                f"vllm_gpu_memory_utilization {L.vllm_gpu_memory_utilization} x GPU, held all run",
            )
            weights = b * s.params / max(L.vllm_tensor_parallel, 1)
            est.kv_cache = int(reserved - weights - VLLM_OVERHEAD)
            max_len = L.vllm_max_model_length or s.max_context
            per_token = s.kv_bytes_per_token(b) / max(L.vllm_tensor_parallel, 1)
            est.kv_one_sequence = int(max_len * per_token)
            est.kv_generation = int(L.vllm_sequences * (L.prompt_tokens + L.completion_tokens) * per_token)
            est.notes.append(
                f"vLLM reservation {gib(reserved)} = weights {gib(weights)} + activations/CUDA graphs ~"
                f"{gib(VLLM_OVERHEAD)} + KV cache {gib(max(est.kv_cache, 0))}; one sequence of max_model_len "
                f"{max_len} needs {gib(est.kv_one_sequence)}, this GPU's generation batch ({L.vllm_sequences} x "
                f"{L.prompt_tokens + L.completion_tokens} tokens) {gib(est.kv_generation)}"
            )
    return est


def memory_problems(est: MemoryEstimate) -> tuple[list[str], list[str]]:
    """(problems, warnings): a launch whose total exceeds the GPU, a vLLM KV cache that cannot hold one sequence
    (vLLM refuses to start) or one generation batch (it generates in several waves)."""
    L = est.launch
    problems: list[str] = []
    warnings: list[str] = []
    if est.fits() is False:
        largest = ", ".join(f"{w} {gib(b)}" for w, b, _ in est.largest(3))
        problems.append(
            f"memory: {L.shape.name} needs ~{gib(est.total)} per training GPU under {L.strategy} on {L.num_gpus} "
            f"GPU(s), more than the GPU's {gib(L.gpu_memory or 0)}; largest terms: {largest}. Fix: "
            + "; ".join(memory_fixes(est))
        )
    if est.kv_cache is not None and est.kv_one_sequence is not None:
        max_len = L.vllm_max_model_length or L.shape.max_context
        if est.kv_cache < est.kv_one_sequence:
            problems.append(
                f"vLLM (colocate): its KV cache (~{gib(max(est.kv_cache, 0))} of the "
                f"{L.vllm_gpu_memory_utilization} x GPU reservation after {gib(L.dtype_bytes * L.shape.params)} of "
                f"weights) cannot hold one sequence of max_model_len {max_len} ({gib(est.kv_one_sequence)}): vLLM "
                "refuses to start. Set training.vllm_max_model_length to the longest prompt + max_completion_length "
                "(the default when the data is read), or RAISE training.vllm_gpu_memory_utilization"
            )
        elif est.kv_generation is not None and est.kv_cache < est.kv_generation:
            warnings.append(
                f"vLLM (colocate): the KV cache (~{gib(est.kv_cache)}) holds less than one generation batch on this "
                f"GPU ({gib(est.kv_generation)}): vLLM generates it in several waves (slower); raise "
                "training.vllm_gpu_memory_utilization or use vllm_mode: server"
            )
    return problems, warnings


def memory_fixes(est: MemoryEstimate) -> list[str]:
    """What would bring the largest terms down, in the order worth trying."""
    L = est.launch
    fixes = []
    if not L.lora_r and L.strategy in ("single", "ddp"):
        fixes.append("shard the model states with ZeRO-2 or ZeRO-3 (configs/accelerate/zero2.yaml, zero3.yaml)")
        if L.masters_fp32:
            fixes.append(
                "or keep bf16 weights with a Kahan-summation optimizer (training.optim: stable_adamw, "
                "torch-optimi: 12 B/param instead of 20)"
            )
    elif not L.lora_r and L.strategy == "zero2":
        fixes.append("shard the weights too with ZeRO-3 (configs/accelerate/zero3.yaml)")
    if not L.lora_r:
        fixes.append("train LoRA adapters (model.lora)")
    if L.vllm == "colocate":
        fixes.append(
            "run vLLM on its own GPU (training.vllm_mode: server, scripts/vllm_server.sh), or lower "
            "training.vllm_gpu_memory_utilization only while its KV cache still holds a generation batch"
        )
    if not L.gradient_checkpointing:
        fixes.append("training.gradient_checkpointing: true")
    fixes.append("a smaller training.per_device_train_batch_size (raise gradient_accumulation_steps to keep the batch)")
    return fixes


def bytes_per_param(strategy: str, num_gpus: int, masters_fp32: bool = True) -> float:
    """Model-state bytes per parameter of full fine-tuning (the figures docs/memory.md tabulates)."""
    shape = ModelShape("unit", 64, 1, 1, 1, 64, 64, 64, True)
    est = MemoryEstimate(Launch(shape, strategy=strategy, num_gpus=num_gpus, masters_fp32=masters_fp32))
    _model_states(est)
    gathered = est.term(GATHERED)
    return (est.model_states - gathered) / shape.params
