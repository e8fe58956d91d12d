"""How the trainer's weights reach the vLLM engine: TRL's NCCL transfer on CUDA, vLLM's ``reload_weights`` elsewhere.

TRL 1.16 syncs through vLLM's NCCL weight-transfer engine (server mode) or the engine's ``load_weights`` per tensor
(colocate). Neither works without CUDA: the trainer refuses to start in server mode ("needs a CUDA device") and the
CPU backend's repacked linear layers have no ``weight_loader`` in colocate. vLLM's ``reload_weights`` does work on
CPU, so ``vllm_weight_sync`` chooses (:func:`resolve_weight_sync`):

- ``nccl``: TRL's own path, except that the tensors come from :func:`grpo_sim.weight_sync.weights_to_send` (LoRA merged
  into temporaries instead of merge/unmerge in place on the base; the engine's dtype, not float32 masters);
- ``reload``: server mode writes the tensors as a safetensors directory the server can read (``vllm_sync_dir``) and
  asks ``POST /collective_rpc {"method": "reload_weights", "kwargs": {"weights_path": ...}}`` (the server must run
  in dev mode, ``VLLM_SERVER_DEV_MODE=1``); colocate passes them in-process,
  ``llm.collective_rpc("reload_weights", kwargs={"weights_iterator": ...})``;
- ``auto``: ``reload`` when the policy is not on a CUDA device, else ``nccl``.

The reload request is bounded: a server that dies or hangs during it ends the request within ``vllm_server_timeout``
seconds (no retries), the server is marked lost, and the trainer's RolloutServerLost path saves a checkpoint of the last
finished step on every process.

:class:`SyncedVLLMGeneration` is TRL's ``VLLMGeneration`` with these paths; PSGRPOTrainer builds it in place of TRL's
class (grpo_sim.trl_internals.vllm_generation_class), so no other part of TRL's generation changes.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import torch
from trl.generation.vllm_generation import VLLMGeneration

from . import trl_internals
from .openai_http import HTTPRequestError, post_json
from .weight_sync import is_peft_model, save_for_reload, tensor_to_send, unwrap_model, vllm_name, weights_to_send

logger = logging.getLogger(__name__)

WEIGHT_SYNC_MODES = ("auto", "nccl", "reload")


def resolve_weight_sync(mode: str, device: torch.device | str) -> str:
    """``nccl`` or ``reload`` for the setting ``mode`` and the policy's ``device``."""
    if mode not in WEIGHT_SYNC_MODES:
        raise ValueError(f"vllm_weight_sync={mode!r} is not valid: use one of {', '.join(WEIGHT_SYNC_MODES)}")
    if mode != "auto":
        return mode
    return "nccl" if torch.device(device).type == "cuda" else "reload"


def guard_vllm_module_scan() -> None:
    """Let vLLM's scan of loaded modules pass once numba has been imported (bm25s imports it).

    On CPU, vLLM's engine start registers C++ stand-ins for its Triton kernels
    (``vllm.triton_utils.dispatcher._rebind_kernels``), walking every attribute of every module in ``sys.modules``
    and calling ``vars(value).get("kernel")`` on anything with a ``__dict__``. ``llvmlite.binding.ffi.lib`` answers
    EVERY attribute through ``__getattr__`` with a wrapped library function, ``__dict__`` included, so ``vars(lib)``
    is not a dict and the engine start fails with "'_lib_fn_wrapper' object has no attribute 'get'". Giving ``lib``
    an empty ``__dict__`` answer (its function table is where ``__getattr__`` looks first) makes ``vars(lib)`` a
    dict; nothing in llvmlite reads ``lib.__dict__``.
    """
    ffi = sys.modules.get("llvmlite.binding.ffi")
    lib = getattr(ffi, "lib", None)
    table = getattr(lib, "_fntab", None)
    if isinstance(table, dict) and not isinstance(table.get("__dict__"), dict):
        table["__dict__"] = {}


