"""vLLM's scan of loaded modules at engine start, with numba loaded (bm25s imports it)."""

from __future__ import annotations

import pytest


def test_vllms_module_scan_fails_on_llvmlite_until_guarded():
    """vllm.triton_utils.dispatcher._rebind_kernels (run by the CPU platform when an engine starts) calls
    vars(value).get("kernel") on every module attribute with a __dict__; llvmlite.binding.ffi.lib answers __dict__
    with a wrapped library function, so the scan raises the error seen at colocate engine start. After
    grpo_sim.vllm_sync.guard_vllm_module_scan it passes (the trainer calls the guard before starting the engine)."""
    import bm25s  # noqa: F401 - imports numba, which loads llvmlite's library wrapper
    import llvmlite.binding.ffi as ffi
    from vllm.triton_utils.dispatcher import _rebind_kernels

    from grpo_sim.vllm_sync import guard_vllm_module_scan

    ffi.lib._fntab.pop("__dict__", None)  # as right after numba's import
    with pytest.raises(AttributeError, match="'_lib_fn_wrapper' object has no attribute 'get'"):
        _rebind_kernels([(object(), object())])
    guard_vllm_module_scan()
    _rebind_kernels([(object(), object())])
