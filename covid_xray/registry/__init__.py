"""Which model serves, and why: the promotion gate and its evidence (`gate`), the MLflow aliases moved under a lease
with a journal and events (`aliases`), `promote_run` (`promote`) and the model card.

May import: `labels`, `sources`, `config`, `data`, `modeling`, `evaluation`, `serving`.
"""
