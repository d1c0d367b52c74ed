"""From a recipe's dataset name to contract rows: `load_rows(dataset_name, split, ...)`.

| name      | data                                                         | splits |
|-----------|--------------------------------------------------------------|--------|
| `sample`  | the embedded real-image sample set (`medvlm_trl.data.sample`) | `train`, `test` |
| `huatuo`  | HuatuoGPT-Vision evaluation data (`medvlm_trl.data.huatuo`)   | `test` (the whole data, the hub's one split); any split a split file names |
| `pmc_vqa` | PMC-VQA (`medvlm_trl.data.pmc_vqa`)                           | `train`, `test`, `test_clean` (version 1) |
| `omnimedvqa` | OmniMedVQA (`medvlm_trl.data.omnimedvqa`)                  | `test` (the whole data); any split a split file names |
| `csv`, `json`, `parquet`, `arrow`, `imagefolder`, a hub id, a local path | your own data, read by `datasets` with a column mapping (`medvlm_trl.data.generic`) | the dataset's own splits (a plain file list: `train`); any split a split file names |
| `phantom` | the seeded phantom drawings (`medvlm_trl.data.phantom`)       | `train` (600 MRI), `test` (300 MRI, 300 CT, 300 X-ray) |

A `split_file` (a manifest from `medvlm-trl make-split`, or the MedVLM-R1 authors' test file) selects the rows it
names, in its order; its split must be the one asked for, so a test manifest can never be loaded as training data.
MedVLM-R1:

    load_rows("huatuo", "train", split_file="splits/medvlm_r1/train.json")   # 600 MRI rows
    load_rows("huatuo", "test", split_file="splits/medvlm_r1/test.json", modality="CT")   # 300 CT rows
"""

from __future__ import annotations

import os
from pathlib import Path

from medvlm_trl.data.manifest import load_manifest, select_rows
from medvlm_trl.data.schema import SkipReport, filter_rows

DATASETS = ("sample", "huatuo", "pmc_vqa", "omnimedvqa", "phantom")
# Keyword arguments each loader accepts besides the common ones.
_LOADER_KWARGS = {
    "sample": set(),
    "phantom": set(),
    "huatuo": {"image_root", "check_images"},
    "pmc_vqa": {"image_root", "check_images", "version", "subset_size"},
    "omnimedvqa": {"image_root", "check_images", "access"},
}


def loader_kwargs(name: str) -> set[str]:
    """The loader options of dataset `name` (a named loader's, or those of data read through `datasets`)."""
    from medvlm_trl.data.generic import LOADER_KWARGS

    return _LOADER_KWARGS.get(name, LOADER_KWARGS)


def _skip(skip_bad_rows: bool, report: SkipReport) -> dict:
    return {"skip_bad_rows": skip_bad_rows, "report": report}


def _load_base(name: str, split: str, data_dir, skip_bad_rows: bool, report: SkipReport, kw: dict) -> list[dict]:
    if name == "sample":
        from medvlm_trl.data.sample import load_sample

        rows = load_sample(split, root=data_dir)
        return list(filter_rows(rows, skip_bad_rows, report))
    if name == "phantom":
        from medvlm_trl.data.phantom import load_phantom

        return list(filter_rows(load_phantom(split, root=data_dir), skip_bad_rows, report))
    if name not in DATASETS or name == "omnimedvqa":  # read through `datasets` (medvlm_trl.data.generic)
        from medvlm_trl.data import generic, omnimedvqa

        if name == "omnimedvqa":
            return omnimedvqa.load_omnimedvqa(
                data_dir or omnimedvqa.HUB_ID, split, **kw, **_skip(skip_bad_rows, report)
            )
        return generic.load_generic(name, split, data_dir=data_dir, **kw, **_skip(skip_bad_rows, report))
    if name == "huatuo":
        from medvlm_trl.data.huatuo import HUB_ID, load_huatuo

        return load_huatuo(data_dir or HUB_ID, skip_bad_rows=skip_bad_rows, report=report, **kw)
    from medvlm_trl.data.pmc_vqa import HUB_ID, load_pmc_vqa

    return load_pmc_vqa(data_dir or HUB_ID, split, skip_bad_rows=skip_bad_rows, report=report, **kw)


