"""Models and how they learn: the Keras 3 builders (VGG16 transfer learning, sequential CNNs), source x label
balanced sampling and augmentation, the input batches, everything that pulls features out of a model (`features`:
the backbone feature cache, penultimate and out-of-distribution features) and `train_model`.

May import: `labels`, `sources`, `config`, `data`.
"""
