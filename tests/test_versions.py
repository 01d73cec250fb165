"""Versions on disk and which one answers: the scan, the default and pins, the one resolver,
the catalogue on the wire, the workers' shared reload generation. No models run here."""

import os
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from app.config import Settings
from app.engine.loading import model_names
from app.engine.siblings import Siblings
from app.failures import Failure, ServiceError
from app.serving.answer import Ticket
from app.serving.catalog import (
    CheckpointInfo,
    Loaded,
    Model,
    ReloadReport,
    Unavailable,
    choose_default,
    model_from_json,
    model_to_json,
)
from app.serving.zoo import Zoo
from models.framing import DIGIT_LABELS
from models.weights import VersionFile, scan, served_path
from tests.helpers import WEIGHTS, settings


def _put(folder: Path, *names: str) -> None:
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(b"x" * 8)


def test_the_flat_file_is_version_1_and_numbered_files_are_theirs(tmp_path: Path) -> None:
    _put(tmp_path, "lenet.safetensors", "lenet/2.safetensors", "lenet/10.safetensors",
         "mnist_cnn/3.safetensors")  # fmt: skip
    found = scan(tmp_path, ["lenet", "mnist_cnn", "vgg16"])
    assert sorted(found.versions) == [("lenet", 1), ("lenet", 2), ("lenet", 10), ("mnist_cnn", 3)]
    assert found.versions["lenet", 1].path == tmp_path / "lenet.safetensors"
    assert found.versions["lenet", 10].path == tmp_path / "lenet" / "10.safetensors"
    assert found.notes == []


def test_names_that_are_not_versions_are_passed_over(tmp_path: Path) -> None:
    _put(tmp_path, "lenet/0.safetensors", "lenet/03.safetensors", "lenet/-1.safetensors",
         "lenet/2.safetensors.tmp", "lenet/v4.safetensors", "lenet/5.pt",
         "lenet/1234567890.safetensors", "resnet/1.safetensors")  # fmt: skip
    (tmp_path / "lenet" / "6.safetensors").mkdir()  # a folder, not a file
    assert scan(tmp_path, ["lenet"]).versions == {}


def test_both_forms_of_version_1_the_numbered_one_wins_and_is_noted(tmp_path: Path) -> None:
    _put(tmp_path, "lenet.safetensors", "lenet/1.safetensors")
    found = scan(tmp_path, ["lenet"])
    assert found.versions["lenet", 1].path == tmp_path / "lenet" / "1.safetensors"
    assert found.notes == [
        "lenet: both lenet.safetensors and lenet/1.safetensors exist; "
        "lenet/1.safetensors is version 1"
    ]


def test_a_rewritten_or_replaced_file_has_a_new_stamp(tmp_path: Path) -> None:
    path = tmp_path / "lenet.safetensors"
    path.write_bytes(b"a" * 8)
    first = VersionFile.of(path)
    assert VersionFile.of(path).stamp == first.stamp  # nothing changed: nothing to do
    os.utime(path, ns=(first.stamp[1] + 1, first.stamp[1] + 1))  # same bytes, touched
    touched = VersionFile.of(path).stamp
    assert touched != first.stamp
    (tmp_path / "new").write_bytes(b"b" * 8)
    os.utime(tmp_path / "new", ns=(touched[1], touched[1]))
    (tmp_path / "new").replace(path)  # an atomic copy-then-rename: same size, same mtime
    assert VersionFile.of(path).stamp != touched  # the inode tells it


