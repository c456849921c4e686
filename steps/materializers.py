"""ZenML materializers for Keras 3 models (.keras files) and image splits (.npz).

ZenML's TensorFlow integration does not support Keras 3, so models are stored in Keras' own format.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any, ClassVar

import keras
import numpy as np
from zenml.enums import ArtifactType
from zenml.io import fileio
from zenml.materializers.base_materializer import BaseMaterializer

from covid_xray.training import Split


class KerasMaterializer(BaseMaterializer):
    ASSOCIATED_TYPES: ClassVar[tuple[type[Any], ...]] = (keras.Model,)
    ASSOCIATED_ARTIFACT_TYPE: ClassVar[ArtifactType] = ArtifactType.MODEL
    FILENAME = "model.keras"

    def load(self, data_type: type[Any]) -> keras.Model:
        with tempfile.TemporaryDirectory() as folder:
            local = os.path.join(folder, self.FILENAME)
            fileio.copy(os.path.join(self.uri, self.FILENAME), local)
            return keras.models.load_model(local)

    def save(self, model: keras.Model) -> None:
        with tempfile.TemporaryDirectory() as folder:
            local = os.path.join(folder, self.FILENAME)
            model.save(local)
            fileio.copy(local, os.path.join(self.uri, self.FILENAME), overwrite=True)


class SplitMaterializer(BaseMaterializer):
    ASSOCIATED_TYPES: ClassVar[tuple[type[Any], ...]] = (Split,)
    ASSOCIATED_ARTIFACT_TYPE: ClassVar[ArtifactType] = ArtifactType.DATA
    FILENAME = "split.npz"

    def load(self, data_type: type[Any]) -> Split:
        with fileio.open(os.path.join(self.uri, self.FILENAME), "rb") as handle, np.load(handle) as data:
            sources = data["sources"] if "sources" in data.files else None
            return Split(data["images"], data["labels"], [str(k) for k in data["keys"]], sources)

    def save(self, split: Split) -> None:
        with fileio.open(os.path.join(self.uri, self.FILENAME), "wb") as handle:
            extra = {} if split.sources is None else {"sources": np.asarray(split.sources, dtype=str)}
            np.savez(handle, images=split.images, labels=split.labels, keys=np.asarray(split.keys, dtype=str), **extra)