def _dtype_from_name(name: Any) -> torch.dtype | None:
    """``torch.bfloat16`` from ``'bfloat16'`` / ``'torch.bfloat16'`` (what the server reports), else None."""
    value = getattr(torch, str(name).removeprefix("torch."), None)
    return value if isinstance(value, torch.dtype) else None


def post_reload(base_url: str, weights_path: str | os.PathLike[str], timeout: float) -> None:
    """Ask the server at ``base_url`` to reload its weights from ``weights_path``; at most ``timeout`` seconds.

    One request, no retries (TRL's own session retries a refused connection for about a minute): a server that is
    gone, hangs past ``timeout`` or fails the reload (HTTP 5xx) raises ``ConnectionError`` (the server is lost);
    a server without the endpoint (not in dev mode) a ``RuntimeError`` saying how to start it.
    """
    url = f"{base_url.rstrip('/')}/collective_rpc"
    payload = {"method": "reload_weights", "kwargs": {"weights_path": str(Path(weights_path).resolve())}}
    try:
        post_json(url, payload, parse=lambda raw: raw, timeout=timeout, max_retries=0)
    except HTTPRequestError as exc:
        if exc.status == 404:
            raise RuntimeError(
                f"the vLLM server at {base_url} has no /collective_rpc endpoint, which vllm_weight_sync=reload "
                "needs: restart it in dev mode (scripts/vllm_server.sh --dev, or VLLM_SERVER_DEV_MODE=1), or use "
                "vllm_weight_sync: nccl on a CUDA machine"
            ) from None
        if exc.status is not None:
            raise RuntimeError(f"the vLLM server at {base_url} refused the weight reload: {exc}") from None
        raise ConnectionError(f"weight reload at {url} failed: {exc}") from None


