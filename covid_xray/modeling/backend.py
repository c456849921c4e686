"""The one place that knows which framework runs Keras: TensorFlow (the default), JAX or PyTorch, as chosen by the
KERAS_BACKEND environment variable before Keras is imported.

Everything else in the library is plain Keras 3. What Keras leaves to the backend is here: the accelerators there are,
training spread over several of them (`MirroredStrategy` under TensorFlow, `keras.distribution.DataParallel` under
JAX), and the gradient of a function with respect to its input (Grad-CAM): `tf.GradientTape`, `jax.grad`,
`torch.autograd`. Each framework is imported only when it is the one Keras runs on.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Callable, Iterator
from typing import Any

import keras
import numpy as np

# The device type replicated over by `distribution`: tests set "CPU" with several CPU devices standing in for GPUs
# (TensorFlow: logical devices; JAX: XLA_FLAGS=--xla_force_host_platform_device_count=N).
ACCELERATOR = "GPU"
JAX_GPU_PLATFORMS = ("gpu", "cuda", "rocm")


def name() -> str:
    """The framework Keras runs on: tensorflow, jax or torch."""
    return str(keras.backend.backend())


def _framework() -> Any:
    return importlib.import_module({"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}[name()])


def _jax_devices(kind: str) -> list[Any]:
    """JAX's devices of `kind` ("GPU" or "CPU"), without JAX's error when a platform is absent."""
    devices = _framework().devices() if kind == "GPU" else _framework().devices("cpu")
    wanted = JAX_GPU_PLATFORMS if kind == "GPU" else ("cpu",)
    return [device for device in devices if device.platform in wanted]


def accelerators() -> list[str]:
    """The names of the GPUs the framework sees (empty on a CPU-only machine)."""
    backend = name()
    if backend == "tensorflow":
        tf = _framework()
        gpus = tf.config.list_physical_devices("GPU")
        return [tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name) for gpu in gpus]
    if backend == "jax":
        return [str(device.device_kind) for device in _jax_devices("GPU")]
    torch = _framework()
    return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]


def replicas() -> int:
    """How many devices `distribution` trains on."""
    if name() == "tensorflow":
        return max(1, len(_framework().config.list_logical_devices(ACCELERATOR)))
    if name() == "jax":
        return max(1, len(_jax_devices(ACCELERATOR)))
    return 1


@contextlib.contextmanager
def distribution() -> Iterator[None]:
    """Build and train inside this to use every accelerator: data parallel over them when there are several, else the
    framework's default placement (the one GPU, or the CPU). No code or config change either way."""
    backend = name()
    if backend == "tensorflow":
        tf = _framework()
        devices = [device.name for device in tf.config.list_logical_devices(ACCELERATOR)]
        strategy = tf.distribute.MirroredStrategy(devices) if len(devices) > 1 else tf.distribute.get_strategy()
        with strategy.scope():
            yield
        return
    if backend == "jax" and replicas() > 1:
        devices = [f"{ACCELERATOR.lower()}:{device.id}" for device in _jax_devices(ACCELERATOR)]
        previous = keras.distribution.distribution()
        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
        try:
            yield
        finally:
            keras.distribution.set_distribution(previous)
        return
    yield  # one device (torch: Keras places the model on the GPU when there is one)


def value_and_gradient(function: Callable[[Any], Any], x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(function(x), d sum(function(x)) / dx) as NumPy arrays: `function` maps a backend tensor to a backend tensor
    (Keras layers and keras.ops), `x` is where the gradient is taken."""
    backend = name()
    if backend == "tensorflow":
        tf = _framework()
        tensor = tf.convert_to_tensor(x)
        with tf.GradientTape() as tape:
            tape.watch(tensor)
            value = function(tensor)
            total = tf.reduce_sum(value)
        return np.asarray(value), np.asarray(tape.gradient(total, tensor))
    if backend == "jax":
        jax = _framework()

        def total_and_value(tensor: Any) -> tuple[Any, Any]:
            value = function(tensor)
            return value.sum(), value

        (_, value), gradient = jax.value_and_grad(total_and_value, has_aux=True)(jax.numpy.asarray(x))
        return np.asarray(value), np.asarray(gradient)
    tensor = keras.ops.convert_to_tensor(np.asarray(x)).requires_grad_(True)  # on Keras' device
    value = function(tensor)
    value.sum().backward()
    return value.detach().cpu().numpy(), tensor.grad.detach().cpu().numpy()
