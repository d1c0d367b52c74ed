"""The test rows of `medvlm-trl eval`: a registered dataset's test split, or a split file (contract rows as a JSON
list or JSONL, or a manifest the data layer reads); see `medvlm_trl.eval.run` for the protocol.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from medvlm_trl.data.schema import SkipReport, filter_rows
from medvlm_trl.errors import EvalInputError


def _registry():
    try:
        from medvlm_trl.data import registry
    except ImportError:
        return None
    return registry


def _read_rows_file(path: Path) -> list[dict]:
    text = path.read_text()
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        try:
            data = [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError as err:
            raise EvalInputError(f"{path}: neither a JSON list nor JSONL ({err})") from err
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise EvalInputError(f"{path}: expected a list of row objects")
    return data


def _absolute_images(row: dict, root: Path) -> dict:
    def fix(value):
        if isinstance(value, str) and not Path(value).is_absolute():
            return str(root / value)
        return value

    row = dict(row)
    if "image" in row:
        row["image"] = fix(row["image"])
    if isinstance(row.get("images"), list):
        row["images"] = [fix(v) for v in row["images"]]
    return row


def _check_data_options(registry, name: str, data: dict) -> None:
    refused = sorted(set(data) - registry.loader_kwargs(name))
    if refused:
        flags = ", ".join(f"--{k}" for k in refused)
        raise EvalInputError(f"{flags}: not an option of dataset {name!r} (they describe data read through `datasets`)")


def _recorded_data(path: Path, data_dir: str | None, data: dict) -> tuple[str | None, str | None, dict]:
    """`(dataset, data_dir, data options)` a `make-split dataset` manifest records, under those given here."""
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError):
        return None, data_dir, data
    recorded = manifest.get("settings", {}).get("data") if isinstance(manifest, dict) else None
    if not isinstance(recorded, dict) or "dataset_name" not in recorded:
        return None, data_dir, data
    recorded = dict(recorded)
    dataset = recorded.pop("dataset_name")
    data_dir = data_dir if data_dir is not None else recorded.pop("data_dir", None)
    recorded.pop("data_dir", None)
    return dataset, data_dir, {**recorded, **data}


def load_eval_rows(
    split: str,
    *,
    dataset: str | None = None,
    data_dir: str | None = None,
    skip_bad_rows: bool = False,
    seed: int = 42,
    report: SkipReport | None = None,
    data: dict | None = None,
) -> list[dict]:
    """The test rows named by `split` (see the module docstring), checked against the contract. `data`: the data
    options of data read through `datasets` (`data_files`, `dataset_config`, `dataset_columns`, `image_root`)."""
    path = Path(split)
    registry = _registry()
    data = {k: v for k, v in (data or {}).items() if v is not None}
    if path.is_file():
        if dataset is None and registry is not None:
            # A split file of data read through `datasets` records how to read it (`make-split dataset`).
            dataset, data_dir, data = _recorded_data(path, data_dir, data)
        if dataset is not None:
            if registry is None:
                raise EvalInputError("--dataset needs medvlm_trl.data.registry, which is not installed")
            _check_data_options(registry, dataset, data)
            return list(
                registry.load_rows(
                    dataset,
                    "test",
                    data_dir=data_dir,
                    split_file=str(path),
                    skip_bad_rows=skip_bad_rows,
                    seed=seed,
                    report=report,
                    **data,
                )
            )
        rows = _read_rows_file(path)
        if rows and {"problem", "solution"} <= rows[0].keys():  # the upstream schema, whose `answer` is option text
            raise EvalInputError(
                f"{path} holds HuatuoGPT-Vision / MedVLM-R1 manifest rows (`problem`, `solution`), not contract rows; "
                "pass --dataset huatuo so the data layer converts them"
            )
        root = Path(data_dir) if data_dir else path.parent
        rows = [_absolute_images(r, root) for r in rows]
        return list(filter_rows(rows, skip_bad_rows=skip_bad_rows, report=report))
    if path.suffix in {".json", ".jsonl"} or os.sep in split:
        raise EvalInputError(f"split file not found: {split}")
    if registry is not None:
        _check_data_options(registry, split, data)
        return list(
            registry.load_rows(
                split, "test", data_dir=data_dir, skip_bad_rows=skip_bad_rows, seed=seed, report=report, **data
            )
        )
    if split == "sample":
        from medvlm_trl.data.sample import load_sample

        return load_sample("test")
    raise EvalInputError(f"unknown split {split!r}: not a file, and no dataset registry is installed")
