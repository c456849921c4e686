"""DICOM radiographs through the one decode: the display chain of the standard, refusals with their reason, and the
same model pixels as the PNG a DICOM was made from."""

import numpy as np
import pytest
from fixtures import ROBUST, as_dicom_12bit, real_images, write_dicom
from PIL import Image
from pydicom.uid import JPEG2000Lossless, RLELossless

from covid_xray.data.decode import ImageError, decode_grayscale
from covid_xray.data.transform import InferenceTransform
from covid_xray.serving.inputs import unreadable

RAMP = (np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) % 4096).astype(np.uint16)  # 0..4095, 12 bits


def decoded(path) -> np.ndarray:
    return np.asarray(decode_grayscale(path), dtype=np.int32)


def test_monochrome1_is_inverted_so_that_both_interpretations_show_the_same_picture(tmp_path):
    plain = decoded(write_dicom(tmp_path / "m2.dcm", RAMP, window=(2048, 4096)))
    inverted = decoded(write_dicom(tmp_path / "m1.dcm", 4095 - RAMP, photometric="MONOCHROME1", window=(2048, 4096)))
    assert np.abs(plain - inverted).max() <= 1
    assert plain[0, 0] == 0 and plain[-1, -1] == 255  # dark stays dark


def test_the_window_sets_the_contrast_and_bits_stored_the_range(tmp_path):
    narrow = decoded(write_dicom(tmp_path / "w.dcm", RAMP, window=(1024, 512)))
    values = RAMP.astype(np.int32)
    assert (narrow[values < 768] == 0).all() and (narrow[values > 1280] == 255).all()
    assert 100 < narrow[values == 1024].mean() < 155  # the window's centre is mid-grey
    # 16 bits stored, the same values: a window over the whole 16-bit range shows them 16 times darker than 12 bits
    deep = decoded(write_dicom(tmp_path / "16.dcm", RAMP, bits_stored=16, window=(32768, 65536)))
    assert deep.max() == round(4095 / 65535 * 255)


def test_without_a_window_the_image_is_stretched_and_the_rescale_applies_first(tmp_path):
    stretched = decoded(write_dicom(tmp_path / "plain.dcm", RAMP // 4 + 100))
    assert stretched.min() == 0 and stretched.max() == 255
    # a negative slope turns the picture over before display: the modality LUT is applied
    flipped = decoded(write_dicom(tmp_path / "flipped.dcm", RAMP // 4 + 100, rescale=(-1.0, 2000.0)))
    assert np.abs(flipped - (255 - stretched)).max() <= 1


@pytest.mark.parametrize("syntax", [RLELossless, JPEG2000Lossless], ids=["RLE", "JPEG 2000"])
def test_compressed_transfer_syntaxes_decode_to_the_same_picture(tmp_path, syntax):
    plain = decoded(write_dicom(tmp_path / "plain.dcm", RAMP, window=(2048, 4096)))
    compressed = write_dicom(tmp_path / "packed.dcm", RAMP, window=(2048, 4096), syntax=syntax)
    assert np.array_equal(decoded(compressed), plain)


@pytest.mark.parametrize(
    ("options", "reason"),
    [
        ({"modality": "CT"}, "not a radiograph: DICOM modality CT (computed tomography); chest X-rays are CR or DX"),
        ({"modality": "MR"}, "not a radiograph: DICOM modality MR (magnetic resonance)"),
    ],
)
def test_other_modalities_are_refused_with_their_reason_in_decode_and_before_predict(tmp_path, options, reason):
    path = write_dicom(tmp_path / "scan.dcm", RAMP, **options)
    with pytest.raises(ImageError, match=reason.replace("(", "\\(").replace(")", "\\)")):
        decode_grayscale(path)
    assert unreadable([str(path)])[str(path)].startswith(reason)


def test_multi_frame_and_broken_dicom_files_are_refused(tmp_path):
    frames = write_dicom(tmp_path / "cine.dcm", np.stack([RAMP, RAMP, RAMP]))
    with pytest.raises(ImageError, match="multi-frame DICOM \\(3 frames\\): send one image per file"):
        decode_grayscale(frames)
    truncated = tmp_path / "cut.dcm"
    truncated.write_bytes(write_dicom(tmp_path / "whole.dcm", RAMP).read_bytes()[:600])
    with pytest.raises(ImageError, match="DICOM"):
        decode_grayscale(truncated)
    (tmp_path / "text.dcm").write_text("not a DICOM file at all")
    with pytest.raises(ImageError, match="not a readable DICOM file"):
        decode_grayscale(tmp_path / "text.dcm")


def test_a_real_xray_as_a_12_bit_monochrome1_dicom_gives_the_pngs_model_pixels(tmp_path, shared_datasets):
    """Values v*16+8, inverted, windowed over 12 bits: the display chain gives back exactly the 8-bit picture
    ((16v+8)*255/4095 rounds to v for every v <= 255), so the default preprocessing gives the PNG's model pixels."""
    transform = InferenceTransform(128, ROBUST, min_side=64)
    for number, image in enumerate(real_images(shared_datasets, per_source=1)):
        png = tmp_path / f"{number}.png"
        Image.open(image).convert("L").save(png)
        dicom = as_dicom_12bit(png, tmp_path / f"{number}.dcm")
        assert np.array_equal(decoded(dicom), decoded(png)), image
        assert np.array_equal(transform(dicom), transform(png)), image
        assert np.array_equal(transform(dicom), transform(dicom.read_bytes()))  # file and upload alike
