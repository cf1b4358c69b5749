#!/usr/bin/env bash
# Install PyTorch into the venv whose python is $1, choosing the build for this machine
# (a torch already installed there is kept: that is how a user picks a build by hand):
#   - an NVIDIA driver (nvidia-smi) -> the default build from PyPI (CUDA on Linux);
#   - no driver, and PyTorch's CPU wheel index answers within 5 s -> the CPU build from
#     that index (about 200 MB instead of several GB of CUDA libraries);
#   - otherwise (offline, firewalled, index down) -> the default index, as pip would.
# torchvision (the extra stnlab[backbones]) comes in the same pip command, from the same
# index: each release is built for one torch release and build, and a CUDA torchvision does
# not even import with a CPU torch. Next to a kept torch it is added if missing, pinned to
# that torch, so that installing the extras never replaces the torch chosen here.
# TORCH_SPEC (default "torch==2.13.0") names the release; VISION_SPEC (default
# "torchvision"; empty: none) the torchvision; CPU_INDEX can point elsewhere;
# DRY_RUN=1 prints the pip command instead of running it (the tests use it).
set -euo pipefail
python="$1"
spec="${TORCH_SPEC:-torch==2.13.0}"
vision="${VISION_SPEC-torchvision}"
cpu_index="${CPU_INDEX:-https://download.pytorch.org/whl/cpu}"

pip_install() {
  if [ -n "${DRY_RUN:-}" ]; then echo "pip install $*"; else "$python" -m pip install -q "$@"; fi
}

index_answers() {
  "$python" - "$1" <<'PY'
import sys, urllib.request
try:
    urllib.request.urlopen(sys.argv[1].rstrip("/") + "/torch/", timeout=5).close()
except Exception:
    sys.exit(1)
PY
}

check_vision() {  # a torchvision built for another torch fails on import: say so
  if [ -n "$vision" ] && [ -z "${DRY_RUN:-}" ] && ! "$python" -c "import torchvision" 2>/dev/null; then
    echo "install-torch: warning: torchvision does not load with this torch (a build for" \
      "another one?); --backbone and its tests need the torchvision build made for it"
  fi
}

if "$python" -c "import torch" 2>/dev/null; then
  echo "install-torch: keeping the torch already installed in this environment"
  if [ -n "$vision" ] && ! "$python" -c "import importlib.util as u, sys; sys.exit(u.find_spec('torchvision') is None)"; then
    installed="torch==$("$python" -c "import torch; print(torch.__version__)")"
    echo "install-torch: adding $vision for $installed"
    if [[ "$installed" == *+cpu ]] && index_answers "$cpu_index"; then
      pip_install --retries 1 --timeout 15 --index-url "$cpu_index" "$vision" "$installed"
    else
      pip_install "$vision" "$installed"
    fi
    check_vision
  fi
  exit 0
elif command -v nvidia-smi >/dev/null 2>&1; then
  echo "install-torch: NVIDIA driver found: $spec from the default index (CUDA build)"
elif index_answers "$cpu_index"; then
  echo "install-torch: no NVIDIA driver: $spec, CPU build, from $cpu_index"
  if pip_install --retries 1 --timeout 15 --index-url "$cpu_index" "$spec" $vision; then
    check_vision
    exit 0
  fi
  echo "install-torch: the CPU index failed mid-install; falling back to the default index"
else
  echo "install-torch: no NVIDIA driver, and $cpu_index did not answer within 5 s:" \
    "$spec from the default index"
fi
pip_install "$spec" $vision
check_vision
