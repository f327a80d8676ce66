"""The served model's tensor contract, importable without TensorFlow (Triton, ONNX Runtime and client
code only need these names and shapes)."""

IMAGE_SHAPE = (28, 28, 1)
N_CLASSES = 10
INPUT_NAME = "input"
OUTPUT_NAME = "logits"
DEFAULT_OPSET = 17
SUPPORTED_OPSETS = range(13, 19)     # ONNX opsets tf2onnx and the served ONNX Runtime both handle here


def check_opset(opset: object) -> int:
    """The opset, or one sentence naming what is accepted (checked before TensorFlow is imported)."""
    from mnist_etc.errors import UserError

    if isinstance(opset, bool) or opset not in SUPPORTED_OPSETS:
        raise UserError(f"opset must be in {SUPPORTED_OPSETS.start}..{SUPPORTED_OPSETS.stop - 1}, got {opset!r}.")
    return opset
