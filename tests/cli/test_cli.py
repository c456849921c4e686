"""The user-facing commands against a temporary MLflow store named only by a config's tracking.uri."""

import csv
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import keras
import mlflow
import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from fixtures import as_dicom_12bit, save, xray_like
from mlflow import MlflowClient
from PIL import Image

from covid_xray.cli import main
from covid_xray.data.transform import InferenceTransform
from covid_xray.evaluation.decision import OperatingPoint
from covid_xray.ops.quiet import is_startup_noise
from covid_xray.ops.serving_image import valid_tag
from covid_xray.serving.export import ExportedModel
from covid_xray.serving.predict import Predictor
from covid_xray.serving.pyfunc import log_model

ROOT = Path(__file__).resolve().parents[2]
MODEL = "covid-xray-cli-test"


def tiny_model(seed: int) -> keras.Model:
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input((32, 32, 1)),
            keras.layers.Rescaling(1 / 255),
            keras.layers.Conv2D(4, 3, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(2, activation="softmax"),
        ]
    )


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Two registered versions of a tiny real model (v1 previous, v2 champion) and the config that names the store."""
    tmp = tmp_path_factory.mktemp("cli")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment = client.create_experiment("cli-training", artifact_location=(tmp / "artifacts").as_uri())
    run_ids = []
    client.create_registered_model(MODEL)
    example = save(xray_like(0, "covid"), tmp / "example.png")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MLFLOW_TRACKING_URI", uri)
        for seed in (1, 2):
            with mlflow.start_run(experiment_id=experiment, run_name=f"cnn-{seed}") as run:
                mlflow.set_tags({"model.variant": f"cnn-{seed}", "data.manifest_hash": "feedfacecafe"})
                mlflow.log_metrics(
                    {"test_accuracy": 0.5 + seed / 10, "test_accuracy_ci_low": 0.4, "test_accuracy_ci_high": 0.9}
                )
                model_uri = log_model(
                    tiny_model(seed), InferenceTransform(32), OperatingPoint(), ["covid", "normal"], example
                )
                mlflow.set_tag("model_uri", model_uri)
            run_ids.append(run.info.run_id)
            client.create_model_version(MODEL, model_uri, run_id=run.info.run_id, tags={"run_id": run.info.run_id})
    client.set_registered_model_alias(MODEL, "previous", "1")
    client.set_registered_model_alias(MODEL, "champion", "2")
    raw = yaml.safe_load((ROOT / "configs/tiny.yaml").read_text())
    raw["tracking"] = {"uri": uri, "experiment": "cli-training"}
    raw["promotion"]["model_name"] = MODEL
    config = tmp / "config.yaml"
    config.write_text(yaml.safe_dump(raw))
    images = [save(xray_like(i, "covid" if i % 2 else "normal"), tmp / "xrays" / f"{i:02d}.png") for i in range(5)]
    return tmp, uri, client, config, run_ids, images


@pytest.fixture
def cli(store, monkeypatch):
    """Runs the CLI in-process with no MLFLOW_TRACKING_URI (the config must name the store); restores the env."""
    tmp = store[0]
    for name in ("MLFLOW_TRACKING_URI", "ZENML_CONFIG_PATH", "ZENML_REPOSITORY_PATH", "ZENML_CUSTOM_SOURCE_ROOT"):
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    monkeypatch.setenv("COVID_XRAY_HOME", str(tmp / "home"))

    def run(*args: str):
        return CliRunner().invoke(main, list(args), catch_exceptions=False)

    return run


def expected(store, version: str, paths) -> list[float]:
    tmp, uri, *_ = store
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MLFLOW_TRACKING_URI", uri)
        predictor = Predictor.from_registered(MODEL, version)
        return [round(p.covid_probability, 6) for p in predictor.predict_files(paths)]


def test_predict_takes_the_store_and_model_from_the_config(store, cli):
    tmp, _, _, config, _, images = store
    result = cli("predict", "--config", str(config), "--json", str(images[0]))
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert answer["path"] == str(images[0]) and answer["class"] in ("covid", "normal") and answer["threshold"] == 0.5
    assert answer["model"] == f"{MODEL} v2 (@champion)" and answer["model_uri"] == f"models:/{MODEL}/2"
    assert answer["covid_probability"] == expected(store, "2", images[:1])[0]


@pytest.mark.parametrize(
    "choice, version", [(["--model-version", "1"], "1"), (["--alias", "previous"], "1"), (["--alias", "champion"], "2")]
)
def test_model_version_and_alias_pick_the_model(store, cli, choice, version):
    _, _, _, config, _, images = store
    result = cli("predict", "--config", str(config), "--json", *choice, *map(str, images))
    assert result.exit_code == 0, result.output
    answers = [json.loads(line) for line in result.stdout.splitlines()]
    assert {a["model_uri"] for a in answers} == {f"models:/{MODEL}/{version}"}
    assert [a["covid_probability"] for a in answers] == expected(store, version, images)


def test_run_picks_the_model_logged_on_a_run(store, cli):
    _, _, _, config, run_ids, images = store
    result = cli("predict", "--config", str(config), "--json", "--run", run_ids[0], str(images[1]))
    answer = json.loads(result.stdout)
    assert (
        answer["model"] == f"cnn-1 of run {run_ids[0][:8]}"
        and answer["covid_probability"] == expected(store, "1", images[1:2])[0]
    )
    result = cli("predict", "--config", str(config), "--run", "0" * 32, str(images[1]))
    assert result.exit_code == 1 and f"no MLflow run '{'0' * 32}'" in result.stderr


def test_two_ways_of_picking_the_model_are_refused(store, cli):
    _, _, _, config, run_ids, images = store
    result = cli("predict", "--config", str(config), "--model-version", "1", "--run", run_ids[0], str(images[0]))
    assert result.exit_code == 2
    assert result.stderr == "covid-xray: error: --model-version and --run both pick the model: give only one\n"


def test_folder_and_csv_list_to_an_output_file_with_explanations(store, cli, tmp_path):
    tmp, _, _, config, _, images = store
    listing = tmp_path / "list.csv"
    listing.write_text(f"path\n{images[0]}\nmissing.png\n")
    out, cams = tmp_path / "answers.jsonl", tmp_path / "cams"
    result = cli(
        "predict",
        "--config",
        str(config),
        str(tmp / "xrays"),
        str(listing),
        "--output",
        str(out),
        "--explain",
        str(cams),
        "--batch-size",
        "2",
    )
    assert result.exit_code == 1  # one missing file
    assert result.stderr == f"covid-xray: error: {tmp_path / 'missing.png'}: file not found\n"
    assert result.stdout == (
        f"6 image(s) answered (0 out of distribution), 0 refused, 1 failed, by {MODEL} v2 (@champion): {out}\n"
    )
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["path"] for r in records] == [*map(str, images), str(images[0]), str(tmp_path / "missing.png")]
    assert records[-1] == {"path": str(tmp_path / "missing.png"), "status": "error", "error": "file not found"}
    assert [r["covid_probability"] for r in records[:5]] == expected(store, "2", images)
    assert sorted(p.name for p in cams.iterdir()) == ["00-2.png", "00.png", "01.png", "02.png", "03.png", "04.png"]
    assert records[0]["explanation"] == str(cams / "00.png")


def test_refused_images_are_answered_in_place_with_the_reason_and_exit_1(store, cli, tmp_path):
    """An image predict cannot judge gets no class: a REFUSED line (text) or status refused (JSON) in its place."""
    _, _, _, config, _, images = store
    Image.new("L", (300, 300), 0).save(tmp_path / "black.png")
    frames = [Image.open(p) for p in images[:2]]
    frames[0].save(tmp_path / "stack.gif", save_all=True, append_images=frames[1:])
    arguments = [str(images[0]), str(tmp_path / "black.png"), str(tmp_path / "stack.gif")]
    result = cli("predict", "--config", str(config), *arguments)
    assert result.exit_code == 1 and result.stderr == ""
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"{images[0]}\t") and "covid_probability=" in lines[0]
    multi_frame = "multi-frame image (2 frames in one GIF file): send one image per file"
    assert lines[1:] == [
        f"{tmp_path / 'black.png'}\tREFUSED\tnearly constant image",
        f"{tmp_path / 'stack.gif'}\tREFUSED\t{multi_frame}",
    ]
    result = cli("predict", "--config", str(config), "--json", *arguments)
    answers = [json.loads(line) for line in result.stdout.splitlines()]
    assert result.exit_code == 1 and [a["status"] for a in answers] == ["ok", "refused", "refused"]
    assert "class" not in answers[1] and answers[1]["reason"] == "nearly constant image"
    assert cli("predict", "--config", str(config), str(images[0])).exit_code == 0


def test_compare_and_rollback_use_the_configs_store(store, cli):
    _, _, client, config, run_ids, _ = store
    reason = (
        "not promoted: candidate cnn-2: best mean leave-one-source-out balanced accuracy (cnn-2 0.683, cnn-1 0.597); "
        "accuracy 0.769 < 0.800; sensitivity 0.724 < 0.800; specificity 0.816 >= 0.800; no champion yet"
    )
    client.set_tag(run_ids[1], "promotion", reason)
    result = cli("compare", "--config", str(config))
    assert result.exit_code == 0, result.output
    assert "cnn-1" in result.stdout and "cnn-2" in result.stdout and "0.700 [0.40, 0.90]" in result.stdout
    promotion = result.stdout.split("\nPromotion:\n")[1]
    assert f"{run_ids[1][:8]} cnn-2: {reason}" in " ".join(promotion.split())  # whole, however it is wrapped
    assert f"{run_ids[0][:8]} cnn-1: not a candidate" in promotion
    result = cli("rollback", "--config", str(config))
    assert result.exit_code == 0, result.output
    assert f"{MODEL}: champion is now version 1 (was 2)\n" in result.stdout
    assert str(client.get_model_version_by_alias(MODEL, "champion").version) == "1"
    result = cli("rollback", "--config", str(config))
    assert result.exit_code == 0, result.output
    assert str(client.get_model_version_by_alias(MODEL, "champion").version) == "2"


def test_card_prints_the_champions_card(store, cli):
    _, _, _, config, _, _ = store
    result = cli("card", "--config", str(config))
    assert result.exit_code == 0, result.output
    assert (
        result.stdout.startswith(f"# Model card: {MODEL} version 2 (@champion)\n")
        and "## Not intended for" in result.stdout
    )
    result = cli("card", "--config", str(config), "--model-version", "9")
    assert result.exit_code == 1
    assert (
        result.stderr
        == f"covid-xray: error: {MODEL} has no version 9: versions 1, 2; aliases champion → v2, previous → v1\n"
    )


def test_without_a_champion_predict_and_card_name_the_challenger_and_why(store, cli):
    tmp, uri, client, config, run_ids, images = store
    name = f"{MODEL}-no-champion"
    client.create_registered_model(name)
    model_uri = client.get_run(run_ids[0]).data.tags["model_uri"]
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MLFLOW_TRACKING_URI", uri)
        client.create_model_version(name, model_uri, run_id=run_ids[0])
    client.set_model_version_tag(name, "1", "promotion_reasons", "accuracy 0.600 < 0.800; no champion yet")
    client.set_registered_model_alias(name, "challenger", "1")
    said = (
        "covid-xray: error: no champion yet: version 1 (cnn-1) is registered as challenger, not promoted: "
        "accuracy 0.600 < 0.800; no champion yet; use `--alias challenger`, or promote it by hand with "
        f"`covid-xray promote --run {run_ids[0]} --force REASON`\n"
    )
    for command in (["predict", str(images[0])], ["card"]):
        result = cli(*command, "--config", str(config), "--model-name", name)
        assert result.exit_code == 1 and result.stderr == said, result.output
    result = cli(
        "predict", str(images[0]), "--json", "--config", str(config), "--model-name", name, "--alias", "challenger"
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["model"] == f"{name} v1 (@challenger)"


def test_predict_checks_its_outputs_before_any_image_and_names_special_files(store, cli, tmp_path):
    _, _, _, config, _, images = store
    (tmp_path / "afile").write_text("")
    for option, value, said in (
        (
            "--output",
            tmp_path / "afile" / "out.csv",
            f"--output {tmp_path / 'afile' / 'out.csv'}: {tmp_path / 'afile'} is a file, not a folder",
        ),
        ("--output", tmp_path / "folder.csv", f"--output {tmp_path / 'folder.csv'}: exists and is not a file"),
        ("--explain", tmp_path / "afile", f"--explain {tmp_path / 'afile'}: exists and is not a folder"),
    ):
        (tmp_path / "folder.csv").mkdir(exist_ok=True)
        result = cli("predict", "--config", str(config), option, str(value), str(images[0]))
        assert result.exit_code == 2 and result.stderr == f"covid-xray: error: {said}\n", result.output
    os.mkfifo(tmp_path / "pipe.png")  # read, it would block until someone writes to it
    result = cli("predict", "--config", str(config), "--json", str(tmp_path / "pipe.png"), str(images[0]))
    assert result.exit_code == 1
    assert result.stderr == f"covid-xray: error: {tmp_path / 'pipe.png'}: not a regular file: a named pipe (FIFO)\n"
    assert json.loads(result.stdout)["path"] == str(images[0])
    (tmp_path / "notes.png").write_text("not an image")
    inputs = [tmp_path / "afile", tmp_path / "notes.png", tmp_path / "pipe.png"]
    # No input is an image: refused as bad input before any model is looked up (this model name was never registered).
    result = cli("predict", "--config", str(config), "--model-name", "never-registered", *map(str, inputs))
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"covid-xray: error: {inputs[0]}: empty file (0 bytes)",
        f"covid-xray: error: {inputs[1]}: not a readable image (UnidentifiedImageError)",
        f"covid-xray: error: {inputs[2]}: not a regular file: a named pipe (FIFO)",
        "covid-xray: error: none of the 3 input(s) is a readable image; no model was loaded",
    ]


def cli_subprocess(store, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ZENML_", "MLFLOW_", "TF_"))}
    env |= {"COVID_XRAY_HOME": str(store[0] / "home"), "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "covid_xray.cli", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


def test_a_predict_prints_no_framework_start_up_lines_unless_verbose(store):
    _, _, _, config, _, images = store
    quiet = cli_subprocess(
        store, "predict", "--config", str(config), str(images[0]), str(images[0].parent / "nope.png")
    )
    assert quiet.returncode == 1 and quiet.stdout.startswith(str(images[0]))
    assert quiet.stderr.splitlines() == [f"covid-xray: error: {images[0].parent / 'nope.png'}: file not found"]
    verbose = cli_subprocess(store, "predict", "--verbose", "--config", str(config), str(images[0]))
    assert verbose.returncode == 0 and verbose.stdout == quiet.stdout
    assert any(is_startup_noise(line) for line in verbose.stderr.splitlines()), verbose.stderr[-2000:]


# The bad-input corpus at the CLI door: each case is a real `python -m covid_xray.cli` process (so the console entry's
# last line of defence is part of it), bounded by a timeout (an alias bomb used to hang `run` while memory grew),
# and must end in exactly one line on stderr naming the cause, with no traceback and the exit code of its kind.

ALIAS_BOMB = "".join(
    f"      {k}: &{k} [{', '.join([f'*{p}' if p else 'x'] * 9)}]\n" for p, k in zip(["", *"abcdefgh"], "abcdefghi")
)


def corpus_cli(tmp: Path, *args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ZENML_", "MLFLOW_", "TF_", "COVID_XRAY_DEBUG"))}
    env |= {"COVID_XRAY_HOME": str(tmp / "home"), "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "covid_xray.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def corpus_config(tmp: Path, change=None, text: str = "") -> Path:
    from fixtures import write_ieee8023

    if not (tmp / "data" / "ieee8023").is_dir():
        write_ieee8023(tmp / "data", n_per_class=16)
    raw = yaml.safe_load((ROOT / "configs/tiny.yaml").read_text())
    raw["data"] |= {"root": str(tmp / "data"), "cache_dir": str(tmp / "cache")}
    if change:
        change(raw, tmp)
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(raw) + text)
    return path


def corrupt_all(raw, tmp):
    for image in (tmp / "data" / "ieee8023" / "images").iterdir():
        image.write_bytes(b"junk")


def cache_is_a_file(raw, tmp):
    (tmp / "cache-file").write_text("not a folder")
    raw["data"]["cache_dir"] = str(tmp / "cache-file")


def header_only(raw, tmp):
    metadata = tmp / "data" / "ieee8023" / "metadata.csv"
    metadata.write_text(metadata.read_text().splitlines()[0] + "\n")


def empty_class_folders(raw, tmp):
    for name in ("covid", "normal"):
        (tmp / "export" / name).mkdir(parents=True)
    raw["data"] |= {"root": str(tmp), "sources": [{"reader": "folder", "path": "export"}]}


RUN_CASES = {
    "alias bomb under execution.train.orchestrator": (
        None,
        "execution:\n  train:\n    orchestrator:\n" + ALIAS_BOMB,
        r"config\.yaml: more than 20000 values once YAML aliases are expanded \(an alias bomb\?\)",
    ),
    "infinite learning rate": (
        lambda raw, tmp: raw["models"][0].update(learning_rate=float("inf")),
        "",
        r"config\.yaml: models\.0\.learning_rate: Input should be a finite number",
    ),
    "zero and negative conv filters": (
        lambda raw, tmp: raw["models"][1].update(conv_filters=[0, -4]),
        "",
        r"models\.1\.conv_filters\.0: Input should be greater than or equal to 1; "
        r"models\.1\.conv_filters\.1: Input should be",
    ),
    "zero dense units": (
        lambda raw, tmp: raw["models"][0]["head"].update(dense_units=[0]),
        "",
        r"models\.0\.head\.dense_units\.0: Input should be greater than or equal to 1",
    ),
    "weights file that does not exist": (
        lambda raw, tmp: raw["models"][0].update(weights=str(tmp / "vgg.weights.h5")),
        "",
        r"models\.0\.weights \(vgg16-tiny\): file not found: .*vgg\.weights\.h5",
    ),
    "cache_dir that is a file": (cache_is_a_file, "", r"data\.cache_dir: .*cache-file is a file, not a folder"),
    "source whose every image is corrupt": (
        corrupt_all,
        "",
        r"source 'ieee8023': none of its 16 'covid' image\(s\) is usable \(16 not a readable image\)",
    ),
    "header-only metadata.csv": (
        header_only,
        "",
        r"source 'ieee8023' \(.*\): lists no images at all \(empty metadata table or class folders\?\)",
    ),
    "0-byte metadata.csv": (
        lambda raw, tmp: (tmp / "data" / "ieee8023" / "metadata.csv").write_bytes(b""),
        "",
        r"source 'ieee8023': .*metadata\.csv: empty metadata table \(0 bytes or only blank lines\)",
    ),
    "empty class folders": (empty_class_folders, "", r"source 'folder' \(.*export\): lists no images at all"),
    "validation and test fractions that leave too little to train on": (
        lambda raw, tmp: raw.update(split={"val_fraction": 0.45, "test_fraction": 0.45}),
        "",  # default minimum: 20
        r"split\.val_fraction 0\.45 and split\.test_fraction 0\.45 leave about 4 training images of class 'covid' "
        r"\(of 16 listed\), fewer than split\.min_train_images_per_class 20",
    ),
}


@pytest.mark.parametrize("case", RUN_CASES)
def test_bad_run_input_is_one_line_naming_the_cause_before_any_work(tmp_path, case):
    change, text, message = RUN_CASES[case]
    result = corpus_cli(tmp_path, "run", "--config", str(corpus_config(tmp_path, change, text)))
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stdout == "" and len(result.stderr.splitlines()) == 1, result.stderr[-2000:]
    assert re.match(rf"covid-xray: error: .*{message}", result.stderr), result.stderr
    assert not (tmp_path / "home" / "zenml").exists()  # refused before ZenML started


@pytest.mark.parametrize(
    "command",
    [
        ["run"],
        ["loso"],
        ["promote", "--run", "0" * 32],
        ["predict", "x.png"],
        ["compare"],
        ["card"],
        ["rollback"],
        ["history"],
        ["ui"],
        ["serve"],
    ],
)
def test_every_command_names_a_binary_or_non_utf8_config(tmp_path, command):
    config = tmp_path / "c.yaml"
    config.write_bytes(b"data:\n  root: caf\xe9\n")
    result = corpus_cli(tmp_path, *command, "--config", str(config))
    assert result.returncode == 2 and "Traceback" not in result.stdout + result.stderr
    assert (
        result.stderr
        == f"covid-xray: error: {config}: not UTF-8 text (byte 0xe9 on line 2); save the config as UTF-8\n"
    )


def test_bad_arguments_are_click_errors_not_mlflow_tracebacks(tmp_path):
    import socket

    result = corpus_cli(tmp_path, "compare", "-n", "-1")
    assert (
        result.returncode == 2
        and result.stderr.splitlines()[-1] == "Error: Invalid value for '-n': -1 is not in the range x>=1."
    )
    result = corpus_cli(tmp_path, "ui", "--port", "99999")
    assert result.returncode == 2 and "99999 is not in the range 1<=x<=65535" in result.stderr.splitlines()[-1]
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = corpus_cli(tmp_path, "ui", "--port", str(port))
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == f"covid-xray: error: cannot serve on 127.0.0.1:{port}: Address already in use\n"


def test_a_failing_step_is_its_own_message_on_one_line_and_its_traceback_goes_to_the_log(tmp_path):
    """A real pipeline run that passes the pre-flight and fails in validate_data: the good images beside the bad
    rows were kept (16 per class in the failure), the user sees one line, the trace is in the run's log."""
    from fixtures import write_ieee8023

    write_ieee8023(
        tmp_path / "data",
        n_per_class=16,
        start_seed=0,
        extra_rows=[
            {
                "patientid": "9",
                "finding": "COVID-19",
                "view": "PA",
                "modality": "X-ray",
                "folder": "images",
                "filename": "missing.png",
            }
        ],
    )
    (tmp_path / "data" / "ieee8023" / "images" / "img-0000.jpg").write_bytes(b"junk")  # one corrupt covid image
    config = corpus_config(tmp_path, lambda raw, tmp: raw["validation"].update(min_images_per_class=1000))
    result = corpus_cli(tmp_path, "run", "--config", str(config), timeout=900)
    assert result.returncode == 1, result.stderr[-3000:]
    output = result.stdout + result.stderr
    assert "Traceback" not in output and 'File "' not in output
    last = result.stderr.strip().splitlines()[-1]
    match = re.fullmatch(
        r"covid-xray: error: pipeline failed: step validate_data failed: data validation failed: "
        r"\[FAILED\] class_counts: .*'covid', 'count': 15}, \{'label': 'normal', 'count': 16}\] "
        r"\(traceback: (?P<log>\S+\.log)\)",
        last,
    )
    assert match, last
    log = Path(match["log"]).read_text()
    assert log.startswith("step validate_data:\n") and "DataValidationError: data validation failed" in log


