import csv
import io
import json
import re

import keras
import numpy as np
import pytest
from fixtures import save, xray_like
from PIL import Image

from covid_xray.data.decode import ImageError
from covid_xray.data.transform import InferenceTransform
from covid_xray.evaluation.decision import OperatingPoint
from covid_xray.serving.inputs import InputError, collect_inputs, output_format
from covid_xray.serving.predict import PROCESSES_FROM, Prediction, Predictor
from covid_xray.serving.predict_io import (
    answer_records,
    overlay_names,
    summary_line,
    text_line,
    write_explanations,
    write_records,
)
from covid_xray.serving.pyfunc import XrayClassifier


@pytest.fixture
def images(tmp_path):
    """Four X-ray-like files: two at the top, two in a nested folder (one upper-case suffix), plus a text file."""
    paths = [
        save(xray_like(i, "covid" if i % 2 == 0 else "normal"), tmp_path / name)
        for i, name in enumerate(["xrays/a.png", "xrays/b.jpg", "xrays/ward/c.PNG", "xrays/ward/d.jpeg"])
    ]
    (tmp_path / "xrays/ward/notes.txt").write_text("not an image")
    return paths


class CountingModel:
    """A small real Keras CNN that counts its predict calls and the images of each."""

    def __init__(self, size=32):
        self.model = keras.Sequential(
            [
                keras.Input((size, size, 1)),
                keras.layers.Rescaling(1 / 255),
                keras.layers.Conv2D(4, 3, activation="relu"),
                keras.layers.GlobalAveragePooling2D(),
                keras.layers.Dense(2, activation="softmax"),
            ]
        )
        self.input_shape = self.model.input_shape
        self.layers = self.model.layers
        self.calls = []

    def predict_on_batch(self, x):
        self.calls.append(len(x))
        return self.model.predict_on_batch(x)


def predictor_of(model, threshold: float = 0.5) -> Predictor:
    """A Predictor over `model` with the plain 32 px transform, as a logged model would be loaded."""
    parts = XrayClassifier.from_parts(
        model, InferenceTransform(32), OperatingPoint(threshold=threshold), ["covid", "normal"]
    )
    return Predictor(parts, "models:/test")


def test_folders_are_searched_recursively_and_other_files_are_reported(images, tmp_path):
    inputs = collect_inputs([str(tmp_path / "xrays")])
    assert sorted(inputs.paths) == sorted(str(p) for p in images)
    assert inputs.notes == [f"{tmp_path / 'xrays'}: 1 file(s) without an image suffix passed over"]


def test_csv_list_paths_are_relative_to_the_csv_and_order_is_kept(images, tmp_path):
    listing = tmp_path / "xrays" / "list.csv"
    listing.write_text(f"id,path\n1,ward/c.PNG\n2,{images[0]}\n3,missing.png\n")
    inputs = collect_inputs([str(images[1]), str(listing)])
    assert inputs.paths == [str(images[1]), str(images[2]), str(images[0]), str(tmp_path / "xrays/missing.png")]


@pytest.mark.parametrize(
    "text, message",
    [
        ("file\nx.png\n", "a CSV list needs a 'path' column; it has ['file']"),
        ("path\nx.png\n\n,\n", "row 3: empty 'path'"),
    ],
)
def test_a_bad_csv_list_names_the_file_and_the_problem(tmp_path, text, message):
    listing = tmp_path / "list.csv"
    listing.write_text(text)
    with pytest.raises(InputError, match=re.escape(message)) as raised:
        collect_inputs([str(listing)])
    assert str(listing) in str(raised.value)


