"""The promotion gate against a real MLflow registry (SQLite in a temporary folder), with an injected champion
scorer."""

import json
import re

import keras
import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from PIL import Image
from registry_runs import (
    CLASSES,
    GATE,
    NAME,
    PLAIN,
    TRUTH,
    Scorer,
    alias,
    champion,
    example_image,
    paths,
    pipeline_run,
    tiny_model,
    wrong,
)

from covid_xray.config import PreprocessConfig, PromotionConfig
from covid_xray.data.transform import InferenceTransform
from covid_xray.evaluation.decision import OperatingPoint
from covid_xray.registry.aliases import (
    CHALLENGER,
    CHAMPION,
    PENDING,
    PREVIOUS,
    LeaseBusy,
    finish_pending,
    history,
    lease,
    pending_move,
    rollback,
    rollback_target,
)
from covid_xray.registry.gate import PromotionError, decide, select_candidate, training_keys
from covid_xray.registry.promote import promote_run
from covid_xray.serving.pyfunc import log_model


def test_no_champion_yet_thresholds_alone_decide_and_the_move_is_an_event(client):
    version, decision = promote_run(client, pipeline_run(wrong(20)), GATE, scorer=Scorer(wrong(0)))
    assert decision.promote and "no champion yet" in decision.reasons
    assert champion(client) == version and alias(client, PREVIOUS) is None
    assert client.get_model_version(NAME, version).tags["promotion_decision"] == "promoted"
    [event] = history(client, NAME)
    assert event["action"] == "promote" and event["from_version"] is None and event["to_version"] == version
    assert event["evidence"]["test_accuracy"] == pytest.approx(0.9) and event["by"]


def test_failing_thresholds_register_but_do_not_promote(client):
    version, decision = promote_run(client, pipeline_run(wrong(120)), GATE)
    assert not decision.promote and decision.reasons[0].startswith("accuracy 0.400 < 0.600")
    assert alias(client, CHALLENGER) == version and alias(client, CHAMPION) is None
    assert history(client, NAME)[0]["action"] == "rejected"


def test_better_candidate_is_promoted_old_champion_becomes_previous_and_rollback_undoes_it(client):
    first, _ = promote_run(client, pipeline_run(wrong(60)), GATE)
    scorer = Scorer(wrong(60))  # the champion's own predictions, re-scored from the files
    second, decision = promote_run(client, pipeline_run(wrong(10, 1)), GATE, scorer=scorer)
    assert decision.promote, decision.reasons
    assert any(r.startswith("comparison better: balanced_accuracy 0.950 vs champion's 0.700") for r in decision.reasons)
    assert scorer.calls == [(f"models:/{NAME}/{first}", paths())]
    assert (champion(client), alias(client, PREVIOUS)) == (second, first)
    assert rollback(client, NAME, GATE, reason="drift seen in production") == (second, first)
    assert (champion(client), alias(client, PREVIOUS)) == (first, second)
    events = history(client, NAME)
    assert [e["action"] for e in events] == ["promote", "promote", "rollback"]
    assert events[1]["evidence"]["comparison"]["outcome"] == "better"
    assert events[1]["evidence"]["comparison"]["ci_low"] > 0 and events[1]["from_version"] == first
    assert events[2]["reasons"] == ["drift seen in production"] and events[2]["to_version"] == first


def test_equal_within_margin_is_promoted_though_its_raw_accuracy_is_lower(client):
    promote_run(client, pipeline_run(wrong(20)), GATE)
    candidate = wrong(20)
    candidate[[3, 5]] = np.where(TRUTH[[3, 5]] == "covid", "normal", "covid")  # two more errors: 0.89 vs 0.90
    version, decision = promote_run(client, pipeline_run(candidate), GATE, scorer=Scorer(wrong(20)))
    assert decision.promote, decision.reasons
    assert decision.evidence["comparison"]["outcome"] == "non-inferior" and champion(client) == version


def test_clearly_worse_candidate_is_rejected_by_the_test_and_champion_stays(client):
    first, _ = promote_run(client, pipeline_run(wrong(10)), GATE)
    lenient = GATE.model_copy(update={"min_accuracy": 0.0, "min_sensitivity": 0.0, "min_specificity": 0.0})
    version, decision = promote_run(client, pipeline_run(wrong(50, 1)), lenient, scorer=Scorer(wrong(10)))
    assert not decision.promote
    assert decision.evidence["comparison"]["outcome"] == "inferior" and decision.evidence["comparison"]["ci_high"] < 0
    assert champion(client) == first != version and alias(client, CHALLENGER) == version
    assert history(client, NAME)[-1]["action"] == "rejected"