def test_loso_runs_the_same_pre_flight(tmp_path):
    result = corpus_cli(tmp_path, "loso", "--config", str(corpus_config(tmp_path, corrupt_all)))
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == (
        "covid-xray: error: source 'ieee8023': none of its 16 'covid' image(s) is usable (16 not a readable image)\n"
    )


def test_help_lists_every_command_without_starting_tensorflow_or_zenml(tmp_path):
    """`covid-xray --help` names every command with its own one-line help, loading none of the heavy modules."""
    probe = (
        "import sys; from click.testing import CliRunner; from covid_xray.cli import main; "
        "out = CliRunner().invoke(main, ['--help'], terminal_width=200).output; "
        "heavy = sorted(m for m in ('tensorflow', 'keras', 'zenml', 'mlflow') if m in sys.modules); "
        "print(heavy); print(out)"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ZENML_", "MLFLOW_", "TF_"))}
    env |= {"COVID_XRAY_HOME": str(tmp_path / "home"), "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    heavy, *help_text = result.stdout.splitlines()
    assert heavy == "[]"
    from covid_xray.cli import COMMANDS, load

    for name, (module, function, summary) in COMMANDS.items():
        assert any(line.split() == [name, *summary.split()] for line in help_text), (name, help_text)
        command = load(module, function)
        assert command.name == name and command.help.splitlines()[0] == summary


def test_evaluate_a_site_writes_the_report_logs_it_and_tags_the_version(store, cli, tmp_path, shared_datasets):
    """A site in class folders of real X-rays (DICOM among them), with a file the model refuses and one the reader
    drops: the report has the metrics the model's own answers give, and the run and version are linked in MLflow."""
    _, uri, client, config, _, _ = store
    images = {"covid": [], "normal": []}
    with open(shared_datasets / "manifest.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            if row["label"] in images and len(images[row["label"]]) < 12:
                images[row["label"]].append(shared_datasets / row["path"])
    site = tmp_path / "site"
    for label, paths in images.items():
        (site / label).mkdir(parents=True)
        for number, path in enumerate(paths):
            target = site / label / f"{number}{path.suffix}"
            shutil.copy(path, target)
    as_dicom_12bit(images["covid"][0], site / "covid" / "as-dicom.dcm")
    (site / "normal" / "notes.png").write_text("not an X-ray")
    (site / "normal" / "readme.txt").write_text("not an image name")
    result = cli("evaluate", str(site), "--config", str(config), "--model-version", "2", "--out", str(tmp_path / "r"))
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["images"] == {
        "answered": 25,
        "refused_by_the_model": 1,
        "dropped_by_the_reader": 1,
        "patients": 25,
        "covid": 13,
    }
    suffixes = (".png", ".jpg", ".jpeg", ".dcm")
    answered = sorted(p for p in site.rglob("*") if p.suffix in suffixes and p.name != "notes.png")
    probabilities = expected(store, "2", answered)
    labels = np.asarray(["covid" if p.parent.name == "covid" else "normal" for p in answered])
    threshold = report["at_recorded_threshold"]["threshold"]
    accuracy = np.mean((np.asarray(probabilities) >= threshold) == (labels == "covid"))
    assert report["at_recorded_threshold"]["accuracy"] == pytest.approx(accuracy, abs=1e-9)
    refused = {"path": str(site / "normal" / "notes.png"), "reason": "not a readable image (UnidentifiedImageError)"}
    assert report["refused"] == [refused]
    assert {s["attribute"] for s in report["subgroups"]} == {"view", "sex", "age_band"}
    page = (tmp_path / "r" / "report.html").read_text()
    for section in ("At the model's recorded threshold", "Calibration at this site", "A threshold for this site"):
        assert section in page
    assert "readme.txt" in page and "not an image file name" in page
    runs = client.search_runs([client.get_experiment_by_name("covid-xray-site-evaluations").experiment_id])
    assert runs[0].data.tags["model_version"] == "2" and runs[0].data.tags["site"] == str(site.resolve())
    assert runs[0].data.metrics["site_accuracy"] == pytest.approx(accuracy)
    version_tags = client.get_model_version(MODEL, "2").tags
    assert version_tags[f"site_evaluation.{runs[0].info.run_id[:8]}"] == str(site)
    assert result.output.startswith(f"{MODEL} v2 on {site}: 25 images of 25 patients, accuracy")
    card = cli("card", "--config", str(config), "--model-version", "2")
    assert f"- {site}: MLflow run {runs[0].info.run_id[:8]} in covid-xray-site-evaluations" in card.output


def test_evaluate_refuses_a_site_it_cannot_read_before_loading_a_model(cli, store, tmp_path):
    _, _, _, config, _, _ = store
    (tmp_path / "empty").mkdir()
    result = cli("evaluate", str(tmp_path / "empty"), "--config", str(config))
    assert result.exit_code == 2
    assert "no labelled image to evaluate" in result.stderr
    result = cli("evaluate", str(tmp_path / "nothing.txt"), "--config", str(config))
    assert result.exit_code == 2 and "a site is a folder of class folders or a .csv list" in result.stderr


def test_export_writes_the_chosen_versions_onnx_that_answers_as_predict(store, cli, tmp_path):
    _, _, _, config, _, images = store
    result = cli("export", "--format", "onnx", "--output", str(tmp_path / "onnx"), "--config", str(config))
    assert result.exit_code == 0, result.output
    assert f"{MODEL} v2 (@champion) exported as onnx to {tmp_path / 'onnx'}" in result.stdout
    manifest = json.loads((tmp_path / "onnx" / "export.json").read_text())
    assert manifest["origin"]["version"] == "2" and manifest["origin"]["alias"] == "champion"
    exported = ExportedModel(tmp_path / "onnx")
    assert np.abs(exported.covid_probability(images) - expected(store, "2", images)).max() <= 1e-4

    saved = ("--format", "saved_model", "--output", str(tmp_path / "sm"), "--model-version", "1")
    result = cli("export", *saved, "--config", str(config))
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "sm" / "export.json").read_text())["origin"]["version"] == "1"
    assert (tmp_path / "sm" / "saved_model" / "saved_model.pb").is_file()


def test_export_refuses_a_used_folder_or_a_missing_version_in_one_line(store, cli, tmp_path):
    _, _, _, config, _, _ = store
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "keep.txt").write_text("mine")
    result = cli("export", "--format", "onnx", "--output", str(tmp_path / "used"), "--config", str(config))
    assert result.exit_code == 2
    assert (
        result.stderr
        == f"covid-xray: error: --output {tmp_path / 'used'}: the folder is not empty; name a new folder\n"
    )
    missing = ("--format", "onnx", "--output", str(tmp_path / "new"), "--model-version", "9")
    result = cli("export", *missing, "--config", str(config))
    assert result.exit_code == 1 and f"{MODEL} has no version 9: versions 1, 2" in result.stderr
    assert not (tmp_path / "new").exists()
    result = cli("export", "--format", "tflite", "--output", str(tmp_path / "new"), "--config", str(config))
    assert result.exit_code == 2 and "'tflite' is not one of 'onnx', 'saved_model'" in result.stderr


