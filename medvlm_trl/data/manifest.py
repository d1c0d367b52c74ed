"""Split manifests: which rows a split holds, with fingerprints that let anyone prove no test item leaked into training.

A manifest is one JSON file per split. Per row it records the id, source and modality, the image file names, a
content hash of each image's decoded pixels (SHA-256 of the RGB bytes and size, so a PNG re-saved as TIFF hashes
alike), a perceptual hash of each image (a 256-bit difference hash, so a resized copy lands a few bits away) and a
hash of the normalised question-and-options text. The file also records the seed and the loader settings that made
the split, so a training run can name exactly the split it used:

    {"format": "medvlm-trl/split-manifest", "format_version": 1, "dataset": "huatuo", "name": "medvlm_r1",
     "split": "train", "seed": 42, "settings": {...},
     "rows": [{"id": "OmniMedVQA:images/brain002206.png:3f2a9c01de47", "source": "OmniMedVQA", "modality": "MRI",
               "images": ["images/brain002206.png"], "pixel_sha256": ["..."], "dhash": ["..."],
               "question_sha256": "..."}, ...]}

The MedVLM-R1 authors' published test file (a JSON list of HuatuoGPT-Vision rows) loads as a manifest too; its
images are not published, so its rows carry no image hashes and an audit against it says which checks it could not
make.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from medvlm_trl.data.images import load_image
from medvlm_trl.data.sample import pixel_hash
from medvlm_trl.data.schema import content_id, normalize_path, normalize_text, question_hash  # noqa: F401

FORMAT = "medvlm-trl/split-manifest"
FORMAT_VERSION = 1
# 16 rows x 16 horizontal gradients: 256 bits. Fine enough that different slices of one modality stay far apart,
# coarse enough that resizing or re-encoding moves only a few bits.
DHASH_SIZE = 16


def dhash(image: Image.Image, size: int = DHASH_SIZE) -> str | None:
    """Difference hash: is each pixel of a `size x (size+1)` grey thumbnail brighter than its left neighbour.

    Returns None for an image with no gradient at all (a flat image): its hash would equal every other flat image's.
    """
    thumb = image.convert("L").resize((size + 1, size), Image.Resampling.LANCZOS)
    pixels = np.asarray(thumb, dtype=np.int16)
    bits = pixels[:, 1:] > pixels[:, :-1]
    if not bits.any():
        return None
    return np.packbits(bits.ravel()).tobytes().hex()


_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint16)


def hash_matrix(hashes: Sequence[str]) -> np.ndarray:
    """Hex perceptual hashes as a `(n, bytes)` uint8 matrix for vectorised Hamming distances."""
    if not hashes:
        return np.zeros((0, DHASH_SIZE * DHASH_SIZE // 8), dtype=np.uint8)
    return np.stack([np.frombuffer(bytes.fromhex(h), dtype=np.uint8) for h in hashes])


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamming distances between every row of `a` and every row of `b` (uint8 matrices): shape `(len(a), len(b))`."""
    return _POPCOUNT[np.bitwise_xor(a[:, None, :], b[None, :, :])].sum(axis=2)


def fingerprint(value: Any, row_id: str | None = None) -> tuple[str, str | None]:
    """`(pixel SHA-256, perceptual hash)` of one image; a missing or unreadable image raises `ImageLoadError`."""
    image = load_image(value, row_id=row_id)
    return pixel_hash(image), dhash(image)


def image_names(row: dict) -> list[str]:
    """The image file names a row refers to: `image_file` as the source wrote it, else the image path's name."""
    if row.get("image_file"):
        return [normalize_path(row["image_file"])]
    image = row.get("image")
    if isinstance(image, (str, os.PathLike)):
        return [Path(image).name]
    return []


def entry_for_row(row: dict, hash_images: bool = True) -> dict:
    """One manifest row. With `hash_images`, the image is decoded once (a bad image raises, naming the row)."""
    entry = {
        "id": row["id"],
        "source": row.get("source", ""),
        "modality": row.get("modality", ""),
        "images": image_names(row),
        "pixel_sha256": None,
        "dhash": None,
        "question_sha256": question_hash(row["question"], row["options"]),
    }
    if hash_images:
        sha, phash = fingerprint(row["image"], row_id=row["id"])
        entry["pixel_sha256"], entry["dhash"] = [sha], [phash]
    return entry


@dataclass
class SplitManifest:
    """One split of one dataset, as ids plus fingerprints, and how it was made."""

    dataset: str
    split: str
    rows: list[dict]
    name: str = ""
    seed: int | None = None
    settings: dict = field(default_factory=dict)
    origin: str = "medvlm-trl"
    path: str | None = field(default=None, compare=False)

    @property
    def label(self) -> str:
        """How reports name this manifest: its file name, else `name/split`."""
        if self.path:
            return Path(self.path).name
        return f"{self.name or self.dataset}/{self.split}"

    def ids(self) -> list[str]:
        return [row["id"] for row in self.rows]

    def unhashed(self) -> int:
        """Rows without image hashes: the pixel and near-duplicate checks cannot look at them."""
        return sum(1 for row in self.rows if not row.get("pixel_sha256"))

    def to_dict(self) -> dict:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "dataset": self.dataset,
            "name": self.name,
            "split": self.split,
            "seed": self.seed,
            "origin": self.origin,
            "settings": self.settings,
            "rows": self.rows,
        }

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w") as fh:
            json.dump(self.to_dict(), fh, indent=1)
            fh.write("\n")
        self.path = str(path)
        return path


