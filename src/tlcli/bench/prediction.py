"""Target 6, prediction at scale: ``tlcli predict``'s throughput against the model alone, its memory
as the number of images grows twentyfold, and an int8 ONNX export against the fp32 one."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tlcli.bench.common import BenchSettings, Row, json_of, tlcli_train
from tlcli.core.errors import TlcliError

RSS_IMAGES = (1_000, 20_000)
INT8_DIGITS = 1_000  # digits of the int8 comparison's run (30 % test: 300 images)
INT8_SIZE = 224  # the digits written at Lite0's own input size


def _tree_rss(pid: int) -> int:
    """Resident bytes of a process and all its descendants (the decoding workers)."""
    total, pending = 0, [pid]
    while pending:
        current = pending.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            total += int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:"))) * 1024
            for task in Path(f"/proc/{current}/task").iterdir():
                pending += [int(child) for child in (task / "children").read_text().split()]
        except (OSError, StopIteration, ValueError):  # a process that ended between two reads
            continue
    return total


def _peak_rss(arguments: list[str]) -> tuple[int, float]:
    """(peak resident bytes of the process tree, sampled every 20 ms; wall seconds)."""
    started = time.perf_counter()
    with tempfile.TemporaryFile() as errors:  # a file, not a pipe: the command never waits for it to be read
        job = subprocess.Popen([sys.executable, *arguments], stdout=subprocess.DEVNULL, stderr=errors)
        peak = 0
        while job.poll() is None:
            peak = max(peak, _tree_rss(job.pid))
            time.sleep(0.02)
        errors.seek(0)
        if job.returncode:
            raise TlcliError(f"benchmark step '{' '.join(arguments[:3])}' failed: {errors.read().decode().strip().splitlines()[-1:]}")
    return peak, time.perf_counter() - started


def _small_jpegs(root: Path, count: int) -> Path:
    """``count`` real digits as 64x64 JPEGs in one folder (cheap to write and decode)."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(0)
    tiles = [Image.fromarray((image * 255 / 16).astype(np.uint8), "L").resize((64, 64)).convert("RGB") for image in digits.images]
    for index in range(count):
        target = root / f"{index // 1000:03d}" / f"{index:05d}.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        tiles[int(rng.integers(len(tiles)))].save(target, quality=90)
    return root


def predict_throughput(work: Path, s: BenchSettings, checkpoint: str) -> Row:
    _, result = json_of(["-m", "tlcli.bench.predict_steps", "throughput", "--data", str(work / "phase1"), "--checkpoint", checkpoint,
                         "--batch-size", str(s.batch_size)])
    ratio = result["predict_images_per_s"] / result["forward_images_per_s"]
    return Row("6", f"tlcli predict, {result['images']} JPEGs on disk -> CSV ({s.arch})", "forward pass on tensors in memory",
               result["forward_images_per_s"], result["predict_images_per_s"], "img/s", ratio, ">= 0.85x", ratio >= 0.85, result)


def predict_memory(work: Path, s: BenchSettings) -> Row:
    few, many = RSS_IMAGES
    images = _small_jpegs(work / "rss", many)
    listed = {count: work / f"rss-{count}.txt" for count in RSS_IMAGES}
    paths = sorted(str(p) for p in images.rglob("*.jpg"))
    for count, target in listed.items():
        target.write_text("".join(f"{p}\n" for p in paths[:count]))
    run = work / "runs" / "rss"
    json_of(["-m", "tlcli", "train", "--data", "digits", "--arch", "simple_cnn", "--epochs", "1", "--out", str(run), "--overwrite", "--json"])
    peaks = {}
    for count in RSS_IMAGES:
        peaks[count] = _peak_rss(["-m", "tlcli", "predict", "--from-list", str(listed[count]), "-c", str(run), "--csv",
                                  "--output", str(work / f"rss-{count}.csv"), "--batch-size", str(s.batch_size)])
    ratio = peaks[many][0] / peaks[few][0]
    return Row("6", f"tlcli predict peak memory (process and workers), {many:,} vs {few:,} images (simple_cnn, 64x64 JPEGs)",
               f"{few:,} images", peaks[few][0] / 2**20, peaks[many][0] / 2**20, "MiB", ratio, "<= 1.1x", ratio <= 1.1,
               {"seconds": {count: round(peak[1], 1) for count, peak in peaks.items()}})


def int8_export(work: Path, s: BenchSettings) -> list[Row]:
    """EfficientNet-Lite0 (real ImageNet weights) with its head fitted on digits, exported fp32 and int8."""
    from tlcli.bench.datasets import write_digits
    from tlcli.bench.quality import ARCH, install_lite0_weights

    install_lite0_weights(work / "hf")
    env = {"HF_HOME": str(work / "hf"), "HF_HUB_OFFLINE": "1"}
    data = write_digits(work / "int8-digits", size=INT8_SIZE, count=INT8_DIGITS)
    run = work / "runs" / "int8"
    json_of(["-m", "tlcli", "train", "--data", str(data), "--arch", ARCH, "--val-split", "0.2", "--test-split", "0.3",
             "--out", str(run), "--overwrite", "--json"], env=env)
    json_of(["-m", "tlcli", "export", str(run), "--out", str(run / "fp32.onnx"), "--json"], env=env)
    _, exported = json_of(["-m", "tlcli", "export", str(run), "--quantize", "int8", "--out", str(run / "int8.onnx"), "--json"], env=env)
    _, speed = json_of(["-m", "tlcli.bench.predict_steps", "onnx", "--fp32", str(run / "fp32.onnx"), "--int8", str(run / "int8.onnx"),
                        "--size", str(INT8_SIZE), "--batch-size", str(s.batch_size)])
    q = exported["quantized"]
    ratio = speed["int8_images_per_s"] / speed["fp32_images_per_s"]
    details = {**q, "threads": speed["threads"], "arch": ARCH, "data": f"{INT8_DIGITS} digits at {INT8_SIZE}x{INT8_SIZE}, 50/20/30"}
    return [
        Row("6", f"int8 ONNX vs fp32 ONNX images/s ({ARCH}, batch {s.batch_size})", "fp32 ONNX", speed["fp32_images_per_s"],
            speed["int8_images_per_s"], "img/s", ratio, ">= 1.3x", ratio >= 1.3, details),
        Row("6", f"int8 test accuracy vs fp32 ({q['images']} test images)", "fp32 ONNX", q["fp32_accuracy"], q["int8_accuracy"], "acc",
            q["int8_accuracy"] / q["fp32_accuracy"], "within 1 point", abs(q["accuracy_drop_points"]) <= 1.0, details),
    ]


def prediction_rows(work: Path, s: BenchSettings, checkpoint: str | None) -> list[Row]:
    if checkpoint is None:  # target 1's run, else target 5's, else one made here
        checkpoint = str(work / "runs" / "predict" / "best.pt")
    if not Path(checkpoint).exists():
        json_of(tlcli_train(work / "phase1", Path(checkpoint).parent, s, "--freeze", "backbone", "--epochs", "1"))
    return [predict_throughput(work, s, checkpoint), predict_memory(work, s), *int8_export(work, s)]
