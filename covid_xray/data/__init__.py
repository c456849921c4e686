"""From files in their public layouts to splits of cached pixels: decode, preprocess and the one InferenceTransform,
the content-addressed image cache, duplicate descriptors and searches, ingest, the pre-flight, the patient split,
rebalancing, Great Expectations validation, and splits by reference (`stream`).

May import: `labels`, `sources`, `config`. Imports no model framework (Keras, TensorFlow) and no ZenML.
"""
