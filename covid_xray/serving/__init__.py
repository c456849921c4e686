"""The model that ships: the MLflow pyfunc that answers image files with the transform, operating point and
out-of-distribution record it was evaluated with (`pyfunc`), the Predictor that loads it (`predict`), and what
`covid-xray predict` reads and writes (`predict_io`).

May import: `labels`, `sources`, `config`, `data`, `modeling`, `evaluation`.
"""