def test_too_few_unseen_test_images_is_said_and_not_decided(client):
    first, _ = promote_run(client, pipeline_run(wrong(10), trained_on=170), GATE)  # champion trained on 170 of them
    scorer = Scorer(wrong(10))
    _, decision = promote_run(client, pipeline_run(wrong(0)), GATE, scorer=scorer)
    assert not decision.promote and scorer.calls == []
    assert decision.evidence["comparison"]["outcome"] == "insufficient"
    assert "170 of 200 test images left out: champion trained on them" in decision.reasons
    assert any("30 unseen test images of 15 patients are too few" in r for r in decision.reasons)
    assert champion(client) == first


def test_champion_without_a_pipeline_run_is_an_error_not_an_empty_set(client, tmp_path):
    with mlflow.start_run() as run:  # a model registered by hand: no parent run, so no manifest
        uri = log_model(tiny_model(), PLAIN, OperatingPoint(), CLASSES, example_image(tmp_path))
    version = mlflow.register_model(uri, NAME, tags={"run_id": run.info.run_id})
    client.set_registered_model_alias(NAME, CHAMPION, str(version.version))
    with pytest.raises(PromotionError, match="has no pipeline \\(parent\\) run"):
        training_keys(client, client.get_model_version(NAME, version.version))
    candidate = pipeline_run(wrong(0))
    with pytest.raises(PromotionError, match="unknown_champion_split: compare_all"):
        promote_run(client, candidate, GATE, scorer=Scorer(wrong(10)))
    assert champion(client) == str(version.version)
    everything = GATE.model_copy(update={"unknown_champion_split": "compare_all"})
    _, decision = promote_run(client, candidate, everything, scorer=Scorer(wrong(10)))
    assert decision.promote and any("compared on all 200 test images" in r for r in decision.reasons)


def test_champion_manifest_missing_is_an_error_with_its_reason(client):
    promote_run(client, pipeline_run(wrong(10), manifest=False), GATE)
    with pytest.raises(PromotionError, match="cannot read data/manifest.csv of pipeline run"):
        promote_run(client, pipeline_run(wrong(0)), GATE, scorer=Scorer(wrong(10)))


def test_champion_that_moves_during_the_gate_refuses_the_stale_decision(client):
    """Compare-and-set: a candidate compared with version 1 may not replace version 2 that arrived meanwhile."""
    first, _ = promote_run(client, pipeline_run(wrong(40)), GATE)
    rival = pipeline_run(wrong(20, 1))
    moved = []

    def scorer_during_which_a_rival_promotes(model_uri, image_paths):
        moved.append(promote_run(client, rival, GATE, scorer=Scorer(wrong(40)))[0])
        return Scorer(wrong(40))(model_uri, image_paths)

    version, decision = promote_run(
        client, pipeline_run(wrong(10, 2)), GATE, scorer=scorer_during_which_a_rival_promotes
    )
    assert not decision.promote and "compare-and-set" in decision.reasons[-1]
    assert (champion(client), alias(client, PREVIOUS)) == (moved[0], first)
    assert [e["action"] for e in history(client, NAME)] == ["promote", "promote", "rejected"]


def test_crash_after_the_journal_leaves_the_old_champion_and_the_next_holder_completes_the_move(client, monkeypatch):
    first, _ = promote_run(client, pipeline_run(wrong(60)), GATE)
    real = MlflowClient.set_registered_model_alias

    def crash_on_champion(self, name, alias_name, version):
        if alias_name == CHAMPION:
            raise RuntimeError("registry went away")
        return real(self, name, alias_name, version)

    monkeypatch.setattr(MlflowClient, "set_registered_model_alias", crash_on_champion)
    with pytest.raises(RuntimeError):
        promote_run(client, pipeline_run(wrong(10, 1)), GATE, scorer=Scorer(wrong(60)))
    monkeypatch.undo()
    assert champion(client) == first and len(client.search_model_versions(f"name = '{NAME}'")) == 2
    pending = pending_move(client, NAME)
    assert pending["champion"] == "2" and pending["previous"] == first and rollback_target(client, NAME) == first
    event = finish_pending(client, NAME, GATE)
    assert "completed by" in event["reasons"][-1] and pending_move(client, NAME) is None
    assert (champion(client), alias(client, PREVIOUS)) == ("2", first)
    assert PENDING not in client.get_registered_model(NAME).tags


