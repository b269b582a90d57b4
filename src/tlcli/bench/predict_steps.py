"""Prediction at scale, timed in a fresh process: ``python -m tlcli.bench.predict_steps MODE``.

Modes (each prints one JSON object):
  throughput  ``tlcli.prediction.predict`` from JPEG files to a CSV file, against the same
              model's forward pass alone on the same images already decoded in memory (same
              batch size, same threads), alternating, the best of ``--repeats`` of each; both
              after their first batch (the forward side's warm-up), the rate with predict's
              model loading and first batch included is reported beside it
  onnx        an fp32 and an int8 ONNX model on the same batch in memory, alternating:
              images/s of each, through onnxruntime with the same threads
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def throughput(args) -> dict:
    import torch

    from tlcli.data.images import load_image
    from tlcli.prediction import decoding_workers, predict
    from tlcli.prediction.classifiers import TorchClassifier

    files = sorted(Path(args.data).rglob("*.jpg"))
    classifier = TorchClassifier(args.checkpoint, "cpu")
    decoded = [classifier.transform(load_image(f, draft_size=classifier.draft_size)) for f in files]
    batches = [torch.stack(decoded[i:i + args.batch_size]) for i in range(0, len(decoded), args.batch_size)]
    classifier(batches[0])  # warm-up: the first forward allocates and picks kernels
    forward, streamed, whole = [], [], []
    with tempfile.TemporaryDirectory() as scratch:
        for repeat in range(args.repeats):
            started = time.perf_counter()
            for batch in batches:
                classifier(batch)
            forward.append(len(files) / (time.perf_counter() - started))
            started, stamps = time.perf_counter(), []
            summary = predict([args.data], checkpoint=args.checkpoint, device="cpu", output=Path(scratch) / f"{repeat}.csv",
                              batch_size=args.batch_size, topk=5, on_batch=lambda done: stamps.append((time.perf_counter(), len(done))))
            whole.append(summary.images / (time.perf_counter() - started))
            # After the first batch, as the forward side is timed after its warm-up forward.
            streamed.append(sum(count for _, count in stamps[1:]) / (stamps[-1][0] - stamps[0][0]))
    return {"images": len(files), "threads": torch.get_num_threads(), "workers": decoding_workers(), "forward_images_per_s": max(forward),
            "predict_images_per_s": max(streamed), "forward_runs": forward, "predict_runs": streamed,
            "predict_with_model_loading_images_per_s": max(whole)}


def onnx(args) -> dict:
    import numpy as np
    import onnxruntime
    import torch

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    sessions = {name: onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
                for name, path in (("fp32", args.fp32), ("int8", args.int8))}
    name = sessions["fp32"].get_inputs()[0].name
    batch = np.random.default_rng(0).standard_normal((args.batch_size, 3, args.size, args.size)).astype(np.float32)
    rates: dict[str, list[float]] = {"fp32": [], "int8": []}
    for session in sessions.values():
        session.run(None, {name: batch})
    for repeat in range(args.repeats):
        for side in ("fp32", "int8") if repeat % 2 else ("int8", "fp32"):  # neither always goes first
            started = time.perf_counter()
            for _ in range(args.steps):
                sessions[side].run(None, {name: batch})
            rates[side].append(args.steps * args.batch_size / (time.perf_counter() - started))
    return {"threads": options.intra_op_num_threads, **{f"{side}_images_per_s": max(values) for side, values in rates.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tlcli.bench.predict_steps")
    parser.add_argument("mode", choices=["throughput", "onnx"])
    parser.add_argument("--data")
    parser.add_argument("--checkpoint")
    parser.add_argument("--fp32")
    parser.add_argument("--int8")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(json.dumps({"throughput": throughput, "onnx": onnx}[args.mode](args)))


if __name__ == "__main__":
    main()
