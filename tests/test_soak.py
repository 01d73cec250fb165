"""The soak benchmark's own checks: a short soak passes, and a lost answer is caught."""

from pathlib import Path

from benchmarks.soak import check, expected, main


def test_a_short_soak_loses_nothing_and_leaks_nothing(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    args = [
        "--requests",
        "2000",
        "--warmup",
        "300",
        "--data-dir",
        str(data_dir),
        "--json",
        str(out),
    ]
    assert main(args) == 0, out.read_text()


def test_a_lost_or_misanswered_request_fails_the_soak() -> None:
    want = expected(100)
    assert want == {"statuses": {"200": 90, "415": 4, "404": 3, "422": 3}, "labels": 80 + 10 * 64}
    good = {"answered": 100, "socket_errors": 0, "labels": want["labels"]}
    good |= {"statuses": want["statuses"], "served": want["statuses"]}
    assert check(good, 100) == []
    assert check({**good, "answered": 99}, 100)
    assert check({**good, "served": {**want["statuses"], "200": 89}}, 100)
    assert check({**good, "labels": want["labels"] - 1}, 100)
