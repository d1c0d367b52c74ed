"""Data on disk from a local path or a Hugging Face hub dataset repository, archives unpacked once, and the load-time
image checks.

Used by the loaders that read a repository's files themselves (`medvlm_trl.data.huatuo`, `.pmc_vqa`, `.omnimedvqa`),
so that they depend on this module and not on each other; data that `datasets` can load on its own is fetched by
`datasets` (`medvlm_trl.data.generic`).
"""

from __future__ import annotations

import logging
import os
import re
import zipfile
from pathlib import Path

from medvlm_trl.data.images import load_image
from medvlm_trl.errors import BadRowError, ImageLoadError

logger = logging.getLogger(__name__)

# What a loader's `check_images` does at load time: check that each image file exists, decode it, or nothing.
CHECK_IMAGES = ("exists", "decode", "none")


def looks_like_hub_id(source: str) -> bool:
    """`owner/name` and not an absolute path."""
    return re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", source) is not None and not os.path.isabs(source)


def download(repo_id: str, allow_patterns: list[str] | None = None) -> Path:
    """A hub dataset repository in the local cache (downloaded on first use); the path of its snapshot folder."""
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(repo_id, repo_type="dataset", allow_patterns=allow_patterns))


def local_or_hub(source: str | os.PathLike, allow_patterns: list[str] | None = None) -> Path:
    """A local file or folder as given, or a hub dataset id downloaded to the hub cache (only `allow_patterns`)."""
    path = Path(source).expanduser()
    if path.exists():
        return path
    if not looks_like_hub_id(str(source)):
        raise FileNotFoundError(f"{source}: no such file or folder, and not a hub dataset id (owner/name)")
    logger.info("downloading dataset %s from the hub", source)
    try:
        return download(str(source), allow_patterns=allow_patterns)
    except Exception as err:  # offline, unknown repository, gated: say both readings of `source`
        raise FileNotFoundError(
            f"{source}: no such local file or folder, and the hub dataset could not be fetched "
            f"({type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''})"
        ) from err


def unpack_once(archive: Path, into: Path) -> bool:
    """Unpack a zip archive into `into` unless a marker says it was done before; True if it unpacked now."""
    marker = into / f".{archive.name}.extracted"
    if marker.exists() or not archive.is_file():
        return False
    logger.info("extracting %s into %s (once)", archive.name, into)
    try:
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(into)
    except zipfile.BadZipFile as err:
        raise ValueError(f"{archive}: not a readable zip archive ({err})") from None
    marker.touch()
    return True


def extract_images(folder: Path, zip_name: str, unpacked: tuple[str, ...]) -> None:
    """Unpack `zip_name` inside `folder` once: not if it was unpacked before, or by hand into one of `unpacked`."""
    if any((folder / name).is_dir() for name in unpacked):
        return
    unpack_once(folder / zip_name, folder)


def image_check(mode: str):
    """The load-time image check of `check_images` mode `exists` or `decode`, as a `filter_rows` extra check."""

    def check(row: dict) -> None:
        if mode == "exists" and not os.path.isfile(row["image"]):
            raise BadRowError(row["id"], "missing_image", row["image"])
        if mode == "decode":
            try:
                load_image(row["image"], row_id=row["id"])
            except ImageLoadError as err:
                reason = "missing_image" if "not found" in str(err) else "unreadable_image"
                raise BadRowError(row["id"], reason, str(err)) from err

    return check
