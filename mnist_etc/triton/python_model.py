"""Triton Python-backend model serving `model.onnx` (next to this file) with ONNX Runtime.

Copied by `mnist_etc.triton.repository` into each version directory of a `backend: "python"` model as
`model.py`. It runs inside Triton's Python stub, so it imports only numpy, onnxruntime and Triton's
`triton_python_backend_utils`, never mnist_etc. Requests batched by Triton's dynamic batcher are
concatenated into one ONNX Runtime call and split back, so batching pays off as it does with the
onnxruntime backend.

ONNX Runtime's idle intra-op threads do not spin (`session.intra_op.allow_spinning` 0): a spinning pool
holds a core between calls that Triton's HTTP/gRPC threads, other instances and a client on the same machine
need (measured in benchmarks/bench_efficiency.py). The model-config parameter `allow_spinning: "1"` restores
ONNX Runtime's default.

With MNIST_ETC_BACKEND_PROFILE=DIR in the server's environment, each instance adds up the time of each phase
of `execute` (reading the inputs, forming the batch, the ONNX Runtime call, building the responses) and
writes them to DIR/<instance>-<pid>.json when it is unloaded.
"""
import json
import os
import time

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils

PROFILE_ENV = "MNIST_ETC_BACKEND_PROFILE"
PHASES = ("inputs", "batch", "run", "outputs")


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
        spin = "1" if params.get("allow_spinning", "0").strip() == "1" else "0"   # "1": ORT's own default
        options.add_session_config_entry("session.intra_op.allow_spinning", spin)
        options.add_session_config_entry("session.inter_op.allow_spinning", spin)
        providers = ["CPUExecutionProvider"]
        if args.get("model_instance_kind") == "GPU" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": int(args["model_instance_device_id"])}))
        # From Triton's arguments rather than __file__: the file then also works as a Python-based backend
        # (<backend dir>/onnxruntime/model.py), which the tests use to load the onnxruntime config.
        path = os.path.join(args["model_repository"], args["model_version"], "model.onnx")
        self.session = ort.InferenceSession(path, sess_options=options, providers=providers)
        self.profile_dir = os.environ.get(PROFILE_ENV) or None
        self.profile_name = f"{args.get('model_instance_name', 'instance')}-{os.getpid()}"
        self.profile = {"executes": 0, "requests": 0, "images": 0, "seconds": dict.fromkeys(PHASES, 0.0)}

    def execute(self, requests):
        t0 = time.perf_counter()
        arrays = [pb_utils.get_input_tensor_by_name(r, self.input_name).as_numpy() for r in requests]
        t1 = time.perf_counter()
        sizes = [len(a) for a in arrays]
        batch = arrays[0] if len(arrays) == 1 else np.concatenate(arrays)
        t2 = time.perf_counter()
        logits = self.session.run([self.output_name], {self.input_name: batch})[0]
        t3 = time.perf_counter()
        responses = []
        start = 0
        for n in sizes:
            out = pb_utils.Tensor(self.output_name, np.ascontiguousarray(logits[start:start + n]))
            responses.append(pb_utils.InferenceResponse(output_tensors=[out]))
            start += n
        if self.profile_dir is not None:
            p, s = self.profile, self.profile["seconds"]
            p["executes"] += 1
            p["requests"] += len(requests)
            p["images"] += len(batch)
            s["inputs"] += t1 - t0
            s["batch"] += t2 - t1
            s["run"] += t3 - t2
            s["outputs"] += time.perf_counter() - t3
        return responses

    def finalize(self):
        if self.profile_dir is not None:
            path = os.path.join(self.profile_dir, f"{self.profile_name}.json")
            with open(path + ".tmp", "w") as f:
                json.dump(self.profile, f)
            os.replace(path + ".tmp", path)
