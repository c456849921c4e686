"""How good a trained model is, and how sure we are: the decision rule at the operating point, calibration,
metrics with patient-group intervals, out-of-distribution detection, Grad-CAM and the shortcut check, the one
`evaluate` that the evaluate step and every leave-one-source-out fold run, leave-one-source-out, the paired
comparison with a champion, and reading runs back from MLflow (`report`).

May import: `labels`, `sources`, `config`, `data`, `modeling`.
"""
