#!/usr/bin/env bash
# grpo-sim GPU check for ONE GPU machine without network access (under 10 minutes on one H100/H200).
#
#   scripts/gpu_check.sh --download-wheels   # HERE, with network, in the checkout: fill .whl/ (~10 MB, git-ignored)
#   scripts/gpu_check.sh [OPTIONS]           # THERE, on the GPU machine: install what is missing from .whl/, run
#   scripts/gpu_check.sh --dry-run           # the same path on CPU in seconds (tiny model, 2 steps, fp32)
#   scripts/gpu_check.sh --install-only      # only install the missing wheels and say what was installed
#   scripts/gpu_check.sh --memory [--dry-run] # one Qwen2.5-3B-shaped full fine-tuning step: peak memory against
#                                            # grpo_sim.memory's estimate (within 15 %); --dry-run: tiny, on CPU
#
# OPTIONS go to scripts/gpu_check.py (--help lists them): it builds a ~0.47B-parameter Qwen2 locally, trains
# PSGRPOTrainer and trl.GRPOTrainer for the same steps in bf16 mixed precision (HF generation; vLLM colocate too
# when vllm is importable), prints step time, tokens/s, peak GPU memory, the PS-GRPO/GRPO step-time ratio and the
# fraction of parameters changed, and scores the embedding similarity under an active DeepSpeed ZeRO-3 config when
# deepspeed is importable. Exit status non-zero when anything failed.
#
# Environment: PYTHON (default python3: the interpreter that has torch), GPU_CHECK_WHEELS (default <checkout>/.whl),
# GPU_CHECK_SITE (where missing wheels are installed; default /tmp/grpo-sim-gpu-check-site, put first on
# PYTHONPATH, the system packages stay untouched), GPU_CHECK_PYTHON_VERSION (target of --download-wheels; 3.12).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${PYTHON:-python3}
WHEELS=${GPU_CHECK_WHEELS:-$ROOT/.whl}
SITE=${GPU_CHECK_SITE:-/tmp/grpo-sim-gpu-check-site}
TARGET_PY=${GPU_CHECK_PYTHON_VERSION:-3.12}
# What the GPU image lacks (torch, transformers, accelerate, peft, sentence-transformers, pandas, pyarrow, ... are
# there): TRL and datasets with their pure-Python needs, this project's pydantic, rapidfuzz and bm25s (the demo
# data's retrieval), deepspeed's hjson.
CARRIED="trl datasets dill multiprocess pydantic pydantic-core annotated-types typing-inspection rapidfuzz bm25s hjson"
# deepspeed is an sdist: built here into a pure-Python wheel without its ops (they JIT-compile when used)
BUILT="deepspeed"

die() { echo "gpu_check.sh: $*" >&2; exit 2; }

download_wheels() {
    # versions: those installed in the local environment (what the tests ran against)
    local py=$PYTHON
    [ -x "$ROOT/.venv/bin/python" ] && py=$ROOT/.venv/bin/python
    local specs
    specs=$("$py" - "$CARRIED $BUILT" <<'EOF'
import importlib.metadata as md, sys
missing, specs = [], []
for name in sys.argv[1].split():
    try:
        specs.append(f"{name}=={md.version(name)}")
    except md.PackageNotFoundError:
        missing.append(name)
if missing:
    sys.exit(f"not installed here, so no version to pin: {' '.join(missing)} (run `make install` first)")
print(" ".join(specs))
EOF
) || exit 2
    mkdir -p "$WHEELS"
    local name
    for name in $CARRIED $BUILT; do  # one version of each: two would stop the install there
        rm -f "$WHEELS/${name//-/_}"-[0-9]*.whl "$WHEELS/$name"-[0-9]*.whl
    done
    local carried=() built=() spec
    for spec in $specs; do
        case " $BUILT " in *" ${spec%%==*} "*) built+=("$spec") ;; *) carried+=("$spec") ;; esac
    done
    echo "downloading for CPython $TARGET_PY manylinux x86_64: ${carried[*]}"
    "$py" -m pip download -q --no-deps --only-binary=:all: --python-version "$TARGET_PY" --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d "$WHEELS" "${carried[@]}"
    echo "building (DS_BUILD_OPS=0, pure Python): ${built[*]}"
    "$py" -m pip install -q wheel
    DS_BUILD_OPS=0 "$py" -m pip wheel -q --no-deps --no-build-isolation -w "$WHEELS" "${built[@]}"
    ls -1 "$WHEELS"
    local mib
    mib=$(du -sm "$WHEELS" | cut -f1)
    echo "$WHEELS: ${mib} MiB (the GPU machine takes 64 MiB with the checkout)"
}

install_wheels() {
    shopt -s nullglob
    local wheels=("$WHEELS"/*.whl)
    shopt -u nullglob
    if [ ${#wheels[@]} -eq 0 ]; then
        echo "no wheels in $WHEELS: nothing to install"
        return 0
    fi
    # a wheel is installed unless the same distribution and version is importable already
    local todo
    todo=$(PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" - "${wheels[@]}" <<'EOF'
import importlib.metadata as md, sys
for path in sys.argv[1:]:
    name, version = path.rsplit("/", 1)[-1].split("-")[:2]
    try:
        have = md.version(name)
    except md.PackageNotFoundError:
        have = None
    if have != version:
        print(path)
EOF
)
    if [ -z "$todo" ]; then
        echo "all ${#wheels[@]} wheels in $WHEELS are installed already"
        return 0
    fi
    echo "installing into $SITE:"
    echo "$todo" | sed 's|.*/|  |'
    # shellcheck disable=SC2086 # one path per line, no spaces (wheel file names)
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" $todo
    # --no-deps: say which requirement of a carried wheel this machine does not meet (a likely cause of a failure)
    PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" - $todo <<'EOF' || true
import importlib.metadata as md, sys
from packaging.requirements import Requirement
for path in sys.argv[1:]:
    name = path.rsplit("/", 1)[-1].split("-")[0]
    for line in md.requires(name) or []:
        req = Requirement(line)
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        try:
            have = md.version(req.name)
        except md.PackageNotFoundError:
            print(f"warning: {name} needs {req}, which is not installed")
            continue
        if req.specifier and not req.specifier.contains(have, prereleases=True):
            print(f"warning: {name} needs {req}, found {req.name} {have}")
EOF
}

case "${1:-}" in
    --download-wheels) download_wheels; exit 0 ;;
    -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
esac

"$PYTHON" -c 'import torch' 2>/dev/null || die "$PYTHON cannot import torch (set PYTHON to the interpreter that has it)"
install_wheels
export PYTHONPATH="$SITE:$ROOT${PYTHONPATH:+:$PYTHONPATH}"
if [ "${1:-}" = "--install-only" ]; then
    echo "PYTHONPATH=$PYTHONPATH"
    exit 0
fi
missing=$("$PYTHON" - <<'EOF'
import importlib.util
needed = ["trl", "datasets", "pydantic", "rapidfuzz", "peft", "sentence_transformers", "sacrebleu"]
print(" ".join(n for n in needed if importlib.util.find_spec(n) is None))
EOF
)
[ -z "$missing" ] || die "missing Python packages: $missing. On a machine with network access run
    scripts/gpu_check.sh --download-wheels
in this checkout and bring .whl/ along (or install them)."
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
if [ "${1:-}" = "--memory" ]; then  # the memory model against torch.cuda.max_memory_allocated (scripts/gpu_memory_check.py)
    shift
    exec "$PYTHON" "$ROOT/scripts/gpu_memory_check.py" "$@"
fi
exec "$PYTHON" "$ROOT/scripts/gpu_check.py" "$@"
