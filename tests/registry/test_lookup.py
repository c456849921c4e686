"""Resolving `--alias` / `--model-version`, and what a user is told when the model they asked for does not exist."""

import pytest
from registry_runs import GATE, NAME, pipeline_run, wrong

from covid_xray.registry.aliases import CHALLENGER, CHAMPION
from covid_xray.registry.lookup import find_version
from covid_xray.registry.promote import promote_run
from covid_xray.serving.predict import ModelNotFound


def test_nothing_registered_says_to_run_first(client):
    with pytest.raises(ModelNotFound, match=r"no model registered as covid-xray yet: run `covid-xray run` first"):
        find_version(client, "covid-xray")


def test_without_a_champion_the_challenger_is_named_with_the_gate_failures_and_both_ways_out(client):
    run_id = pipeline_run(wrong(120), variant="cnn-small")  # accuracy 0.400 < 0.600: rejected
    version, decision = promote_run(client, run_id, GATE)
    assert not decision.promote
    with pytest.raises(ModelNotFound) as raised:
        find_version(client, NAME)
    message = str(raised.value)
    assert message.startswith(f"no champion yet: version {version} (cnn-small) is registered as challenger")
    assert "not promoted: accuracy 0.400 < 0.600" in message and "no champion yet" in message
    assert "use `--alias challenger`" in message
    assert f"`covid-xray promote --run {run_id} --force REASON`" in message
    assert str(find_version(client, NAME, CHALLENGER).version) == version  # what the message names exists


def test_a_missing_alias_or_version_lists_what_exists(client):
    promoted, _ = promote_run(client, pipeline_run(wrong(10)), GATE)
    with pytest.raises(ModelNotFound, match=rf"holds the alias 'staging': versions {promoted}; aliases champion → v1"):
        find_version(client, NAME, "staging")
    with pytest.raises(ModelNotFound, match=rf"{NAME} has no version 7: versions {promoted};"):
        find_version(client, NAME, version="7")
    assert str(find_version(client, NAME).version) == promoted == str(find_version(client, NAME, CHAMPION).version)
    assert str(find_version(client, NAME, version=promoted).version) == promoted
