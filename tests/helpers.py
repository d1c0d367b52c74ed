"""What several test files share (imported as `helpers`: pytest puts this folder on the path for `conftest.py`):
the checkout's folders, completions in each form TRL hands a reward, and one recipe writer."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "recipes"
TINY_RECIPES = RECIPES / "tiny"
# The MedVLM-R1 authors' test manifest, in the shared reference folder beside the checkout.
AUTHORS_TEST_MANIFEST = ROOT.parent / "shared" / "data" / "MRI_CT_XRAY_300each_dataset.json"
# The tests that read it skip, saying so, in a clone without the shared folder beside it (CI has it): by this mark,
# or (in a fixture) by `pytest.skip(AUTHORS_TEST_MANIFEST_MISSING)`.
AUTHORS_TEST_MANIFEST_MISSING = (
    f"the MedVLM-R1 authors' test file is not beside this clone ({AUTHORS_TEST_MANIFEST}); CI has it"
)
needs_authors_manifest = pytest.mark.skipif(not AUTHORS_TEST_MANIFEST.is_file(), reason=AUTHORS_TEST_MANIFEST_MISSING)


def as_str(text: str) -> str:
    """A completion as TRL's standard format hands it to a reward: the text itself."""
    return text


def as_message(text: str) -> list[dict]:
    """A completion in TRL's conversational format: one assistant message holding the text."""
    return [{"role": "assistant", "content": text}]


def write_recipe(folder: Path, data: dict, name: str = "recipe.yaml") -> Path:
    """`data` as a YAML recipe `folder/name` (the one recipe writer of the suite); returns its path."""
    path = Path(folder) / name
    path.write_text(yaml.safe_dump(data))
    return path
