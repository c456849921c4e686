"""Source-adversarial training: a source head behind gradient reversal (Ganin & Lempitsky 2015, "Unsupervised domain
adaptation by backpropagation").

The source head learns to tell the training sources apart from the classifier's last hidden features; between the
two, `GradientReversal` passes the features on unchanged and multiplies the gradient flowing back by -λ, so the same
step that trains the source head trains the features to hide the source. λ is 0 during a warm-up, then follows
Ganin's curve 2/(1+exp(-10p))-1 up to the configured weight. Written with keras.ops only (`stop_gradient`), it runs
the same under TensorFlow, JAX and PyTorch. The source head exists only while training: the model that is evaluated,
logged and served is the classifier alone.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers, ops

from ..config import AdversarialConfig

PROBABILITIES, SOURCE = "probabilities", "source"  # the training model's two outputs


def reversal_strength(step, weight: float, warmup_steps: int, ramp_steps: int):
    """λ after `step` training steps: 0 during the warm-up, then weight × (2/(1+exp(-10p)) - 1), p rising from 0 to 1
    over `ramp_steps` (NumPy numbers or backend tensors)."""
    progress = ops.clip((ops.cast(step, "float32") - warmup_steps) / max(ramp_steps, 1), 0.0, 1.0)
    return weight * (2.0 / (1.0 + ops.exp(-10.0 * progress)) - 1.0)


class GradientReversal(layers.Layer):
    """Identity forward; backward, the gradient times -λ, λ from `reversal_strength` of the training steps taken."""

    def __init__(self, weight: float = 1.0, warmup_steps: int = 0, ramp_steps: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.weight, self.warmup_steps, self.ramp_steps = float(weight), int(warmup_steps), int(ramp_steps)
        self.steps = self.add_weight(shape=(), initializer="zeros", trainable=False, name="steps", dtype="float32")

    def strength(self):
        return reversal_strength(self.steps, self.weight, self.warmup_steps, self.ramp_steps)

    def call(self, inputs, training: bool = False):
        strength = self.strength()
        if training:
            self.steps.assign(self.steps + 1.0)
        frozen = ops.stop_gradient(inputs)
        # inputs - frozen is exactly 0, so the value is `inputs`; its gradient is -strength.
        return frozen - ops.cast(strength, inputs.dtype) * (inputs - frozen)

    def get_config(self) -> dict:
        return super().get_config() | {
            "weight": self.weight,
            "warmup_steps": self.warmup_steps,
            "ramp_steps": self.ramp_steps,
        }


def hidden_features(model: keras.Model):
    """The classifier's last hidden features, which the source head reads: the input of its output layer. For a VGG16
    model trained on images that is inside its head (after the pooled backbone features), so that the reversed
    gradient reaches the head's hidden layer even while the backbone is frozen."""
    if "head" in [layer.name for layer in model.layers]:
        head = model.get_layer("head")
        return keras.Model(head.inputs, head.layers[-2].output)(model.get_layer("pool").output)
    return model.layers[-2].output


def with_source_head(
    model: keras.Model, n_sources: int, config: AdversarialConfig, steps_per_epoch: int
) -> keras.Model:
    """A training model over `model`'s layers with two outputs: the class probabilities and, behind gradient reversal,
    the source probabilities. Training it trains `model`."""
    reversal = GradientReversal(
        config.weight, config.warmup_epochs * steps_per_epoch, config.ramp_epochs * steps_per_epoch, name="reversal"
    )
    x = layers.Dense(config.units, activation="relu", name="source_hidden")(reversal(hidden_features(model)))
    source = layers.Dense(n_sources, activation="softmax", dtype="float32", name=SOURCE)(x)
    outputs = {PROBABILITIES: model.outputs[0], SOURCE: source}
    return keras.Model(model.inputs, outputs, name=f"{model.name}_adversarial")


# A source loss that grows this many times over its warm-up value: the reversed gradient won by inflating the features
# rather than by hiding the source.
DIVERGENCE_FACTOR = 10.0


def divergence(history: dict[str, list[float]]) -> str | None:
    """A warning when a source-adversarial training's source loss (any member's) ran away: the features grew until
    the source head could no longer keep up, and early stopping kept an epoch from before (the model is then close
    to one trained for those few epochs); None when it stayed within `DIVERGENCE_FACTOR` of its first epoch."""
    for name, losses in sorted(history.items()):
        if not name.endswith(f"{SOURCE}_loss") or "val_" in name or len(losses) < 2:
            continue
        if max(losses) > DIVERGENCE_FACTOR * losses[0]:
            peak = int(np.argmax(losses))
            return (
                f"adversarial divergence: {name} rose from {losses[0]:.2f} to {max(losses):.1f} by epoch {peak + 1}; "
                "early stopping kept the epoch with the best validation loss of the classifier"
            )
    return None


def source_index(train_sources: np.ndarray, sources: np.ndarray) -> np.ndarray:
    """Each row's source as an index into the training sources (sorted); a source the training rows lack (a
    validation-only source) is 0: its source loss is reported, never trained on."""
    known = {name: i for i, name in enumerate(sorted(set(np.asarray(train_sources).tolist())))}
    return np.array([known.get(name, 0) for name in np.asarray(sources).tolist()], np.int32)