def test_a_folder_without_images_is_an_error_not_an_empty_answer(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty/readme.md").write_text("x")
    with pytest.raises(InputError, match="no image files"):
        collect_inputs([str(tmp_path / "empty")])


def test_missing_paths_are_kept_so_predict_reports_them(tmp_path):
    assert collect_inputs([str(tmp_path / "nope.png")]).paths == [str(tmp_path / "nope.png")]


def test_output_files_hold_one_row_per_input_including_failures(tmp_path):
    answers = [
        Prediction("a.png", "covid", 0.91234567, 0.4),
        ValueError("file not found"),
        ImageError("nearly constant image"),
        Prediction("d.png", "normal", 0.1, 0.4, True, 41.23456, 30.5),
    ]
    records = answer_records(["a.png", "b.png", "c.png", "d.png"], answers, "covid-xray v3 (@champion)", "models:/m/3")
    assert records[1] == {"path": "b.png", "status": "error", "error": "file not found"}
    assert records[2] == {
        "path": "c.png",
        "status": "refused",
        "reason": "nearly constant image",
        "model": "covid-xray v3 (@champion)",
        "model_uri": "models:/m/3",
    }
    assert "out_of_distribution" not in records[0]  # a model logged without an out-of-distribution record
    assert records[3]["out_of_distribution"] is True and records[3]["ood_distance"] == 41.2346
    write_records(records, tmp_path / "out.csv")
    rows = list(csv.DictReader(io.StringIO((tmp_path / "out.csv").read_text())))
    assert rows[0]["class"] == "covid" and rows[0]["covid_probability"] == "0.912346" and rows[0]["threshold"] == "0.4"
    assert rows[0]["model"] == "covid-xray v3 (@champion)" and rows[1]["error"] == "file not found"
    assert [r["status"] for r in rows] == ["ok", "error", "refused", "ok"] and rows[2]["class"] == ""
    assert rows[2]["reason"] == "nearly constant image" and rows[3]["out_of_distribution"] == "True"
    assert text_line(records[2]) == "c.png\tREFUSED\tnearly constant image"
    assert text_line(records[3]) == (
        "d.png\tnormal\tcovid_probability=0.1000\tOUT-OF-DISTRIBUTION: unlike the training "
        "images (feature distance 41.2 > 30.5), do not rely on this answer"
    )
    assert text_line(records[0]) == "a.png\tcovid\tcovid_probability=0.9123"
    assert summary_line(records) == "2 image(s) answered (1 out of distribution), 1 refused, 1 failed"
    write_records(records, tmp_path / "out.jsonl")
    lines = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert lines == records
    with pytest.raises(InputError, match=r"out\.txt: cannot tell the output format"):
        output_format(tmp_path / "out.txt")


def test_predict_files_batches_model_calls_and_answers_bad_files_in_place(images, tmp_path):
    model = CountingModel()
    predictor = predictor_of(model)
    (tmp_path / "broken.png").write_text("hello")
    paths = [images[0], tmp_path / "missing.png", images[1], tmp_path / "broken.png", images[2], images[3]]
    done = []
    answers = predictor.predict_files(paths, batch_size=4, progress=done.append)
    assert model.calls == [2, 2] and sum(done) == len(paths)
    assert [type(a).__name__ for a in answers] == [
        "Prediction",
        "ValueError",
        "Prediction",
        "ImageError",
        "Prediction",
        "Prediction",
    ]
    assert str(answers[1]) == "file not found" and "not a readable image" in str(answers[3])
    single = predictor.predict_file(images[2])
    assert single.path == str(images[2]) and single.covid_probability == pytest.approx(
        answers[4].covid_probability, abs=1e-6
    )
    with pytest.raises(ValueError, match="file not found"):
        predictor.predict_file(tmp_path / "missing.png")


def test_a_long_list_is_transformed_in_worker_processes_with_the_same_answers_in_order(images, tmp_path):
    """From PROCESSES_FROM files on, spawned processes transform them: answers, refusals and order as one by one."""
    (tmp_path / "broken.png").write_text("hello")
    paths = [*images, tmp_path / "missing.png", tmp_path / "broken.png"] * 11  # 66 files
    assert len(paths) >= PROCESSES_FROM
    predictor = predictor_of(CountingModel())
    together = predictor.predict_files(paths, batch_size=16)
    one_by_one = [predictor.transform.pixels_or_reason(path) for path in paths]
    assert [type(a).__name__ for a in together] == [
        "Prediction" if isinstance(o, np.ndarray) else type(o).__name__ for o in one_by_one
    ]
    assert [a.path for a in together if not isinstance(a, ValueError)] == [
        str(p) for p, o in zip(paths, one_by_one, strict=True) if isinstance(o, np.ndarray)
    ]
    first = together[0].covid_probability
    assert all(a.covid_probability == pytest.approx(first, abs=1e-6) for a in together[:: len(images) + 2])


def test_the_recorded_threshold_decides_the_class(images):
    model = CountingModel()
    probability = predictor_of(model).predict_file(images[0]).covid_probability
    below, above = (
        predictor_of(model, t).predict_file(images[0])
        for t in (max(probability - 0.01, 0.0), min(probability + 0.01, 1.0))
    )
    assert (below.label, below.threshold) == ("covid", pytest.approx(probability - 0.01))
    assert above.label == "normal"


def test_explanations_are_one_overlay_png_per_image_on_the_model_input(images, tmp_path):
    predictor = predictor_of(CountingModel().model)
    written = write_explanations(predictor, [str(p) for p in images], tmp_path / "cams", batch_size=3)
    assert [p.split("/")[-1] for p in written] == ["a.png", "b.png", "c.png", "d.png"]
    assert all(Image.open(p).size == (256, 256) for p in written)  # 32 px model input, enlarged for viewing


def test_an_overlay_shows_hot_regions_red_and_cold_ones_blue_over_the_image(tmp_path):
    from covid_xray.evaluation.explain import save_grad_cam_overlay

    heat = np.zeros((32, 32))
    heat[:16, :16] = 1.0
    save_grad_cam_overlay(np.full((32, 32), 128, np.uint8), heat, str(tmp_path / "o.png"))
    pixels = np.asarray(Image.open(tmp_path / "o.png")).astype(int)
    hot, cold = pixels[:100, :100].reshape(-1, 3).mean(axis=0), pixels[-100:, -100:].reshape(-1, 3).mean(axis=0)
    assert hot[0] > hot[2] + 40 and cold[2] > cold[0] + 40
    assert 60 < cold.mean() < 160  # the gray image shows through


def test_same_file_names_in_different_folders_get_distinct_overlays():
    assert overlay_names(["a/x.png", "b/x.jpg", "y.png", "c/x.png"]) == ["x.png", "x-2.png", "y.png", "x-3.png"]
