"""The served model's tensor contract, importable without TensorFlow (Triton, ONNX Runtime and client
code only need these names and shapes)."""

IMAGE_SHAPE = (28, 28, 1)
N_CLASSES = 10
INPUT_NAME = "input"
OUTPUT_NAME = "logits"
