"""Images of every kind become RGB at Qwen2-VL's grid, once, or fail naming their row."""

import io
from pathlib import Path

import numpy as np
import pydicom.data
import pytest
from PIL import Image

from medvlm_trl.data.images import (
    ImageLoadError,
    image_factor,
    load_image,
    num_image_tokens,
    pin_processor_pixels,
    prepare_image,
)

DICOM_DIR = Path(pydicom.data.__file__).parent / "test_files"


def test_a_grayscale_pil_image_becomes_rgb():
    assert load_image(Image.new("L", (10, 12), 7)).mode == "RGB"


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small.dcm"])
def test_a_dicom_slice_by_path_and_by_bytes(name):
    path = DICOM_DIR / name
    by_path, by_bytes = load_image(path), load_image(path.read_bytes())
    assert by_path.mode == "RGB" and by_path.size == by_bytes.size
    arr = np.asarray(by_path)
    assert arr.min() == 0 and arr.max() == 255  # windowed into the full 8-bit range
    assert np.array_equal(arr, np.asarray(by_bytes))


def test_png_bytes_path_and_datasets_dict_agree(tmp_path):
    img = Image.fromarray(np.arange(64 * 48 * 3, dtype=np.uint8).reshape(48, 64, 3))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    (tmp_path / "x.png").write_bytes(buf.getvalue())
    from_bytes = load_image(buf.getvalue())
    from_path = load_image(tmp_path / "x.png")
    from_dict = load_image({"bytes": None, "path": "x.png"}, root=tmp_path)
    assert np.array_equal(np.asarray(from_bytes), np.asarray(img))
    assert np.array_equal(np.asarray(from_path), np.asarray(img)) and np.array_equal(
        np.asarray(from_dict), np.asarray(img)
    )


def test_missing_file_names_the_row(tmp_path):
    with pytest.raises(ImageLoadError, match="row 'q-17'.*not found"):
        load_image(tmp_path / "nope.png", row_id="q-17")


def test_corrupt_bytes_and_truncated_file_name_the_row(tmp_path):
    with pytest.raises(ImageLoadError, match="row 'q-3': unreadable image"):
        load_image(b"\x89PNG\r\n\x1a\n not really a png", row_id="q-3")
    broken = tmp_path / "broken.dcm"
    broken.write_bytes((DICOM_DIR / "CT_small.dcm").read_bytes()[:2000])
    with pytest.raises(ImageLoadError, match="row 'q-4'"):
        load_image(broken, row_id="q-4")
    with pytest.raises(ImageLoadError, match="row 'q-5': no image"):
        load_image(None, row_id="q-5")


@pytest.mark.parametrize("factor", [28, 32], ids=["patch14", "patch16"])
@pytest.mark.parametrize("size", [(2000, 1500), (30, 30), (900, 60), (28, 28)])
def test_prepared_images_lie_on_the_grid_within_bounds(size, factor):
    min_pixels, max_pixels = 3136, 401408
    out = prepare_image(Image.new("RGB", size), min_pixels=min_pixels, max_pixels=max_pixels, factor=factor)
    assert out.width % factor == 0 and out.height % factor == 0
    assert min_pixels <= out.width * out.height <= max_pixels
    assert num_image_tokens(out, factor) == out.width * out.height // factor**2


def test_preparing_twice_is_the_identity():
    once = prepare_image(Image.new("RGB", (2000, 1500)), max_pixels=200704, factor=32)
    twice = prepare_image(once, max_pixels=200704, factor=32)
    assert once.size == twice.size


def test_an_impossible_aspect_ratio_names_the_row():
    with pytest.raises(ImageLoadError, match="row 'thin'"):
        prepare_image(Image.new("RGB", (3, 1000)), row_id="thin", factor=28)


def test_each_family_processor_gives_its_own_factor_and_token_count(family, family_vlm, family_factor):
    """The factor comes from the model's processor, and our token count is the processor's own for the image."""
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(family_vlm)
    assert image_factor(processor) == family_factor == {"qwen2_vl": 28, "qwen2_5_vl": 28}.get(family, 32)
    image = prepare_image(Image.new("RGB", (333, 250)), 3136, 401408, factor=family_factor)
    assert pin_processor_pixels(processor, 3136, 401408) == family_factor
    grid = processor.image_processor(images=[image], return_tensors="pt")["image_grid_thw"][0]
    assert int(grid.prod()) // processor.image_processor.merge_size**2 == num_image_tokens(image, family_factor)
    assert (
        int(grid[2]) * processor.image_processor.patch_size,
        int(grid[1]) * processor.image_processor.patch_size,
    ) == (image.size)  # the processor kept our size: its resize is the identity


def test_bounds_below_one_token_of_the_model_are_refused_by_its_own_factor(family_vlm, family_factor):
    """900 pixels hold one 28x28 token but not one 32x32 token: the floor is the model's, not Qwen2-VL's."""
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(family_vlm)
    if family_factor == 28:
        assert pin_processor_pixels(processor, 900, 50176) == 28
    else:
        with pytest.raises(ValueError, match=r"need 1024 <= min_pixels .*32x32 pixels an image token"):
            pin_processor_pixels(processor, 900, 50176)


def test_a_processor_that_merges_no_patches_is_refused():
    from transformers import CLIPImageProcessor

    class LlavaLike:
        image_processor = CLIPImageProcessor()

    assert image_factor(LlavaLike()) is None
    with pytest.raises(ValueError, match="does not merge patches"):
        pin_processor_pixels(LlavaLike(), 3136, 401408)


def test_a_16_bit_grayscale_png_and_a_float_image_keep_their_contrast(tmp_path):
    # PIL's own RGB conversion clips at 255: a 16-bit PNG turned almost white, a 0-1 float image black.
    ramp = np.linspace(0, 4095, 64 * 64).reshape(64, 64).astype(np.uint16)  # 12-bit data stored in 16 bits
    Image.fromarray(ramp).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    floats = np.linspace(0.0, 1.0, 64 * 64).reshape(64, 64).astype(np.float32)
    for value in (tmp_path / "g16.png", ramp, floats):
        arr = np.asarray(load_image(value)).astype(int)
        assert arr.min() == 0 and arr.max() == 255
        assert np.all(np.diff(arr[:, :, 0].ravel()) >= 0)  # the ramp stays a ramp
