"""Import TensorFlow with its start-up noise (oneDNN, CUDA, TensorRT banners) kept out of the user's way.

Every module of the library takes TensorFlow from here: `from mnist_etc.tf_quiet import tf`.
"""
import logging
import os
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")  # no GPU here; stops the CUDA probing messages
warnings.filterwarnings("ignore", module="tensorflow_probability")
warnings.filterwarnings("ignore", category=DeprecationWarning)

import tensorflow as tf  # noqa: E402

tf.get_logger().setLevel(logging.ERROR)
try:
    import absl.logging

    absl.logging.set_verbosity(absl.logging.ERROR)
except ImportError:  # pragma: no cover - absl comes with TensorFlow
    pass

__all__ = ["tf"]