def manifest_from_rows(
    rows: Iterable[dict],
    *,
    dataset: str,
    split: str,
    name: str = "",
    seed: int | None = None,
    settings: dict | None = None,
    hash_images: bool = True,
) -> SplitManifest:
    """A manifest of loaded rows; with `hash_images`, each image is decoded once to fingerprint it."""
    entries = [entry_for_row(row, hash_images=hash_images) for row in rows]
    return SplitManifest(dataset=dataset, split=split, rows=entries, name=name, seed=seed, settings=settings or {})


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes, read in blocks: how a split records exactly which test file it was made against,
    and a run record which recipe and split manifest made it (`medvlm_trl.runs.record`)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _from_authors_list(records: list, path: Path) -> SplitManifest:
    """The MedVLM-R1 authors' test file: HuatuoGPT-Vision rows in a list, images not published."""
    from medvlm_trl.data.huatuo import row_from_record

    rows = [row_from_record(record, index=i) for i, record in enumerate(records)]
    return SplitManifest(
        dataset="huatuo",
        split="test",
        rows=[entry_for_row(row, hash_images=False) for row in rows],
        name="medvlm_r1",
        origin="MedVLM-R1 authors' test manifest (HuatuoGPT-Vision rows; images not published)",
        settings={"file": path.name, "file_sha256": file_sha256(path)},
        path=str(path),
    )


def load_manifest(path: str | os.PathLike) -> SplitManifest:
    """Read a split manifest written by `make-split`, or the MedVLM-R1 authors' published test file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"split manifest not found: {path}")
    with open(path, encoding="utf-8") as fh:
        try:
            data = json.load(fh)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"{path} is not valid JSON ({err})") from None
    if isinstance(data, list):
        manifest = _from_authors_list(data, path)
        _check_rows(manifest.rows, path)
        return manifest
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f"{path} is neither a medvlm-trl split manifest nor a list of HuatuoGPT-Vision rows")
    if data.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: manifest format version {data.get('format_version')}, expected {FORMAT_VERSION}")
    for key in ("dataset", "split"):
        if not isinstance(data.get(key), str) or not data[key]:
            raise ValueError(f"{path}: the manifest's {key!r} must be a name, got {data.get(key)!r}")
    if not isinstance(data.get("settings", {}), dict):
        raise ValueError(f"{path}: the manifest's 'settings' must be a mapping")
    _check_rows(data.get("rows"), path)
    return SplitManifest(
        dataset=data["dataset"],
        split=data["split"],
        rows=data["rows"],
        name=data.get("name", ""),
        seed=data.get("seed"),
        settings=data.get("settings", {}),
        origin=data.get("origin", "medvlm-trl"),
        path=str(path),
    )


def _check_rows(rows: Any, path: Path) -> None:
    """A manifest's rows: a list of objects with distinct non-empty ids (a repeated id would select, train on or
    score its row twice)."""
    if not isinstance(rows, list):
        raise ValueError(f"{path}: the manifest's 'rows' must be a list, got {type(rows).__name__}")
    seen: set[str] = set()
    for index, row in enumerate(rows):
        if not isinstance(row, dict) or not isinstance(row.get("id"), str) or not row["id"]:
            raise ValueError(f"{path}: row #{index} has no id")
        if row["id"] in seen:
            raise ValueError(f"{path}: row #{index} repeats the id {row['id']!r}")
        seen.add(row["id"])


def as_manifest(value: SplitManifest | str | os.PathLike) -> SplitManifest:
    return value if isinstance(value, SplitManifest) else load_manifest(value)


def fill_hashes(manifest: SplitManifest, image_root: str | os.PathLike) -> int:
    """Hash the images of rows that have none, reading them from `image_root`; returns how many rows were filled.

    This is how the authors' test manifest becomes fully checkable once the HuatuoGPT-Vision images are on disk.
    Rows whose images are absent there stay unhashed (and the audit keeps saying so).
    """
    filled = 0
    for row in manifest.rows:
        if row.get("pixel_sha256") or not row.get("images"):
            continue
        paths = [Path(image_root) / name for name in row["images"]]
        if not all(p.is_file() for p in paths):
            continue
        prints = [fingerprint(p, row_id=row["id"]) for p in paths]
        row["pixel_sha256"] = [sha for sha, _ in prints]
        row["dhash"] = [phash for _, phash in prints]
        filled += 1
    return filled


def select_rows(rows: Sequence[dict], manifest: SplitManifest) -> list[dict]:
    """The rows a manifest names, in the manifest's order; every id must be found among `rows`."""
    by_id = {row["id"]: row for row in rows}
    missing = [i for i in manifest.ids() if i not in by_id]
    if missing:
        raise ValueError(
            f"{len(missing)} of the {len(manifest.rows)} ids in split manifest {manifest.label} are not in the loaded "
            f"data (e.g. {missing[:3]}); the data differs from the data the split was made from, or those rows were "
            "skipped as bad rows"
        )
    return [by_id[i] for i in manifest.ids()]
