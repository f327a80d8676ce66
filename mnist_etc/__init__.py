"""mnist-etc, the library: data, models, DP training, privacy accounting, the hill-climbing attack, metrics,
export and Triton serving/benchmark code. Imports no Prefect; every function is callable from a plain
Python shell or a test. Modules load TensorFlow only where they need it (see `mnist_etc.tf_quiet`)."""

__version__ = "0.1.0"
