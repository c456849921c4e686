"""The framework Keras runs on (TensorFlow by default) without its C++ start-up lines on the user's terminal.

Loading TensorFlow's shared libraries and probing for CUDA write absl/glog lines straight to file descriptor 2 ("All log
messages before absl::InitializeLog()...", "Could not find cuda drivers", "failed call to cuInit") before any log level
applies, so neither TF_CPP_MIN_LOG_LEVEL nor Python's logging hides them. `import_keras_quietly` imports Keras (and so
its backend) and initialises its devices with descriptor 2 captured, then writes back every captured line that is not
such start-up noise: real errors still reach the user.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile

_GLOG = re.compile(r"^(?P<level>[IWEF])\d{4} [\d:.]+\s+\d+ (?P<file>[\w.]+)\.cc:\d+\]")
# Errors TensorFlow logs on every machine without a usable GPU; anything else at E or F level is kept.
_NO_GPU_ERRORS = (
    "cuda_platform",
    "cuda_executor",
    "cuda_diagnostics",
    "cuda_dnn",
    "cuda_fft",
    "cuda_blas",
    "cudart_stub",
    "gpu_device",
)
_NOISE_LINES = (
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "To enable the following instructions:",
)


def is_startup_noise(line: str) -> bool:
    if line.startswith(_NOISE_LINES):
        return True
    match = _GLOG.match(line)
    if match is None:
        return False
    return match["level"] in "IW" or (match["level"] == "E" and match["file"] in _NO_GPU_ERRORS)


def import_keras_quietly() -> None:
    """Import Keras, and with it the framework it runs on, and list the devices, with the start-up noise dropped (a
    no-op once Keras is loaded)."""
    if "keras" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import keras

            keras.distribution.list_devices()
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = [
                line for line in captured.read().decode(errors="replace").splitlines() if not is_startup_noise(line)
            ]
            if kept:
                print("\n".join(kept), file=sys.stderr)


def configure(verbose: bool) -> None:
    """Call before anything imports Keras: all of the framework's logging when `verbose`, else none of its start-up
    noise."""
    if verbose:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import_keras_quietly()
