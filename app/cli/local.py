"""zoo-predict in-process: the service's own decoding, preprocessing, checkpoint and model call,
one worker process per core.

The model is loaded here as the service loads it (validated, digest checked) and run through
the service's :class:`~app.engine.predictor.Predictor`. Workers are forked once it is loaded,
before any tensor operation has started a thread, so importing torch (about 2 s of CPU, more
than labelling ten thousand small PNGs) is paid once, not once per worker; each worker reads,
decodes and classifies whole batches with one torch thread. One thread each, not a pool of
threads in one process: OpenMP threads sharing two cores with decoding processes (and with
whatever else runs there) wait on each other at every barrier, which made runs 2-5x slower.
"""

import multiprocessing
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from app.cli.rows import Row, Stopped, read_file
from app.digits.decode import ImageLimits
from app.digits.sandbox import guarded_digits
from app.serving.verdict import judge

# The service's image limits, at their defaults.
LIMITS = ImageLimits()
Decoded = tuple[np.ndarray, dict[int, str]]  # the usable files' digits; the others' errors


@dataclass(frozen=True)
class Job:
    """What it takes to label files with one model."""

    model: str
    weights_dir: Path
    batch_size: int


@dataclass
class Model:
    """The checkpoint's model behind the service's model call, and its labels."""

    predictor: Any
    labels: list[str]
    refuse_at: float | None  # the checkpoint's operating point (app/serving/verdict.py)


_model: list[Model] = []  # the loaded model: this process's, or inherited by a fork


def _start_worker(job: Job | None = None) -> None:
    import cv2

    cv2.setNumThreads(1)  # a process per core already
    if job is not None:
        _model[:] = [load(job)]


def decode(paths: list[str]) -> Decoded:
    """A batch of files -> the usable ones' 28x28 digits, in order, and the others' errors."""
    errors, datas, readable = {}, [], []
    for i, path in enumerate(paths):
        data, error = read_file(path)
        if error:
            errors[i] = error
        else:
            datas.append(data)
            readable.append(i)
    digits, rejections = guarded_digits(datas, LIMITS)
    refused = {r.index for r in rejections}
    errors |= {readable[r.index]: r.detail for r in rejections}
    return digits[[j for j in range(len(datas)) if j not in refused]], errors


def load(job: Job) -> Model:
    """The model, as the service loads it, on the CPU with one torch thread."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch starts OpenMP
    import torch

    from app.engine.predictor import Predictor
    from models.checkpoint import CheckpointError, load_checkpoint
    from models.weights import served_path

    torch.set_num_threads(1)
    path = served_path(job.model, job.weights_dir)  # as the service, MODEL_VERSIONS aside
    try:
        ckpt = load_checkpoint(path, expect_architecture=job.model)
    except CheckpointError as exc:
        raise Stopped(f"{job.model} cannot be loaded: {exc}") from None
    predictor = Predictor(ckpt, torch.device("cpu"), torch.float32, job.batch_size)
    return Model(predictor, ckpt.meta.labels, ckpt.meta.refuse_at)


def classify(model: Model, paths: list[str], decoded: Decoded) -> list[Row]:
    """A batch's rows, in order: label and confidence, or why not."""
    import torch

    digits, errors = decoded
    rows: list[Row] = []
    if len(digits):
        raw = model.predictor(torch.from_numpy(digits).unsqueeze(1)).numpy()
        probs, refusals = judge(model.labels, model.refuse_at, raw)
        refused = {r.index: r for r in refusals}
        best = probs.argmax(1).tolist()
        found = iter(enumerate(zip(best, probs[np.arange(len(best)), best].tolist(), strict=True)))
    for i, path in enumerate(paths):
        if i in errors:
            rows.append(Row(path, error=errors[i]))
            continue
        row, (k, confidence) = next(found)
        if (no := refused.get(row)) is not None:  # not one digit: the guess, and why not
            rows.append(Row(path, no.label, no.confidence, f"{no.failure.kind.slug}: {no.detail}"))
        else:
            rows.append(Row(path, model.labels[k], confidence))
    return rows


def _label(paths: list[str]) -> list[Row]:
    return classify(_model[0], paths, decode(paths))


def label_all(job: Job, paths: list[str], workers: int) -> Iterator[list[Row]]:
    """Rows for every file, a batch at a time, in order; in this process alone for one batch
    or one worker (starting workers would cost more than it saves)."""
    batches = [paths[i : i + job.batch_size] for i in range(0, len(paths), job.batch_size)]
    _model[:] = [load(job)]
    if workers == 1 or len(batches) <= 1:
        yield from map(_label, batches)
        return
    if "fork" in multiprocessing.get_all_start_methods():
        pool = multiprocessing.get_context("fork").Pool(workers, initializer=_start_worker)
    else:  # macOS, Windows: workers start afresh and load the model themselves
        pool = multiprocessing.get_context("spawn").Pool(workers, _start_worker, (job,))
    with pool:
        yield from pool.imap(_label, batches)
