"""ZenML materializers for Keras 3 models (.keras files) and splits by reference (.json: keys, labels, sources,
groups and the image cache's identity; no pixels, which stay in the content-addressed image cache).

ZenML's TensorFlow integration does not support Keras 3, so models are stored in Keras' own format.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any, ClassVar

import keras
from zenml.enums import ArtifactType
from zenml.io import fileio
from zenml.materializers.base_materializer import BaseMaterializer

from covid_xray.data.stream import Split


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
    FILENAME = "split.json"

    def load(self, data_type: type[Any]) -> Split:
        with fileio.open(os.path.join(self.uri, self.FILENAME), "r") as handle:
            return Split.from_record(json.load(handle))

    def save(self, split: Split) -> None:
        with fileio.open(os.path.join(self.uri, self.FILENAME), "w") as handle:
            json.dump(split.to_record(), handle)
