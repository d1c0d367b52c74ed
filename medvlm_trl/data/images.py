"""Images in, RGB PIL images on the model's own grid out: one resize, shared by policy, reference model and vLLM.

The Qwen vision-language families cut an image into square patches and merge `merge_size` x `merge_size` of them into
one image token: Qwen2-VL and Qwen2.5-VL use 14-pixel patches (28 pixels a token side), Qwen3-VL and Qwen3.5 16-pixel
patches (32). Both sides of the image must be multiples of that factor and the pixel count must lie within
`[min_pixels, max_pixels]`. The processor applies that rule ("smart resize") itself; we apply it once, before
generation, with the factor read from the processor of the model being trained or evaluated (`image_factor`), so that
every consumer receives an image already at its final size and the processor's own resize becomes the identity. The
study's bound is `max_pixels = 401408` (512 image tokens of Qwen2-VL's 28x28 pixels; 392 of Qwen3-VL's 32x32).
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from medvlm_trl.errors import ImageLoadError

DEFAULT_MIN_PIXELS = 3136  # Qwen2-VL's own default (56 x 56 pixels)
DEFAULT_MAX_PIXELS = 401408  # the RL-MedVQA study's bound
DICOM_SUFFIXES = {".dcm", ".dicom"}


def _where(row_id: str | None) -> str:
    return f"row {row_id!r}: " if row_id is not None else ""


def _is_dicom_bytes(data: bytes) -> bool:
    return len(data) >= 132 and data[128:132] == b"DICM"


def _high_depth_to_8bit(image: Image.Image) -> Image.Image:
    """A 16-bit, 32-bit integer or float single-channel image stretched over 0-255, as DICOM slices are; PIL's own
    conversion clips such values at 255 (a 16-bit PNG turns white, a 0-1 float image black)."""
    if image.mode not in ("I", "F") and not image.mode.startswith("I;16"):
        return image
    return Image.fromarray(_stretch_to_255(np.asarray(image)).round().astype(np.uint8), mode="L")


def _stretch_to_255(arr: np.ndarray) -> np.ndarray:
    """Values stretched linearly (as floats) from their finite min..max onto 0..255, all 0 when constant; NaN and -inf
    read as the minimum, +inf as the maximum. DICOM slices and 16-bit / float images share it."""
    arr = np.asarray(arr, dtype=np.float64)
    finite = arr[np.isfinite(arr)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    arr = np.nan_to_num(arr, nan=lo, posinf=hi, neginf=lo)
    return (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)


def dicom_to_image(source: str | os.PathLike | bytes) -> Image.Image:
    """Read one DICOM slice into an 8-bit RGB image: modality LUT, VOI window, MONOCHROME1 inverted, first frame."""
    import pydicom
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    ds = pydicom.dcmread(io.BytesIO(source) if isinstance(source, bytes) else source, force=True)
    arr = ds.pixel_array
    if int(getattr(ds, "NumberOfFrames", 1) or 1) > 1:
        arr = arr[0]
    photometric = str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2"))
    if photometric.startswith("MONOCHROME"):
        arr = apply_modality_lut(arr, ds)
        if "WindowCenter" in ds:
            arr = apply_voi_lut(arr, ds)
        arr = _stretch_to_255(arr)
        if photometric == "MONOCHROME1":
            arr = 255.0 - arr
        return Image.fromarray(arr.round().astype(np.uint8), mode="L").convert("RGB")
    # pydicom 3 already returns YBR data converted to RGB; palette images need their lookup table.
    if photometric == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        arr = apply_color_lut(arr, ds)
    if arr.dtype != np.uint8:
        arr = (arr.astype(np.float64) / max(float(arr.max()), 1.0) * 255.0).round().astype(np.uint8)
    return Image.fromarray(arr).convert("RGB")


def load_image(value: Any, row_id: str | None = None, root: str | os.PathLike | None = None) -> Image.Image:
    """Turn a PIL image, a file path (PNG, JPEG, DICOM, ...), raw bytes, a `datasets` image dict or an array into RGB.

    A missing or unreadable image raises `ImageLoadError` naming `row_id`, never an error from deep inside PIL.

    >>> load_image(Image.new("L", (4, 4))).mode
    'RGB'
    """
    try:
        if isinstance(value, Image.Image):
            image = value
        elif isinstance(value, dict) and ("bytes" in value or "path" in value):
            data = value.get("bytes")
            return load_image(data if data is not None else value.get("path"), row_id=row_id, root=root)
        elif isinstance(value, (bytes, bytearray, memoryview)):
            data = bytes(value)
            image = dicom_to_image(data) if _is_dicom_bytes(data) else Image.open(io.BytesIO(data))
        elif isinstance(value, (str, os.PathLike)):
            path = Path(value)
            if root is not None and not path.is_absolute():
                path = Path(root) / path
            if not path.is_file():
                raise ImageLoadError(f"{_where(row_id)}image file not found: {path}")
            if path.suffix.lower() in DICOM_SUFFIXES:
                image = dicom_to_image(path)
            else:
                with open(path, "rb") as fh:
                    head = fh.read(132)
                image = dicom_to_image(path) if _is_dicom_bytes(head) else Image.open(path)
        elif isinstance(value, np.ndarray):
            image = Image.fromarray(value)
        elif value is None:
            raise ImageLoadError(f"{_where(row_id)}no image")
        else:
            raise ImageLoadError(f"{_where(row_id)}cannot read an image from {type(value).__name__}")
        image.load()
        return _high_depth_to_8bit(image).convert("RGB")
    except ImageLoadError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, TypeError, AttributeError, KeyError) as err:
        raise ImageLoadError(f"{_where(row_id)}unreadable image ({type(err).__name__}: {err})") from err
    except Exception as err:  # pydicom raises its own types for corrupt files
        raise ImageLoadError(f"{_where(row_id)}unreadable image ({type(err).__name__}: {err})") from err


def image_factor(processor: Any) -> int | None:
    """Pixels per side of one image token for `processor` (a processor or its image processor): its `patch_size` x
    `merge_size`, as the Qwen2-VL, Qwen2.5-VL, Qwen3-VL and Qwen3.5 processors define them. None for a processor that
    does not merge patches into tokens (a LLaVA-style one, or a text tokenizer): it sizes images by its own rule.

    >>> from transformers import Qwen2VLImageProcessor
    >>> image_factor(Qwen2VLImageProcessor(patch_size=16, merge_size=2))
    32
    """
    image_processor = getattr(processor, "image_processor", processor)
    patch, merge = getattr(image_processor, "patch_size", None), getattr(image_processor, "merge_size", None)
    if not isinstance(patch, int) or not isinstance(merge, int):
        return None
    return patch * merge


def smart_resize(
    height: int,
    width: int,
    min_pixels: int = DEFAULT_MIN_PIXELS,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    *,
    factor: int,
) -> tuple[int, int]:
    """The Qwen resize rule: sides multiples of `factor` (the model's `image_factor`), aspect ratio kept, pixel count
    within the bounds.

    Delegates to the rule transformers' Qwen2-VL image processor itself uses (Qwen2.5-VL, Qwen3-VL and Qwen3.5 share
    that image processor class), so our size is the processor's size.
    """
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize as _rule

    if height < 1 or width < 1:
        raise ValueError(f"image has no pixels ({width}x{height})")
    # The processor rejects aspect ratios above 200; very small images are first scaled up to one token side.
    if min(height, width) < factor:
        scale = factor / min(height, width)
        height, width = max(factor, round(height * scale)), max(factor, round(width * scale))
    return _rule(height, width, factor=factor, min_pixels=min_pixels, max_pixels=max_pixels)


def prepare_image(
    value: Any,
    min_pixels: int = DEFAULT_MIN_PIXELS,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    row_id: str | None = None,
    root: str | os.PathLike | None = None,
    *,
    factor: int,
) -> Image.Image:
    """Load `value` as RGB and resize it once to the model's grid (`factor` = `image_factor(processor)`) within the
    pixel bounds (bicubic, as qwen-vl-utils). `factor=1` only bounds the pixel count (for a processor that sizes
    images by its own rule)."""
    image = load_image(value, row_id=row_id, root=root)
    try:
        height, width = smart_resize(image.height, image.width, min_pixels, max_pixels, factor=factor)
    except ValueError as err:
        raise ImageLoadError(f"{_where(row_id)}{err}") from err
    if (width, height) != image.size:
        image = image.resize((width, height), Image.Resampling.BICUBIC)
    return image


def num_image_tokens(image: Image.Image, factor: int) -> int:
    """Image tokens a Qwen-family model spends on an image already at its final size: one per `factor` x `factor`
    block (`factor` = `image_factor(processor)`).

    >>> num_image_tokens(Image.new("RGB", (128, 96)), factor=32)
    12
    """
    return (image.width // factor) * (image.height // factor)


def check_pixel_bounds(min_pixels: int, max_pixels: int) -> None:
    """The one pixel-bound rule of every command (training recipes and `medvlm-trl eval`). Refuse bounds no model can meet (a recipe is checked before any model is known). The model's own floor, one
    image token of its processor's `image_factor` squared pixels, is checked once its processor is loaded
    (`pin_processor_pixels`, `check_factor_bounds`): below it the resize would silently exceed `max_pixels`."""
    if not 1 <= min_pixels <= max_pixels:
        raise ValueError(f"need 1 <= min_pixels <= max_pixels, got min_pixels={min_pixels}, max_pixels={max_pixels}")


def check_factor_bounds(min_pixels: int, max_pixels: int, factor: int, what: str = "the model") -> None:
    """Refuse bounds that cannot hold one image token of `factor` x `factor` pixels, in one line naming the factor."""
    if not factor * factor <= min_pixels <= max_pixels:
        raise ValueError(
            f"need {factor * factor} <= min_pixels <= max_pixels for {what} ({factor}x{factor} pixels an image "
            f"token), got min_pixels={min_pixels}, max_pixels={max_pixels}"
        )


def pin_processor_pixels(processor: Any, min_pixels: int, max_pixels: int) -> int | None:
    """Give a Qwen-family processor our pixel bounds, so that it never resizes an image we have already resized and a
    saved processor records the bounds it was trained with; return its `image_factor`. A processor without an image
    processor (a text tokenizer) is left alone and gives None; one whose image processor does not merge patches
    into tokens is refused, since the bounds follow the Qwen families' rule. Bounds below one image token of the
    processor's own size are refused."""
    image_processor = getattr(processor, "image_processor", None)
    if image_processor is None:
        return None
    factor = image_factor(image_processor)
    if factor is None:
        raise ValueError(
            f"{type(image_processor).__name__} does not merge patches into image tokens (no patch_size / "
            "merge_size), but min_pixels/max_pixels follow the Qwen families' rule; use a Qwen2-VL, Qwen2.5-VL, "
            "Qwen3-VL or Qwen3.5 processor"
        )
    check_factor_bounds(min_pixels, max_pixels, factor, type(image_processor).__name__)
    from transformers.image_utils import SizeDict

    image_processor.size = SizeDict(shortest_edge=min_pixels, longest_edge=max_pixels)
    return factor
