"""A corpus of bad inputs through ingest, validation, config and predict: each has its exact outcome, and no
good image in the same batch is lost."""

import io
from pathlib import Path

import numpy as np
import pytest
import yaml
from fixtures import save, write_actualmed, write_ieee8023, xray_like
from PIL import Image

from covid_xray.config import ConfigError, DataConfig, SourceConfig, ValidationConfig, parse_config
from covid_xray.data.ingest import IngestError, ingest
from covid_xray.data.transform import InferenceTransform
from covid_xray.evaluation.decision import OperatingPoint
from covid_xray.serving.predict import Predictor
from covid_xray.serving.pyfunc import XrayClassifier

GOOD = 6  # good images per class in the batch


def row(
    filename: str, finding: str = "COVID-19", view: str = "PA", modality: str = "X-ray", patient: str = "77"
) -> dict:
    return {
        "patientid": patient,
        "finding": finding,
        "view": view,
        "modality": modality,
        "folder": "images",
        "filename": filename,
    }


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    """One ieee8023-layout source with good images and every kind of bad row and file beside them."""
    root = tmp_path_factory.mktemp("bad")
    images = root / "ieee8023" / "images"
    images.mkdir(parents=True)
    (images / "zero.png").write_bytes(b"")
    (images / "paper.png").write_bytes(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n")
    buffer = io.BytesIO()
    xray_like(101, "covid").save(buffer, format="PNG")
    (images / "truncated.png").write_bytes(buffer.getvalue()[:300])
    save(xray_like(102, "covid").resize((20, 20)), images / "tiny.png")
    save(Image.new("L", (100, 100), 17), images / "flat.png")
    save(xray_like(103, "covid").resize((400, 60)), images / "strip.png")
    Image.new("L", (700, 700), 0).save(images / "bomb.png")
    save(xray_like(104, "covid"), images / "png-named.jpg", format="PNG")
    save(xray_like(105, "covid").convert("RGBA"), images / "rgba.png")
    save(xray_like(106, "normal").convert("P"), images / "palette.png")
    save(xray_like(107, "covid"), images / "ct.png")
    save(xray_like(108, "covid"), images / "lateral.png")
    save(xray_like(109, "covid"), images / "tb.png")
    save(xray_like(110, "covid"), images / "blank.png")
    save(xray_like(111, "covid"), images / "sars.png")
    extra = [
        row("../../../etc/passwd"),
        row("/etc/hostname"),
        row("not-there.png"),
        row("zero.png"),
        row("paper.png"),
        row("truncated.png"),
        row("tiny.png"),
        row("flat.png"),
        row("strip.png"),
        row("bomb.png"),
        row("png-named.jpg"),
        row("rgba.png"),
        row("palette.png", "No Finding"),
        row("ct.png", modality="CT", view="Axial"),
        row("lateral.png", view="L"),
        row("tb.png", "Tuberculosis"),
        row("blank.png", ""),
        row("sars.png", "SARS"),
        row("png-named.jpg", patient="78"),  # the same file listed again under another patient
    ]
    write_ieee8023(root, n_per_class=GOOD, extra_rows=extra)
    (root / "empty-source" / "X-Ray Image DataSet").mkdir(parents=True)
    data = DataConfig(
        root=str(root),
        cache_dir=str(root / "cache"),
        image_size=32,
        max_pixels=400_000,
        classes=["covid", "normal"],  # pneumonia is dropped, with its reason
        sources=[
            SourceConfig(reader="ieee8023", path="ieee8023"),
            SourceConfig(reader="darkcovidnet", path="empty-source", name="empty"),
        ],
    )
    manifest, drops = ingest(data, ValidationConfig(min_side=32))
    reasons = {
        item.split(" (")[-1].rstrip(")") if "metadata.csv" in item else item: reason
        for item, reason in zip(drops["item"], drops["reason"])
    }
    return root, manifest, drops, reasons


@pytest.mark.parametrize(
    "item, reason",
    [
        ("../../../etc/passwd", "unsafe file name 'images/../../../etc/passwd' points outside the source folder"),
        ("/etc/hostname", "unsafe file name '/etc/hostname' points outside the source folder"),
        ("not-there.png", "image file missing: images/not-there.png"),
        ("images/zero.png", "empty file (0 bytes)"),
        ("images/paper.png", "not a readable image (UnidentifiedImageError)"),
        ("images/tiny.png", "image too small: 20x20 (minimum side 32)"),
        ("images/flat.png", "nearly constant image"),
        ("images/strip.png", "extreme aspect ratio 400x60"),
        ("images/bomb.png", "image too large: 700x700 = 490000 pixels > 400000"),
        ("ct.png", "modality 'CT' is not a chest X-ray"),
        ("lateral.png", "view 'L' is not frontal"),
        ("tb.png", "unknown finding 'Tuberculosis'"),
        ("blank.png", "blank finding"),
        ("images/sars.png", "label 'pneumonia' not in classes ['covid', 'normal']"),
    ],
)
def test_each_bad_row_or_file_is_dropped_with_its_reason(batch, item, reason):
    _, _, _, reasons = batch
    assert reasons[item] == reason


def test_truncated_file_is_reported_as_corrupt(batch):
    _, _, _, reasons = batch
    assert reasons["images/truncated.png"].startswith("corrupt or truncated image")


def test_duplicate_row_is_dropped_as_exact_duplicate_and_empty_source_is_reported(batch):
    _, manifest, drops, _ = batch
    duplicate = drops[drops["reason"].str.startswith("exact duplicate")]
    assert duplicate["item"].tolist() == ["images/png-named.jpg"]
    assert (drops.loc[drops["source"] == "empty", "reason"].str.contains("none of the class folders")).any()
    assert (drops.loc[drops["source"] == "empty", "reason"] == "no usable images in source").any()


def test_no_good_image_is_lost(batch):
    _, manifest, _, _ = batch
    names = set(manifest["path"].map(lambda p: Path(p).name))
    generated = {f"img-{i:04d}.{'png' if i % 3 else 'jpg'}" for i in range(2 * GOOD)}
    assert generated | {"png-named.jpg", "rgba.png", "palette.png"} == names
    assert len(manifest) == 2 * GOOD + 3


def test_missing_source_folder_is_one_clear_error(tmp_path):
    data = DataConfig(root=str(tmp_path), sources=[SourceConfig(reader="actualmed", path="nowhere")])
    with pytest.raises(
        IngestError, match=r"source 'actualmed': source folder not found: .*nowhere \(run `covid-xray data fetch`"
    ):
        ingest(data, ValidationConfig())


def test_crlf_metadata_is_read(tmp_path):
    data = DataConfig(
        root=str(tmp_path),
        cache_dir=str(tmp_path / "c"),
        image_size=32,
        sources=[SourceConfig(reader="actualmed", path="actualmed")],
    )
    write_actualmed(tmp_path, n_per_class=3)
    manifest, drops = ingest(data, ValidationConfig(min_side=32))
    assert len(manifest) == 6 and drops["reason"].tolist() == ["blank finding"]


def test_config_asking_for_a_class_no_source_provides_fails_before_running():
    raw = yaml.safe_load(Path("configs/tiny.yaml").read_text())
    raw["data"]["sources"] = [{"reader": "actualmed", "path": "actualmed"}]
    raw["data"]["classes"] = ["covid", "normal", "pneumonia"]
    with pytest.raises(ConfigError, match=r"no configured source provides class\(es\) \['pneumonia'\]"):
        parse_config(raw)


class FixedModel:
    input_shape = (None, 32, 32, 1)

    def predict_on_batch(self, batch):
        return np.tile([[0.8, 0.2]], (len(batch), 1))


def fixed_predictor() -> Predictor:
    transform = InferenceTransform(32, max_pixels=400_000, min_side=32)
    return Predictor(XrayClassifier.from_parts(FixedModel(), transform, OperatingPoint(), ["covid", "normal"]), "fixed")


@pytest.mark.parametrize(
    "name, content, error",
    [
        ("missing.png", None, "file not found"),
        ("notes.png", b"just text", "not a readable image (UnidentifiedImageError)"),
        ("scan.pdf", b"%PDF-1.7\n", "not a readable image (UnidentifiedImageError)"),
        ("corrupt.png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x01\x00", "corrupt or truncated image"),
    ],
)
def test_predict_rejects_bad_files_with_one_reason(tmp_path, name, content, error):
    if content is not None:
        (tmp_path / name).write_bytes(content)
    predictor = fixed_predictor()
    with pytest.raises(ValueError, match=error.replace("(", r"\(").replace(")", r"\)")):
        predictor.predict_file(tmp_path / name)
    good = save(xray_like(1, "covid"), tmp_path / "good.png")
    assert predictor.predict_file(good)[:4] == (str(good), "covid", pytest.approx(0.8), 0.5)


def test_predict_refuses_a_huge_image(tmp_path):
    Image.new("L", (700, 700)).save(tmp_path / "huge.png")
    with pytest.raises(ValueError, match="image too large: 700x700"):
        fixed_predictor().predict_file(tmp_path / "huge.png")


def png_header(width: int, height: int) -> bytes:
    """A valid PNG that claims width x height pixels in a few hundred bytes (a decompression bomb)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 1000))
        + chunk(b"IEND", b"")
    )


@pytest.fixture(scope="module")
def more(tmp_path_factory):
    """Links, decompression bombs: dropped with the cause named, the good images of the source kept."""
    import os

    root = tmp_path_factory.mktemp("more")
    images = root / "ieee8023" / "images"
    images.mkdir(parents=True)
    os.symlink(images / "loop.png", images / "loop.png")
    os.symlink(images / "gone.png", images / "dangling.png")
    (images / "bomb.png").write_bytes(png_header(30000, 30000))  # 900 M pixels: past Pillow's own guard too
    (images / "wide.png").write_bytes(png_header(100000, 2000))
    write_ieee8023(
        root, n_per_class=GOOD, extra_rows=[row("loop.png"), row("dangling.png"), row("bomb.png"), row("wide.png")]
    )
    data = DataConfig(
        root=str(root),
        cache_dir=str(root / "cache"),
        image_size=32,
        max_pixels=400_000,
        classes=["covid", "normal"],  # pneumonia is dropped, with its reason
        sources=[SourceConfig(reader="ieee8023", path="ieee8023")],
    )
    manifest, drops = ingest(data, ValidationConfig(min_side=32))
    return manifest, dict(zip(drops["item"].str.extract(r"\((.*)\)$")[0].fillna(drops["item"]), drops["reason"]))


@pytest.mark.parametrize(
    "item, reason",
    [
        ("loop.png", "symbolic link loop: images/loop.png"),
        ("dangling.png", "broken symbolic link: images/dangling.png"),
        ("images/bomb.png", "image too large: 30000x30000 = 900000000 pixels > 400000"),
        ("images/wide.png", "image too large: 100000x2000 = 200000000 pixels > 400000"),
    ],
)
def test_links_and_bombs_are_dropped_naming_the_cause(more, item, reason):
    manifest, reasons = more
    assert reasons[item] == reason
    assert len(manifest) == 2 * GOOD


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "empty metadata table (0 bytes or only blank lines)"),
        (b"\n\n  \n", "empty metadata table (0 bytes or only blank lines)"),
        (b"\x00\x01PK\x03\x04" * 40, "not a text table (binary content: NUL bytes)"),
        (
            b'patientid,finding\n"1,COVID-19\n',
            "not a readable CSV table (Error tokenizing data. C error: EOF inside string",
        ),
    ],
)
def test_unreadable_metadata_table_names_the_source_and_file(tmp_path, content, message):
    write_ieee8023(tmp_path, n_per_class=1)
    (tmp_path / "ieee8023" / "metadata.csv").write_bytes(content)
    data = DataConfig(root=str(tmp_path), sources=[SourceConfig(reader="ieee8023", path="ieee8023")])
    with pytest.raises(IngestError) as error:
        ingest(data, ValidationConfig())
    assert str(error.value).startswith(f"source 'ieee8023': {tmp_path / 'ieee8023' / 'metadata.csv'}: {message}")
    assert "dvc pull" not in str(error.value)


def test_a_cache_that_cannot_be_written_is_a_cache_error_not_dropped_images(tmp_path):
    from covid_xray.data.cache import CacheError

    write_ieee8023(tmp_path, n_per_class=2)
    (tmp_path / "cache").write_text("a file where the cache folder should be")
    data = DataConfig(
        root=str(tmp_path),
        cache_dir=str(tmp_path / "cache"),
        image_size=32,
        sources=[SourceConfig(reader="ieee8023", path="ieee8023")],
    )
    with pytest.raises(
        CacheError, match=rf"^cannot write the image cache in {tmp_path / 'cache'}/images/\S+ \(Not a directory\)$"
    ):
        ingest(data, ValidationConfig(min_side=32))


@pytest.mark.parametrize(
    "make, error",
    [
        (lambda p: __import__("os").symlink(p, p), "symbolic link loop"),
        (lambda p: p.mkdir(), "not a file: a folder"),
        (lambda p: p.write_bytes(png_header(30000, 30000)), "image too large: 30000x30000 = 900000000 pixels > 400000"),
    ],
)
def test_decoding_names_loops_folders_and_bombs(tmp_path, make, error):
    from covid_xray.data.decode import decode_grayscale

    path = tmp_path / "x.png"
    make(path)
    with pytest.raises(ValueError, match=f"^{error.replace('(', '[(]').replace(')', '[)]')}$"):
        decode_grayscale(path, max_pixels=400_000)


def test_predict_says_symbolic_link_loop_not_file_not_found(tmp_path):
    import os

    os.symlink(tmp_path / "loop.png", tmp_path / "loop.png")
    with pytest.raises(ValueError, match="^symbolic link loop$"):
        fixed_predictor().predict_file(tmp_path / "loop.png")