def test_lease_has_one_holder_and_an_expired_one_can_be_broken(client):
    client.create_registered_model(NAME)
    with (
        lease(client, NAME, seconds=1.0, wait=0.5),
        pytest.raises(LeaseBusy, match="still held"),
        lease(client, NAME, seconds=1.0, wait=0.5),
    ):
        pass
    import time

    stale = f"{NAME}.lease"
    client.create_registered_model(stale, tags={"token": "crashed", "holder": "x", "expires": f"{time.time() - 1}"})
    with lease(client, NAME, seconds=5, wait=5) as held:
        held.check()
        assert client.get_registered_model(stale).tags["token"] == held.token
    assert not client.search_registered_models(f"name = '{stale}'")


def test_selection_by_leave_one_source_out_with_validation_as_tie_breaker(client):
    runs = {
        variant: pipeline_run(wrong(10), variant=variant, val=val)
        for variant, val in (("vgg16-frozen", 0.95), ("cnn-small", 0.80), ("vgg16-linear", 0.90))
    }
    parent = {
        "loso_mean_balanced_accuracy.vgg16-frozen": 0.492,
        "loso_mean_balanced_accuracy.cnn-small": 0.592,
        "loso_mean_balanced_accuracy.vgg16-linear": 0.588,
    }
    by_loso = GATE.model_copy(update={"selection": "loso"})
    chosen, why = select_candidate(client, list(runs.values()), by_loso, parent)
    assert chosen == runs["cnn-small"] and "cnn-small 0.592, vgg16-linear 0.588, vgg16-frozen 0.492" in why
    tied = by_loso.model_copy(update={"selection_tolerance": 0.01})
    assert select_candidate(client, list(runs.values()), tied, parent)[0] == runs["vgg16-linear"]  # 0.90 > 0.80
    assert select_candidate(client, list(runs.values()), GATE, parent)[0] == runs["vgg16-frozen"]  # validation alone
    with pytest.raises(PromotionError, match="no leave-one-source-out mean was recorded for \\['vgg16-linear'\\]"):
        select_candidate(client, list(runs.values()), by_loso, {k: v for k, v in parent.items() if "linear" not in k})


def test_selection_refuses_a_variant_without_its_validation_metric(client):
    runs = [pipeline_run(wrong(10), variant="cnn-small"), pipeline_run(wrong(10), variant="vgg16-frozen", val=None)]
    with pytest.raises(PromotionError, match="no validation balanced_accuracy .* recorded for \\['vgg16-frozen'\\]"):
        select_candidate(client, runs, GATE, {})


@pytest.mark.parametrize(
    "validation, reason",
    [("failed (warn)", "data validation failed \\(warn\\) on pipeline run"), (None, "has no data validation record")],
)
def test_promote_by_hand_refuses_a_run_whose_data_failed_or_was_never_validated(client, validation, reason):
    # `covid-xray promote --run` goes through promote_run: perfect numbers, but the pipeline's data check failed
    version, decision = promote_run(client, pipeline_run(wrong(0), validation=validation), GATE)
    assert not decision.promote and re.search(reason, decision.reasons[-1]) and alias(client, CHAMPION) is None
    assert client.get_model_version(NAME, version).tags["promotion_decision"] != "promoted"


def test_decide_refuses_invalid_data_and_nan_metrics():
    assert not decide(
        {"accuracy": 1, "sensitivity": 1, "specificity": 1}, GATE, data_problem="data validation failed"
    ).promote
    assert not decide({"accuracy": float("nan"), "sensitivity": 1, "specificity": 1}, GATE).promote
    lower = PromotionConfig(model_name=NAME, min_accuracy=0.8, min_sensitivity=0, min_specificity=0, use_lower_ci=True)
    assert not decide({"accuracy": 0.85, "accuracy_ci_low": 0.7, "sensitivity": 1, "specificity": 1}, lower).promote


