"""Triton Python-backend model serving `model.onnx` (next to this file) with ONNX Runtime.

Copied by `mnist_etc.triton.repository` into each version directory of a `backend: "python"` model as
`model.py`. It runs inside Triton's Python stub, so it imports only numpy, onnxruntime and Triton's
`triton_python_backend_utils`, never mnist_etc. Requests batched by Triton's dynamic batcher are
concatenated into one ONNX Runtime call and split back, so batching pays off as it does with the
onnxruntime backend.
"""
import json
import os

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.input_name = config["input"][0]["name"]
        self.output_name = config["output"][0]["name"]
        params = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
        options = ort.SessionOptions()
        # Same parameter names as Triton's onnxruntime backend, so one typed config drives both.
        for key, attr in (("intra_op_thread_count", "intra_op_num_threads"),
                          ("inter_op_thread_count", "inter_op_num_threads")):
            if params.get(key, "0").strip() not in ("", "0"):
                setattr(options, attr, int(params[key]))
        providers = ["CPUExecutionProvider"]
        if args.get("model_instance_kind") == "GPU" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": int(args["model_instance_device_id"])}))
        # From Triton's arguments rather than __file__: the file then also works as a Python-based backend
        # (<backend dir>/onnxruntime/model.py), which the tests use to load the onnxruntime config.
        path = os.path.join(args["model_repository"], args["model_version"], "model.onnx")
        self.session = ort.InferenceSession(path, sess_options=options, providers=providers)

    def execute(self, requests):
        arrays = [pb_utils.get_input_tensor_by_name(r, self.input_name).as_numpy() for r in requests]
        sizes = [len(a) for a in arrays]
        batch = arrays[0] if len(arrays) == 1 else np.concatenate(arrays)
        logits = self.session.run([self.output_name], {self.input_name: batch})[0]
        responses = []
        start = 0
        for n in sizes:
            out = pb_utils.Tensor(self.output_name, np.ascontiguousarray(logits[start:start + n]))
            responses.append(pb_utils.InferenceResponse(output_tensors=[out]))
            start += n
        return responses
