"""Out-of-distribution flags at prediction: is an image unlike the ones the model was trained on?

The model's own features of the training split (`feature_model`: the pooled VGG16 backbone features; for a CNN the
global average of every conv block's output, concatenated) are summarised by a mean and a Ledoit-Wolf shrunk covariance
(scikit-learn); an image's distance is its Mahalanobis distance to them. (The CNN's last hidden Dense layer was tried
first: on the shared data it placed uniform noise closer to the training images than real test X-rays, 4.6 against a
threshold of 8.1; the conv-block averages put noise at 19.5 against 8.0.) The threshold is the distance that the
configured fraction (`evaluation.ood_fraction`, default 1%) of the validation images exceeds, so about that fraction of
in-distribution images is flagged by construction, and an image far from everything seen in training (another hospital's
scanner, a photo of a screen, noise) is flagged instead of answered silently. The record is an artifact of the logged
model (`serving.pyfunc.log_model`), like its transform and operating point.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.covariance import LedoitWolf

from ..config import ModelConfig, RunConfig
from ..data.dataset import image_cache
from ..data.stream import Split
from ..modeling.features import split_features

OOD_VERSION = 1
METHOD = "mahalanobis-ledoit-wolf"


@dataclass(frozen=True, eq=False)
class OODDetector:
    location: np.ndarray  # (d,) mean training feature vector
    precision: np.ndarray  # (d, d) inverse of the shrunk training covariance
    threshold: float  # distances above it are flagged
    fraction: float  # the configured share of validation images above the threshold
    n_train: int
    n_val: int
    val_flag_rate: float  # the share of validation images actually above it (ties and small splits differ a little)

    @classmethod
    def fit(cls, train_features: np.ndarray, val_features: np.ndarray, fraction: float) -> OODDetector:
        """Fit on the training split's features, set the threshold on the validation split's."""
        train_features, val_features = (np.asarray(f, dtype=np.float64) for f in (train_features, val_features))
        if len(train_features) < 2 or len(val_features) < 1:
            raise ValueError(
                f"out-of-distribution detection needs at least 2 training and 1 validation image, got "
                f"{len(train_features)} and {len(val_features)}"
            )
        if not 0.0 < fraction < 1.0:
            raise ValueError(f"ood fraction must be in (0, 1), got {fraction}")
        estimator = LedoitWolf().fit(train_features)
        val_distance = np.sqrt(estimator.mahalanobis(val_features))
        threshold = float(np.quantile(val_distance, 1.0 - fraction))
        return cls(
            estimator.location_,
            estimator.get_precision(),
            threshold,
            float(fraction),
            len(train_features),
            len(val_features),
            float(np.mean(val_distance > threshold)),
        )

    def distance(self, features: np.ndarray) -> np.ndarray:
        """Mahalanobis distance of each feature row to the training features."""
        centred = np.asarray(features, dtype=np.float64).reshape(len(features), -1) - self.location
        return np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", centred, self.precision, centred), 0.0))

    def flags(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(distance, flagged) of each feature row."""
        distance = self.distance(features)
        return distance, distance > self.threshold

    def flag_rate(self, features: np.ndarray) -> float:
        return float(np.mean(self.flags(features)[1])) if len(features) else float("nan")

    def summary(self) -> dict:
        """What the record says, without its arrays (logged model metadata, MLflow params)."""
        return {
            "version": OOD_VERSION,
            "method": METHOD,
            "threshold": self.threshold,
            "fraction": self.fraction,
            "n_train": self.n_train,
            "n_val": self.n_val,
            "val_flag_rate": self.val_flag_rate,
            "features": int(self.location.shape[0]),
        }

    def save(self, path: str | Path) -> None:
        summary = self.summary()
        arrays: dict[str, Any] = {"location": self.location, "precision": self.precision}
        arrays |= {k: np.asarray(v) for k, v in summary.items() if k != "method"}
        np.savez(path, **arrays)

    @classmethod
    def load(cls, path: str | Path) -> OODDetector:
        """The record a model was logged with; ValueError when it is not one this code reads."""
        with np.load(path) as data:
            version = int(data["version"]) if "version" in data else None
            if version != OOD_VERSION:
                raise ValueError(f"{path}: out-of-distribution record version {version}, this code reads {OOD_VERSION}")
            return cls(
                data["location"],
                data["precision"],
                float(data["threshold"]),
                float(data["fraction"]),
                int(data["n_train"]),
                int(data["n_val"]),
                float(data["val_flag_rate"]),
            )


def fit_detector(
    model, model_config: ModelConfig, train: Split, val_features: np.ndarray, config: RunConfig
) -> OODDetector:
    """The detector of a trained model: fitted on the `train` split's features, threshold on the validation split's
    (`val_features`), at the run config's `evaluation.ood_fraction`."""
    features = split_features(
        model, model_config, train, image_cache(config).key, config.data.image_size, config.data.cache_dir
    )
    return OODDetector.fit(features, val_features, config.evaluation.ood_fraction)
