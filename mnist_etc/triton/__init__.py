"""Triton Inference Server: the model repository, its configs, the embedded server and a client.

- `repository`: the model repository on disk (versions, export records) and the served model's default name and
  location (`DEFAULT_MODEL_NAME`, `DEFAULT_REPOSITORY`), stated here once;
- `model_config`: `TritonModelConfig`, what config.pbtxt sets, validated, and its pbtxt / JSON forms;
- `python_model`: the Python-backend model that runs the ONNX file with ONNX Runtime (loaded by Triton);
- `runtime_env`: what the pip-shipped tritonserver needs to run here (backend directory, libraries, PATH);
- `server`: the embedded tritonserver process bound to 127.0.0.1 (`ServerConfig`, `TritonServer`);
- `client`: `ClassifierClient`, the classifier's scores over gRPC.
"""
