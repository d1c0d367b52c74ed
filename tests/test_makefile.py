"""The Makefile's set-up recipe, read with `make -n` (nothing runs)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


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
