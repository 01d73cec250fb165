"""Not one digit: the model's outlier classes against its operating point, in the core and on
the wire (/predict's slots, the v2 protocol's request errors, zoo-predict's rows)."""

import numpy as np
import orjson
import pytest

from app.failures import Failure, ServiceError
from app.frontend.predict import encode
from app.serving.answer import Ticket, Upload
from app.serving.catalog import CheckpointInfo, Loaded, Model
from app.serving.verdict import Refusal, judge
from app.serving.zoo import Zoo
from models.framing import DIGIT_LABELS
from models.negatives import OUTLIER_LABELS
from tests.helpers import png, settings

LABELS = (*DIGIT_LABELS, *OUTLIER_LABELS)


def _row(digit: int | None = None, outlier: int | None = None, share: float = 0.9) -> list[float]:
    """12 probabilities: ``share`` on a digit or on an outlier class, the rest spread."""
    row = np.full(12, (1 - share) / 11)
    row[digit if outlier is None else 10 + outlier] = share
    return row.tolist()


def test_outlier_classes_at_the_operating_point_refuse() -> None:
    probs = np.array([_row(7), _row(outlier=0), _row(outlier=1), _row(2, share=0.6)], np.float32)
    probs[1, 4] += 0.01  # a guess to carry
    probs[1, 10] -= 0.01
    digits, refused = judge(LABELS, 0.5, probs)
    assert digits.shape == (4, 10)
    np.testing.assert_allclose(digits.sum(1), 1, rtol=1e-5)  # given a digit: the ten sum to 1
    assert [(r.index, r.failure) for r in refused] == [
        (1, Failure.NOT_A_DIGIT),
        (2, Failure.SEVERAL_DIGITS),
    ]
    first = refused[0]
    assert first.label == "4" and first.score == pytest.approx(probs[1, 10:].sum())
    assert first.confidence == pytest.approx(digits[1, 4])
    assert "not a digit" in first.detail and "best guess among digits is 4" in first.detail
    assert "one digit per image" in refused[1].detail


def test_the_threshold_is_the_operating_point() -> None:
    probs = np.array([_row(outlier=0, share=0.45)], np.float32)
    score = float(probs[0, 10:].sum())
    assert judge(LABELS, score + 1e-4, probs)[1] == []
    assert len(judge(LABELS, score - 1e-4, probs)[1]) == 1
    assert judge(LABELS, None, probs)[1] == []  # no operating point: nothing is refused


def test_a_model_without_outlier_classes_refuses_nothing() -> None:
    probs = np.array([_row(3)[:10]], np.float32)
    digits, refused = judge(DIGIT_LABELS, 0.1, probs)
    assert refused == [] and digits is probs


class _Engine:
    alive = True

    def __init__(self, rows: list[list[float]]) -> None:
        card = _card()
        self.catalog = {"lenet": Model("lenet", {2: card}, card)}
        self.rows = rows
        self.queued = lambda name, version: 0

    async def classify(self, name: str, version: int, digits: np.ndarray) -> np.ndarray:
        assert len(digits) == len(self.rows)
        return np.array(self.rows, np.float32)


def _card() -> Loaded:
    blank = CheckpointInfo(**dict.fromkeys(CheckpointInfo.model_fields, ""))
    return Loaded("lenet", 1, (1, 28, 28), 2, "cpu", "float32", LABELS, 0.99, 0.02, 64, blank,
                  refuse_at=0.5)  # fmt: skip


def _ticket(rows: list[list[float]]) -> Ticket:
    from app.digits.sandbox import DigitReader

    reader = DigitReader.from_settings(settings())  # small plain PNGs: read inline
    ticket = Ticket(Zoo(settings(), _Engine(rows), reader), "lenet")  # type: ignore[arg-type]
    ticket.admit()
    return ticket


def _uploads(n: int) -> list[Upload]:
    ring = np.zeros((28, 28), np.uint8)
    ring[6:22, 8:20] = 255
    ring[9:19, 11:17] = 0
    return [Upload(f"f{i}.png", png(ring)) for i in range(n)]


async def test_a_refused_image_takes_its_slot_with_the_guess() -> None:
    ticket = _ticket([_row(0), _row(outlier=0), _row(8)])
    found = await ticket.answer(_uploads(3))
    assert [(r.index, r.failure) for r in found.rejections] == [(1, Failure.NOT_A_DIGIT)]
    assert found.probabilities.shape == (2, 10)  # the answered ones only
    body = orjson.loads(encode(found, 3))
    first, refused, last = body["predictions"]
    assert (first["label"], last["label"]) == ("0", "8")
    assert refused["type"] == "/problems/not-a-digit" and refused["status"] == 422
    assert refused["filename"] == "f1.png" and refused["index"] == 1
    assert set(refused) >= {"label", "confidence", "score"} and refused["score"] > 0.5


async def test_a_lone_refused_image_is_the_requests_422_with_the_guess() -> None:
    with pytest.raises(ServiceError) as failed:
        await _ticket([_row(outlier=1)]).answer(_uploads(1))
    assert failed.value.failure is Failure.SEVERAL_DIGITS
    assert set(failed.value.extra) >= {"label", "confidence", "score", "filename", "index"}


async def test_a_protocol_without_per_image_results_fails_on_a_refused_image() -> None:
    with pytest.raises(ServiceError) as failed:
        await _ticket([_row(1), _row(outlier=0)]).answer(_uploads(2), all_or_nothing=True)
    assert failed.value.failure is Failure.NOT_A_DIGIT and failed.value.extra["index"] == 1
    with pytest.raises(ServiceError) as digits_failed:
        await _ticket([_row(1), _row(outlier=0)]).answer_digits(np.zeros((2, 28, 28), np.uint8))
    assert digits_failed.value.detail.startswith("digit[1]: not a digit")


def test_refusal_is_a_rejection_the_encoders_know() -> None:
    r = Refusal(0, "not a digit", Failure.NOT_A_DIGIT, "2", 0.5, 0.9)
    assert r.guess == {"label": "2", "confidence": 0.5, "score": 0.9}