def test_build_image_says_what_is_missing_before_touching_the_registry(store, cli, tmp_path, monkeypatch):
    _, _, _, config, _, _ = store
    monkeypatch.setenv("PATH", str(tmp_path))  # no docker on it
    result = cli("build-image", "--config", str(config))
    assert result.exit_code == 2
    assert result.stderr == (
        "covid-xray: error: cannot build a serving image: docker is not installed (or not on PATH): install Docker "
        "Engine (Debian: apt-get install docker.io)\n"
    )
    fake = tmp_path / "docker"  # a docker whose daemon does not answer, as on a machine where dockerd is stopped
    fake.write_text(
        "#!/bin/sh\necho 'Cannot connect to the Docker daemon at unix:///var/run/docker.sock.' >&2\nexit 1\n"
    )
    fake.chmod(0o755)
    result = cli("build-image", "--config", str(config))
    assert result.exit_code == 2 and "no Docker daemon answers (Cannot connect to the Docker daemon" in result.stderr
    result = cli("build-image", "--tag", "Covid X-ray:latest", "--config", str(config))
    assert result.exit_code == 2 and "--tag 'Covid X-ray:latest' is not a Docker image name" in result.stderr
    assert valid_tag("covid-xray/serve:v3") and valid_tag("registry.local:5000/team/covid-xray:2026-12-05")