def load_rows(
    dataset_name: str,
    split: str,
    *,
    data_dir: str | os.PathLike | None = None,
    split_file: str | os.PathLike | None = None,
    skip_bad_rows: bool = False,
    seed: int = 42,
    modality: str | None = None,
    report: SkipReport | None = None,
    **kw,
) -> list[dict]:
    """Contract rows of one split of a named dataset; see the module docstring for names and splits.

    `data_dir`: a hub dataset id or a local copy (default: the dataset's hub id; for `sample`, the cached build).
    `skip_bad_rows`: drop and count bad rows (in `report`) instead of raising `BadRowError`. `modality`: keep only
    rows of that modality. `seed`: the draw of `subset_size` rows (PMC-VQA test CSVs: the same draw as the study
    subset that `make-split pmc-vqa` writes; training subsets must come from a split file, as they are drawn clean
    of the test subset). Loader options (`image_root`, `check_images`, `version`) pass through.
    """
    from medvlm_trl.data.generic import FILE_BUILDERS, check_manifest_data, is_generic

    if dataset_name not in DATASETS and not is_generic(dataset_name):
        raise ValueError(
            f"unknown dataset {dataset_name!r}; choose one of {list(DATASETS)}, or name data for `datasets`: "
            f"{', '.join(FILE_BUILDERS)} (with data_files), a hub id (owner/name) or a local path"
        )
    unknown = set(kw) - loader_kwargs(dataset_name)
    if unknown:
        raise TypeError(f"load_rows({dataset_name!r}) got unexpected keyword argument(s) {sorted(unknown)}")
    report = report if report is not None else SkipReport()
    subset_size = kw.pop("subset_size", None)

    if split_file is not None:
        manifest = load_manifest(split_file)
        if manifest.split != split:
            raise ValueError(f"split file {Path(split_file).name} holds the {manifest.split!r} split, not {split!r}")
        if manifest.dataset != dataset_name:
            raise ValueError(
                f"split file {Path(split_file).name} is a split of {manifest.dataset!r}, not {dataset_name!r}"
            )
        if dataset_name == "pmc_vqa":
            # The manifest names the CSV it was drawn from and the PMC-VQA version.
            version = manifest.settings.get("version", 1)
            if kw.setdefault("version", version) != version:
                raise ValueError(
                    f"split file {Path(split_file).name} is of PMC-VQA version {version}, not {kw['version']}"
                )
            base_split = manifest.settings.get("test_split", "test") if split == "test" else "train"
        elif dataset_name not in ("sample", "huatuo"):  # OmniMedVQA and data read through `datasets`
            check_manifest_data(manifest, kw, Path(split_file).name)
            base_split = manifest.settings.get("source_split", split)
        else:
            base_split = "test" if dataset_name == "huatuo" else split
        rows = select_rows(_load_base(dataset_name, base_split, data_dir, skip_bad_rows, report, kw), manifest)
    else:
        if dataset_name == "huatuo" and split != "test":
            raise ValueError(
                "the HuatuoGPT-Vision evaluation data has one split, 'test'; for MedVLM-R1's training split pass "
                "split_file= a manifest written by `medvlm-trl make-split medvlm-r1`"
            )
        rows = _load_base(dataset_name, split, data_dir, skip_bad_rows, report, kw)
        if subset_size is not None:
            if dataset_name != "pmc_vqa" or split == "train":
                raise ValueError(
                    "subset_size draws PMC-VQA test subsets only; a training subset must be drawn clean of the test "
                    "subset: use `medvlm-trl make-split pmc-vqa` and pass its train.json as split_file"
                )
            from medvlm_trl.data.splits import seeded_order

            rows = seeded_order(rows, seed, "pmc_vqa-test")[:subset_size]
    if modality is not None:
        rows = [row for row in rows if row["modality"] == modality]
    return rows