def test_a_folder_that_cannot_be_listed_is_an_error_not_an_empty_scan(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        scan(tmp_path / "not-mounted", ["lenet"])
    assert scan(tmp_path, ["lenet"]).versions == {}  # an empty folder is an empty scan


def _loaded(version: int) -> Loaded:
    blank = CheckpointInfo(**dict.fromkeys(CheckpointInfo.model_fields, ""))
    return Loaded("lenet", 1, (1, 28, 28), version, "cpu", "float32", tuple(DIGIT_LABELS),
                  0.99, 0.02, 64, blank)  # fmt: skip


def _broken(version: int | None, status: str = "invalid") -> Unavailable:
    return Unavailable("lenet", 1, (1, 28, 28), version, status, f"v{version} is broken")  # type: ignore[arg-type]


NONE = _broken(None, "missing")


def test_the_default_is_the_highest_loaded_version() -> None:
    versions = {1: _loaded(1), 2: _loaded(2), 3: _broken(3), 5: _broken(5, "failed")}
    assert choose_default(versions, None, NONE) == versions[2]  # a bad newer file: no gap
    assert choose_default({}, None, NONE) is NONE  # no checkpoint at all
    only_bad = {3: _broken(3), 4: _broken(4)}
    assert choose_default(only_bad, None, NONE) == only_bad[4]  # why the newest cannot serve


def test_a_pin_is_the_default_whatever_its_state() -> None:
    versions = {1: _loaded(1), 2: _loaded(2), 3: _broken(3)}
    assert choose_default(versions, 1, NONE) == versions[1]
    assert choose_default(versions, 3, NONE) == versions[3]  # pinned and invalid: 503, no drift
    absent = choose_default(versions, 7, NONE)
    assert isinstance(absent, Unavailable) and absent.version == 7
    assert absent.status == "missing" and "MODEL_VERSIONS pins version 7" in absent.reason


def test_model_versions_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODEL_VERSIONS", " mnist_cnn:3 , lenet:12,")
    assert Settings().model_versions == {"mnist_cnn": 3, "lenet": 12}
    for bad in ("lenet", "lenet:", "lenet:two", "lenet:0", ":3"):
        monkeypatch.setenv("MODEL_VERSIONS", bad)
        with pytest.raises(ValidationError, match="MODEL_VERSIONS"):
            Settings()


def test_a_pin_must_name_a_listed_model() -> None:
    with pytest.raises(ValueError, match="pins models this service does not list"):
        model_names(settings(models=("lenet",), model_versions={"mnist_cnn": 2}))


class _Engine:
    """Just a catalogue: what the zoo's rules need."""

    alive = True

    def __init__(self, catalog: dict[str, Model]) -> None:
        self.catalog = catalog
        self.queued = lambda name, version: 0
        self.asked: list[tuple[str, int]] = []

    async def classify(self, name: str, version: int, digits: np.ndarray) -> np.ndarray:
        self.asked.append((name, version))
        return np.zeros((len(digits), 10), np.float32)


@pytest.fixture
def zoo() -> Zoo:
    versions = {1: _loaded(1), 2: _loaded(2), 3: _broken(3)}
    catalog = {
        "lenet": Model("lenet", versions, versions[2]),
        "vgg16": Model("vgg16", {}, NONE),
    }
    return Zoo(settings(), _Engine(catalog), None)  # type: ignore[arg-type]


def _refused(zoo: Zoo, name: str, version: int | None) -> ServiceError:
    with pytest.raises(ServiceError) as refused:
        zoo.admit(name, version)
    return refused.value


def test_one_resolver_for_model_and_version(zoo: Zoo) -> None:
    assert zoo.admit("lenet").version == 2 and zoo.admit("lenet", 1).version == 1
    unknown = _refused(zoo, "lenet", 99)
    assert unknown.failure is Failure.UNKNOWN_VERSION
    assert unknown.extra["known_versions"] == [1, 2, 3]
    assert unknown.detail == "lenet has no version 99; known versions: 1, 2, 3"
    invalid = _refused(zoo, "lenet", 3)
    assert invalid.failure is Failure.MODEL_NOT_LOADED
    assert invalid.detail == "lenet version 3 is not loaded: v3 is broken"
    assert _refused(zoo, "resnet", None).failure is Failure.UNKNOWN_MODEL
    assert _refused(zoo, "resnet", 1).failure is Failure.UNKNOWN_MODEL  # the model comes first
    assert _refused(zoo, "vgg16", None).failure is Failure.MODEL_NOT_LOADED
    assert _refused(zoo, "vgg16", 1).extra["known_versions"] == []
    zoo.accepting = False
    assert _refused(zoo, "lenet", 1).failure is Failure.SHUTTING_DOWN


async def test_the_version_is_resolved_again_when_the_digits_are_queued(zoo: Zoo) -> None:
    engine, digit = zoo.engine, np.zeros((1, 28, 28), np.uint8)
    same, moved, pinned = (Ticket(zoo, "lenet") for _ in range(3))
    for ticket, version in ((same, None), (moved, None), (pinned, 1)):
        assert ticket.admit(version).version == (version or 2)
    ran = await same.answer_digits(digit)
    v4 = _loaded(4)
    lenet = engine.catalog["lenet"]  # a reload swaps in a new default while a request decodes
    engine.catalog = {**engine.catalog, "lenet": Model("lenet", {**lenet.versions, 4: v4}, v4)}  # type: ignore[attr-defined]
    after, kept = await moved.answer_digits(digit), await pinned.answer_digits(digit)
    assert (ran.model.version, after.model.version, kept.model.version) == (2, 4, 1)
    assert engine.asked == [("lenet", 2), ("lenet", 4), ("lenet", 1)]  # type: ignore[attr-defined]


async def test_a_request_is_resolved_once_while_the_catalogue_stays(zoo: Zoo) -> None:
    ticket, looked = Ticket(zoo, "lenet"), []
    ticket.admit()
    lookup = zoo.lookup
    zoo.lookup = lambda name: looked.append(name) or lookup(name)  # type: ignore[method-assign]
    await ticket.answer_digits(np.zeros((2, 28, 28), np.uint8))
    assert looked == []  # no second resolution: the version admitted is the one that runs


def test_a_v2_path_names_a_version_as_text(zoo: Zoo) -> None:
    assert zoo.admit("lenet", "1").version == 1
    for text in ("99", "01x", "\u0661", "-1"):
        with pytest.raises(ServiceError) as refused:
            zoo.admit("lenet", text)
        assert refused.value.failure is Failure.UNKNOWN_VERSION


def test_the_catalogue_crosses_the_wire_unchanged(zoo: Zoo) -> None:
    for model in zoo.models.values():
        assert model_from_json(model_to_json(model)) == model
    report = ReloadReport(changes=[], default_versions={"lenet": 2, "vgg16": None})
    assert ReloadReport.model_validate_json(report.model_dump_json()) == report
    assert report.summary() == "nothing changed; default versions: lenet v2"


def test_siblings_share_one_generation_and_wait_for_the_live_ones(tmp_path: Path) -> None:
    me = Siblings(tmp_path)
    assert me.generation() == 0 and me.behind(0) == []
    other = tmp_path / "reload" / str(os.getppid())  # a live process that has applied nothing
    other.write_text("0")
    (tmp_path / "reload" / "999999999").write_text("0")  # a worker that died: not waited for
    generation = me.bump()
    assert generation == 1 and me.generation() == 1
    me.applied(generation)
    assert me.behind(generation) == [os.getppid()]
    other.write_text("1")
    assert me.behind(generation) == []
    me.applied(0)  # applied only ever moves forward
    assert me.behind(1) == []
    me.leave()
    assert not me.mine.exists()


def test_the_committed_weights_are_versions_1_and_mnist_cnn_2() -> None:
    found = scan(WEIGHTS, ["lenet", "mnist_cnn", "vgg16"])
    assert sorted(found.versions) == [("lenet", 1), ("mnist_cnn", 1), ("mnist_cnn", 2)]


def test_the_served_file_is_the_highest_version() -> None:
    assert served_path("mnist_cnn", WEIGHTS) == WEIGHTS / "mnist_cnn" / "2.safetensors"
    assert served_path("lenet", WEIGHTS) == WEIGHTS / "lenet.safetensors"
    missing = WEIGHTS / "not-mounted"
    assert served_path("lenet", missing) == missing / "lenet.safetensors"  # its load says where
