"""The decoder: threads for small requests, worker processes for big ones, same answers."""

import numpy as np
import pytest

from app.decoding import Decoder, Rejection, preprocess_all
from app.preprocess import ImageLimits, preprocess
from models.data import MnistSplit
from tests.corpus import png_header
from tests.helpers import png


@pytest.fixture(scope="module")
def pngs(mnist_test: MnistSplit) -> list[bytes]:
    return [png(mnist_test.images[i, 0].numpy()) for i in range(12)]


async def test_processes_and_thread_give_identical_digits(pngs: list[bytes]) -> None:
    decoder = Decoder(processes=1, process_threshold=4)
    await decoder.start()
    try:
        in_process = await decoder(pngs, ImageLimits())  # 12 >= 4: a worker process
        in_thread = await decoder(pngs[:3], ImageLimits())  # 3 < 4: the thread
    finally:
        decoder.shutdown()
    assert isinstance(in_process, np.ndarray) and isinstance(in_thread, np.ndarray)
    assert in_process.shape == (12, 1, 28, 28) and in_process.dtype == np.float32
    assert np.array_equal(in_process[:3], in_thread)
    assert np.array_equal(in_process[5, 0], preprocess(pngs[5]))


async def test_rejections_cross_the_process_border_intact(pngs: list[bytes]) -> None:
    decoder = Decoder(processes=1, process_threshold=2)
    try:
        bomb = await decoder([pngs[0], png_header(60000, 60000), pngs[1]], ImageLimits())
        broken = await decoder([*pngs[:6], b"not an image"], ImageLimits())
    finally:
        decoder.shutdown()
    assert bomb == Rejection(1, bomb.detail, 413) and "pixels" in bomb.detail  # type: ignore[union-attr]
    assert isinstance(broken, Rejection) and broken.index == 6 and broken.status_code == 422


def test_first_rejection_wins(pngs: list[bytes]) -> None:
    out = preprocess_all([pngs[0], b"", b"also bad"], ImageLimits())
    assert isinstance(out, Rejection) and out.index == 1 and "0 bytes" in out.detail