class SyncedVLLMGeneration(VLLMGeneration):
    """TRL's ``VLLMGeneration`` with the weight sync chosen by ``weight_sync`` (see the module docstring).

    ``sync_dir``: where the server-mode reload writes the weights (a directory the server can read: the same machine
    or a shared filesystem). ``request_timeout``: the bound on one reload request, in seconds.
    """

    def __init__(
        self,
        *args: Any,
        weight_sync: str = "auto",
        sync_dir: str | os.PathLike[str] | None = None,
        request_timeout: float = 240.0,
        **kwargs: Any,
    ):
        self.weight_sync_setting = weight_sync
        self.sync_dir = Path(sync_dir) if sync_dir is not None else None
        self.request_timeout = float(request_timeout)
        self._send_dtype: torch.dtype | None = None
        self._send_dtype_known = False
        self.sync_seconds: list[float] = []  # wall time of every sync, in order
        self.syncs = 0
        super().__init__(*args, **kwargs)

    # --------------------------------------------------------------------------------------- start
    def _init_vllm(self) -> None:
        self.weight_sync = resolve_weight_sync(self.weight_sync_setting, self.accelerator.device)
        if self.mode == "colocate":
            guard_vllm_module_scan()
        if self.mode != "server" or self.weight_sync == "nccl":
            super()._init_vllm()
            return
        # server mode, reload: TRL's server start without the NCCL communicator (it needs CUDA)
        if self.sync_dir is None:
            raise ValueError("vllm_weight_sync=reload in server mode needs a directory the server can read (sync_dir)")
        if self.accelerator.is_main_process:
            from trl.generation.vllm_client import VLLMClient

            base_url = self.server_base_url or f"http://{self.server_host}:{self.server_port}"
            self.vllm_client = VLLMClient(
                base_url=base_url, group_port=self.group_port, connection_timeout=self.server_timeout
            )
            self.vllm_client.get_server_info()  # TRL's own check: dev mode, which /collective_rpc needs
        self.accelerator.wait_for_everyone()

    # --------------------------------------------------------------------------------------- what is sent
    def send_dtype(self) -> torch.dtype | None:
        """The engine's dtype (what vLLM serves in); asked once. The same on every process."""
        if not self._send_dtype_known:
            name = None
            if self.mode == "colocate":
                name = self.llm.llm_engine.model_config.dtype
            elif self.accelerator.is_main_process:
                name = self.vllm_client.get_server_info()["model_config"].get("dtype")
            if self.mode == "server" and self.accelerator.num_processes > 1:
                from accelerate.utils import broadcast_object_list

                holder = [str(name) if name is not None else None]
                broadcast_object_list(holder, from_process=0)
                name = holder[0]
            self._send_dtype = _dtype_from_name(name)
            self._send_dtype_known = True
        return self._send_dtype

    def _iter_named_params(self) -> Iterator[tuple[str, torch.Tensor]]:
        """TRL's walk of the parameters (gathered under ZeRO-3), with the tensors from the weight_sync seam.

        The reload path sends tied parameters under every name (``lm_head.weight`` besides
        ``model.embed_tokens.weight``): on CPU vLLM multiplies with a copy of the output layer's weight prepacked when
        that layer is loaded, and ``reload_weights`` re-processes only the layers that receive a tensor; sent once,
        the tied weight reaches the embeddings (the name vLLM loads) and the output layer keeps its stale packed copy
        (the engine then samples from the first weights). Sent under both names, both layers are refreshed.
        """
        model = self.model
        aliases = self.weight_sync == "reload"
        dtype = self.send_dtype()
        dist = trl_internals.distributed_backend(self)
        if dist.is_fsdp:  # FSDP's own gather (GPU only): TRL's path, cast to the engine's dtype
            for name, tensor in super()._iter_named_params():
                yield name, tensor.to(dtype) if dtype is not None else tensor
            return
        if is_peft_model(model):
            with dist.gather_params(list(model.parameters())):  # ZeRO-3: the whole model, as TRL does
                yield from weights_to_send(model, dtype, include_aliases=aliases)
            return
        for name, param in unwrap_model(model).named_parameters(remove_duplicate=not aliases):
            with dist.gather_params([param]):  # ZeRO-3: one parameter at a time, as TRL does
                yield vllm_name(name), tensor_to_send(param, dtype)

    # --------------------------------------------------------------------------------------- the sync
    def sync_weights(self) -> None:
        started = time.perf_counter()
        if self.weight_sync == "nccl":
            super().sync_weights()
        elif self.mode == "colocate":
            self._reload_colocate()
        else:
            self._reload_server()
        self.sync_seconds.append(time.perf_counter() - started)
        self.syncs += 1

    def _reload_colocate(self) -> None:
        if self.enable_sleep_mode:
            self.llm.wake_up(tags=["weights"])
            trl_internals.mark_vllm_weights_awake(self)
        self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": self._iter_named_params()})
        self.llm.reset_prefix_cache()

    def _reload_server(self) -> None:
        pairs = self._iter_named_params()  # every process walks it (ZeRO-3 gathers are collective)
        if not self.accelerator.is_main_process:
            for _ in pairs:
                pass
            return
        client = self.vllm_client
        if getattr(client, "lost", None) is not None:  # the server is gone: the next generation ends the run
            for _ in pairs:
                pass
            return
        directory = save_for_reload(pairs, self.sync_dir)
        reload = getattr(client, "reload_weights", None)
        if reload is not None:  # grpo_sim.trainer's watch: a lost server is marked, not raised here
            reload(directory, self.request_timeout)
        else:
            post_reload(client.base_url, directory, self.request_timeout)
        client.reset_prefix_cache()


def vllm_generation_factory(args: Any) -> Any:
    """What builds the trainer's vLLM backend for ``args`` (a PSGRPOConfig, or any GRPOConfig: defaults then)."""
    sync_dir = getattr(args, "vllm_sync_dir", None) or Path(args.output_dir) / "vllm-weights"
    return functools.partial(
        SyncedVLLMGeneration,
        weight_sync=getattr(args, "vllm_weight_sync", "auto"),
        sync_dir=sync_dir,
        request_timeout=args.vllm_server_timeout,
    )
