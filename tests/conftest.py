"""Shared fixtures: every test that needs a model uses the tiny offline ones, built once per cache."""

import os

# No hub access anywhere in the suite: a test that tries to download fails at once instead of hanging.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_DISABLED", "true")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_vlm():
    """Path of the tiny random-weight Qwen2-VL (model + processor), loadable with the auto classes."""
    from medvlm_trl.tiny import tiny_vlm_path

    return str(tiny_vlm_path())


@pytest.fixture(scope="session")
def tiny_lm():
    """Path of the tiny random-weight causal LM (stand-in for BioGPT and the judge LLMs)."""
    from medvlm_trl.tiny import tiny_causal_lm_path

    return str(tiny_causal_lm_path())


def _families():
    from medvlm_trl.tiny_families import FAMILIES

    return FAMILIES


@pytest.fixture(scope="session", params=_families())
def family(request):
    """Each tiny model family in turn (`medvlm_trl.tiny_families.FAMILIES`): a test that takes it runs once per
    family."""
    return request.param


@pytest.fixture(scope="session")
def family_vlm(family):
    """Path of the tiny random-weight model of `family` (model + processor), loadable with the auto classes."""
    from medvlm_trl.tiny_families import tiny_family_path

    return str(tiny_family_path(family))


@pytest.fixture(scope="session")
def family_factor(family):
    """Pixels per image-token side of `family`'s processor (28 for Qwen2-VL / Qwen2.5-VL, 32 for Qwen3-VL / Qwen3.5)."""
    from medvlm_trl.tiny_families import spec

    return spec(family).factor


@pytest.fixture
def fake_download(monkeypatch):
    """Stand in for the hub: `fake_download(folder)` makes every hub download (`medvlm_trl.data.hub.download`, which
    every loader goes through) return `folder`, or raise `folder` when it is an exception; returns the calls made, each
    `(repo_id, allow_patterns)`."""
    from medvlm_trl.data import hub

    calls: list = []

    def install(result):
        def download(repo_id, allow_patterns=None):
            calls.append((repo_id, allow_patterns))
            if isinstance(result, BaseException):
                raise result
            return result

        monkeypatch.setattr(hub, "download", download)
        return calls

    return install
