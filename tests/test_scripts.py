"""The launcher scripts: syntax, usage errors, and the GPU check's wheel installation and CPU dry run."""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("script", ["vllm_server.sh", "slurm_train.sh", "gpu_check.sh"])
def test_shell_scripts_parse(script):
    subprocess.run(["bash", "-n", str(ROOT / "scripts" / script)], check=True)


def test_vllm_server_without_arguments_prints_usage():
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "vllm_server.sh")], capture_output=True, text=True)
    assert proc.returncode == 2 and "scripts/vllm_server.sh MODEL" in proc.stdout


def _gpu_check_env(tmp_path, wheels: Path) -> dict[str, str]:
    return dict(
        os.environ,
        PYTHON=sys.executable,
        GPU_CHECK_WHEELS=str(wheels),
        GPU_CHECK_SITE=str(tmp_path / "site"),
        OMP_NUM_THREADS="1",
    )


def _fake_wheel(folder: Path, name: str, version: str, requires: list[str] = ()) -> Path:
    """A minimal pure-Python wheel (what pip needs to install it offline)."""
    dist_info = f"{name}-{version}.dist-info"
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    files = {
        f"{name}/__init__.py": f"VERSION = {version!r}\n",
        f"{dist_info}/METADATA": metadata + "".join(f"Requires-Dist: {r}\n" for r in requires),
        f"{dist_info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    files[f"{dist_info}/RECORD"] = "".join(f"{path},,\n" for path in files) + f"{dist_info}/RECORD,,\n"
    path = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for arc, text in files.items():
            zf.writestr(arc, text)
    return path


def test_gpu_check_installs_only_the_missing_wheels(tmp_path):
    wheels = tmp_path / "whl"
    wheels.mkdir()
    _fake_wheel(wheels, "grpo_sim_probe", "1.0", ["grpo-sim-absent-dependency>=1"])
    # the same distribution and version as installed here: must be left alone (not shadowed from the site folder)
    _fake_wheel(wheels, "packaging", importlib.metadata.version("packaging"))
    env = _gpu_check_env(tmp_path, wheels)
    cmd = ["bash", str(ROOT / "scripts" / "gpu_check.sh"), "--install-only"]
    first = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "grpo_sim_probe-1.0" in first.stdout and "packaging-" not in first.stdout.split("installing into")[1]
    assert "grpo_sim_probe needs grpo-sim-absent-dependency>=1, which is not installed" in first.stdout
    assert (tmp_path / "site" / "grpo_sim_probe" / "__init__.py").is_file()
    assert not (tmp_path / "site" / "packaging").exists()
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "all 2 wheels" in again.stdout and "installed already" in again.stdout


def test_gpu_check_without_torch_says_which_python_to_use(tmp_path):
    env = dict(_gpu_check_env(tmp_path, tmp_path / "none"), PYTHON="/bin/false")
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh")], env=env, capture_output=True, text=True)
    assert proc.returncode == 2 and "set PYTHON to the interpreter that has it" in proc.stderr


@pytest.mark.slow
def test_gpu_check_dry_run_on_cpu(tmp_path):
    """The GPU check's code path on CPU: tiny model, 2 steps of each trainer, fp32, the ZeRO-3 similarity check."""
    out = tmp_path / "check.json"
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "gpu_check.sh"), "--dry-run", "--json", str(out)],
        env=_gpu_check_env(tmp_path, tmp_path / "no-wheels"),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["device"] == "cpu" and result["precision"] == "fp32" and result["steps"] == 2
    runs = {(r["trainer"], r["generation"]): r for r in result["runs"]}
    assert set(runs) == {("ps_grpo", "hf"), ("grpo", "hf")}
    for run in runs.values():
        assert run["steps"] == 2 and run["step_time_s_median"] > 0 and run["generated_tokens_per_s"] > 0
        assert 0 < run["fraction_of_parameters_changed"] <= 1
    assert result["step_time_ratio_ps_grpo_over_grpo"]["hf"] > 0
    zero3 = result["zero3_similarity"]
    try:
        import deepspeed  # noqa: F401
    except ImportError:
        assert "skipped" in zero3
    else:
        assert zero3["ok"] and zero3["from_pretrained_partitions_under_zero3"], zero3
    assert "PSGRPOTrainer / GRPOTrainer step-time ratio (hf)" in proc.stdout
