"""Data on disk from a local path or a Hugging Face hub dataset repository, and archives unpacked once.

Used by loaders that read a repository's files themselves (`medvlm_trl.data.omnimedvqa`); data that `datasets` can
load on its own is fetched by `datasets` (`medvlm_trl.data.generic`).
"""

from __future__ import annotations

import logging
import os
import re
import zipfile
from pathlib import Path

logger = logging.getLogger(__name__)


def looks_like_hub_id(source: str) -> bool:
    """`owner/name` and not an absolute path."""
    return re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", source) is not None and not os.path.isabs(source)


def local_or_hub(source: str | os.PathLike, allow_patterns: list[str] | None = None) -> Path:
    """A local file or folder as given, or a hub dataset id downloaded to the hub cache (only `allow_patterns`)."""
    path = Path(source).expanduser()
    if path.exists():
        return path
    if not looks_like_hub_id(str(source)):
        raise FileNotFoundError(f"{source}: no such file or folder, and not a hub dataset id (owner/name)")
    from huggingface_hub import snapshot_download

    logger.info("downloading dataset %s from the hub", source)
    try:
        return Path(snapshot_download(str(source), repo_type="dataset", allow_patterns=allow_patterns))
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
