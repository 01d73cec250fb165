"""zoo-predict: label every image in files and folders, into a CSV, from the command line.

    zoo-predict scans/ more/7.png --model mnist_cnn --out labels.csv
    zoo-predict scans/ --model lenet --url http://zoo:8000      # through a running service

In-process (app/cli/local.py) it uses the service's own preprocessing, checkpoints and model
call on every core; with ``--url`` (app/cli/remote.py) it sends batches to a running service's
/predict (API key from ZOO_API_KEY). One row per file, ``path,label,confidence,error``, in the
order the files were found; a file that cannot be used gets its error and no label, and the
others go on. Exit status: 0 when every file got a label, 1 when any did not, 2 when the run
could not start or was stopped (an unknown model, a wrong key, an unreachable service).
"""

import argparse
import csv
import os
import sys
import time
from collections.abc import Callable, Iterable
from itertools import chain
from pathlib import Path
from typing import TextIO

from tqdm import tqdm

from app.cli.rows import COLUMNS, Row, Stopped

BATCH = 128  # files per batch: a worker's model call, or one request to the service
# Where the service would find the checkpoints: WEIGHTS_DIR, as app/config.py reads it.
WEIGHTS_DIR = "WEIGHTS_DIR"


def find_files(args: list[str], leave_out: Path | None) -> tuple[list[str], list[str]]:
    """Files named, and every file under the folders named (recursively, in name order,
    hidden ones left out); and the arguments that are neither."""
    found, missing = [], []
    skip = leave_out.resolve() if leave_out else None
    for arg in args:
        if os.path.isfile(arg):
            found.append(arg)
        elif os.path.isdir(arg):
            for folder, dirs, files in os.walk(arg):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(files):
                    path = os.path.join(folder, name)
                    if name.startswith(".") or (skip and Path(path).resolve() == skip):
                        continue
                    if os.path.isfile(path):  # not a pipe, a socket or a broken link
                        found.append(path)
        else:
            missing.append(arg)
    return found, missing


def _count(least: int) -> Callable[[str], int]:
    """An argument type: a whole number, at least ``least``."""

    def parse(text: str) -> int:
        if not text.isdigit() or int(text) < least:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= {least}")
        return int(text)

    return parse


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="zoo-predict",
        description="Label every image in files and folders (searched recursively) with one "
        "of the zoo's models, into a CSV: path,label,confidence,error.",
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files and folders")
    p.add_argument("--model", required=True, help="the model, e.g. lenet or mnist_cnn")
    p.add_argument("--out", type=Path, help="the CSV to write (default: standard output)")
    p.add_argument(
        "--url",
        help="a running service (e.g. http://localhost:8000) to send the images to, instead "
        "of labelling them here; its API key from ZOO_API_KEY",
    )
    p.add_argument(
        "--weights-dir",
        type=Path,
        default=Path(os.environ.get(WEIGHTS_DIR, "weights")),
        help="where the checkpoints are, in-process (default: $WEIGHTS_DIR, else weights)",
    )
    p.add_argument(
        "--workers", type=_count(0), default=0, help="processes in-process (0: a core each)"
    )
    p.add_argument("--batch-size", type=_count(1), default=BATCH, help="files per batch")
    return p


def _batches(args: argparse.Namespace, paths: list[str]) -> Iterable[list[Row]]:
    """Rows for the files, a batch at a time, from the service or from this machine."""
    if args.url:
        from app.cli.remote import label_remote

        key = os.environ.get("ZOO_API_KEY") or None
        yield from label_remote(args.url, args.model, paths, args.batch_size, key)
        return
    from app.cli.local import Job, label_all
    from app.layout import usable_cores

    job = Job(args.model, args.weights_dir, args.batch_size)
    yield from label_all(job, paths, args.workers or usable_cores())


def _check_model(args: argparse.Namespace) -> str | None:
    """Why the model cannot be used in-process, if it cannot (before any worker starts)."""
    from models.weights import checkpoint_path

    path = checkpoint_path(args.model, args.weights_dir)
    if path.is_file():
        return None
    there = sorted(p.stem for p in args.weights_dir.glob("*.safetensors"))
    return f"no checkpoint for {args.model!r} at {path}; checkpoints there: {', '.join(there)}"


def write(rows: Iterable[list[Row]], out: TextIO, total: int) -> int:
    """Write the CSV as the rows come; how many files got no label."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    failed = 0
    with tqdm(total=total, unit="img", file=sys.stderr, disable=None, smoothing=0.1) as bar:
        for batch in rows:
            writer.writerows(row.cells() for row in batch)
            failed += sum(1 for row in batch if row.error)
            bar.update(len(batch))
    return failed


def main(argv: list[str] | None = None) -> int:
    """Run zoo-predict; the exit status."""
    args = _parser().parse_args(argv)
    started = time.perf_counter()
    if not args.url and (problem := _check_model(args)):
        print(f"zoo-predict: {problem}", file=sys.stderr)
        return 2
    paths, missing = find_files(args.paths, args.out)
    not_found = [[Row(m, error="no such file or folder") for m in missing]] if missing else []
    out = open(args.out, "w", newline="") if args.out else sys.stdout  # noqa: SIM115
    try:
        failed = write(chain(not_found, _batches(args, paths)), out, len(paths) + len(missing))
    except Stopped as exc:
        print(f"zoo-predict: {exc}", file=sys.stderr)
        return 2
    finally:
        if out is not sys.stdout:
            out.close()
    took = time.perf_counter() - started
    done = len(paths) + len(missing)
    print(
        f"zoo-predict: {done} files in {took:.2f} s ({len(paths) / took:,.0f} images/s), "
        f"{done - failed} labelled, {failed} not",
        file=sys.stderr,
    )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