def test_history_command_prints_every_move_with_reasons_and_numbers(client, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from covid_xray.cli import main

    for variable, folder in (
        ("COVID_XRAY_HOME", "home"),
        ("ZENML_CONFIG_PATH", "home/zenml"),
        ("ZENML_REPOSITORY_PATH", "home"),
    ):
        monkeypatch.setenv(variable, str(tmp_path / folder))

    first, _ = promote_run(client, pipeline_run(wrong(60)), GATE)
    promote_run(client, pipeline_run(wrong(10, 1)), GATE, scorer=Scorer(wrong(60)))
    result = CliRunner().invoke(main, ["history", "--model-name", NAME])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert [line.split()[1] for line in lines if line[:4].isdigit()] == ["promote", "promote"]
    assert "version 1 -> version 2" in result.output and "outcome=better" in result.output
    assert "comparison better: balanced_accuracy 0.950 vs champion's 0.700" in result.output
    assert "now: champion = version 2, previous = version 1, challenger = none" in lines
    assert lines[-1] == "zenml: no model version mirrors an MLflow version"  # no pipeline or CLI move made one
    assert json.loads(client.get_registered_model(NAME).tags[sorted(client.get_registered_model(NAME).tags)[0]])


def brightness_model(threshold: float) -> keras.Model:
    """Predicts covid when the mean pixel value is above `threshold`."""
    model = tiny_model()
    weights = np.zeros((64, 2), np.float32)
    weights[:, 0] = 0.5 / 64
    model.layers[-1].set_weights([weights, np.array([-threshold * 0.5, 0], np.float32)])
    return model


def test_champion_is_rescored_through_its_own_recorded_transform_not_the_candidates(client, tmp_path):
    """Champion and candidate: the same weights, trained under different preprocessing. Through its own recorded
    transform the champion is right on every image; fed the candidate's (histogram-equalized) pixels it would be at
    chance like the candidate, which would then pass as non-inferior. No scorer is injected: the real Predictor."""
    rng = np.random.default_rng(0)
    files, truth = [], []
    for i in range(60):
        covid = i % 2 == 0
        pixels = rng.uniform(150, 255, (16, 16)) if covid else rng.uniform(0, 100, (16, 16))
        files.append(str(tmp_path / f"test-{i:02d}.png"))
        Image.fromarray(pixels.astype(np.uint8), mode="L").save(files[-1])
        truth.append("covid" if covid else "normal")
    keys, truth = [f"{i:064x}" for i in range(60)], np.asarray(truth)

    def evaluated_run(transform: InferenceTransform) -> str:
        model = brightness_model(128)
        proba = model.predict(transform.batch([transform(f) for f in files]), verbose=0)
        with mlflow.start_run():
            mlflow.set_tag("validation", "passed")
            mlflow.log_text(pd.DataFrame({"sha256": keys, "split": "test"}).to_csv(index=False), "data/manifest.csv")
            with mlflow.start_run(nested=True) as run:
                correct = OperatingPoint().labels(proba, CLASSES) == truth
                covid = truth == "covid"
                mlflow.log_metrics(
                    {
                        "test_accuracy": correct.mean(),
                        "test_sensitivity": correct[covid].mean(),
                        "test_specificity": correct[~covid].mean(),
                        "val_balanced_accuracy": 0.8,
                    }
                )
                frame = pd.DataFrame(
                    {
                        "sha256": keys,
                        "path": files,
                        "source": "s",
                        "label": truth,
                        "group_id": keys,
                        "p_covid": proba[:, 0],
                        "p_normal": proba[:, 1],
                        "predicted": OperatingPoint().labels(proba, CLASSES),
                    }
                )
                mlflow.log_text(frame.to_csv(index=False), "evaluation/test_predictions.csv")
                mlflow.set_tag("model_uri", log_model(model, transform, OperatingPoint(), CLASSES, files[0]))
        return run.info.run_id

    lenient = GATE.model_copy(
        update={
            "min_accuracy": 0.0,
            "min_sensitivity": 0.0,
            "min_specificity": 0.0,
            "min_compared_images": 50,
            "min_compared_patients": 30,
        }
    )
    promote_run(client, evaluated_run(PLAIN), lenient)
    equalized = InferenceTransform(8, PreprocessConfig(equalize="hist"), min_side=8)
    candidate = evaluated_run(equalized)
    version, decision = promote_run(client, candidate, lenient)
    assert not decision.promote and champion(client) == "1", decision.reasons
    assert "inferior" in decision.summary, decision.summary
