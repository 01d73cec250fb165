"""Whether an image holds one digit: the model's outlier classes against its operating point.

A model trained with outlier exposure (models/negatives.py) has two classes past the ten
digits, ``not-a-digit`` and ``several-digits``. Their share of an image's probability is its
``score``: how sure the service is that the image is not one digit. At the checkpoint's
operating point (``refuse_at``, fitted by benchmarks/not_a_digit.py) or above, the image is
refused as the likelier of the two, carrying the model's best guess among the digits; below
it, the digits' probabilities are given as the model's given that the image is a digit (the
ten renormalised). A model without outlier classes refuses nothing.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from app.digits.pipeline import Rejection
from app.failures import Failure
from models.framing import DIGIT_LABELS
from models.negatives import NOT_A_DIGIT

DIGITS = len(DIGIT_LABELS)


@dataclass(frozen=True)
class Refusal(Rejection):
    """An image the model read as not one digit: its best guess all the same, and the score."""

    label: str
    confidence: float
    score: float

    @property
    def guess(self) -> dict[str, str | float]:
        """What the problem object carries besides its type: the guess and the score."""
        return {"label": self.label, "confidence": self.confidence, "score": self.score}


def _detail(failure: Failure, label: str, confidence: float, score: float) -> str:
    guess = f"the best guess among digits is {label} at {confidence:.2f}"
    if failure is Failure.NOT_A_DIGIT:
        return f"not a digit (score {score:.2f}); {guess}"
    return (f"several digits side by side (score {score:.2f}): one digit per image here; "
            f"send each digit as its own image; {guess}")  # fmt: skip


def judge(
    labels: Sequence[str], refuse_at: float | None, probabilities: np.ndarray
) -> tuple[np.ndarray, list[Refusal]]:
    """A model's probabilities (``labels`` its classes, ``refuse_at`` its operating point) ->
    each row's probabilities over the ten digits, and the rows refused (``index``: the row)."""
    if probabilities.shape[1] <= DIGITS:
        return probabilities, []
    outliers = probabilities[:, DIGITS:]
    score = outliers.sum(1)
    digits = probabilities[:, :DIGITS] / np.maximum(1 - score, 1e-12)[:, None]
    refusals: list[Refusal] = []
    if refuse_at is not None:
        for i in np.flatnonzero(score >= refuse_at).tolist():
            kind = labels[DIGITS + int(np.argmax(outliers[i]))]
            failure = Failure.NOT_A_DIGIT if kind == NOT_A_DIGIT else Failure.SEVERAL_DIGITS
            best = int(np.argmax(digits[i]))
            label, confidence, s = labels[best], float(digits[i, best]), float(score[i])
            refusals.append(
                Refusal(i, _detail(failure, label, confidence, s), failure, label, confidence, s)
            )
    return digits.astype(np.float32), refusals
