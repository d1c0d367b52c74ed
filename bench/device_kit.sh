#!/usr/bin/env bash
# The Python packages the GRPO benchmark needs that the lent GPU machine's image lacks, as wheels in .whl/ for its
# Python 3.12 on x86-64, and a check that they fit what one device call may carry (64 MiB with the working tree).
#
#   bash bench/device_kit.sh          # here, on a machine that reaches PyPI
#
# The image already holds torch, transformers, accelerate, peft, huggingface_hub, pyarrow, pandas, xxhash, tokenizers,
# safetensors, pyyaml and pillow (its published package list, read 2026-11-25); what the project needs beyond those is
# pinned below at the versions its own tests run with. `bench/README.md` ("On the lent GPU machine") gives the
# command that installs them there and runs the benchmark.
set -euo pipefail
cd "$(dirname "$0")/.."

WHEELS=(
  "trl==1.16.0"
  "datasets==5.2.0"
  "dill==0.4.1"
  "multiprocess==0.70.19"
  "pydicom==3.0.2"
)
PLATFORMS=(manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux1_x86_64)
LIMIT_MIB=64

rm -rf .whl && mkdir -p .whl
args=(--no-deps --only-binary=:all: --python-version 3.12 --implementation cp -d .whl)
for p in "${PLATFORMS[@]}"; do args+=(--platform "$p"); done
python3 -m pip download -q "${args[@]}" "${WHEELS[@]}"
ls -l .whl
kib=$(du -sk .whl | cut -f1)
tree_kib=$(git ls-files -z | xargs -0 du -ck 2>/dev/null | tail -1 | cut -f1)
echo "wheels: $((kib / 1024)) MiB; tracked working tree: $((tree_kib / 1024)) MiB; limit per call: ${LIMIT_MIB} MiB"
if [ $((kib + tree_kib)) -gt $((LIMIT_MIB * 1024)) ]; then
  echo "device_kit: the wheels and the working tree exceed ${LIMIT_MIB} MiB" >&2
  exit 1
fi
