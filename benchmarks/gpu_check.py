"""Every GPU check in order, what each measured written into one small results file.

    scripts/gpu_check.sh                                # on the GPU machine (prepares Python)
    python -m benchmarks.gpu_check --dry-run --out DIR  # the same code on the CPU, tiny sizes

Sections (benchmarks/gpu_sections.py), each in a process of its own with its share of a time
budget (what a section leaves unused goes to the next): the environment; tests/test_cuda.py;
the service on the device through HTTP (every MNIST test digit against the evaluation CLI, one
CUDA context); warm-up (first against second call per batch size); ``serve_bench --gpu``
(alexnet >= 80% and vgg16 >= 92% of the bare model's best batch, both layouts, GPU memory per
layout); mnist_cnn's time to 99.5% with its default recipe. After each section the results
(``gpu_check.json`` and the summary ``gpu_check.md`` in ``--out``) are written again, so what
was measured survives a timeout. A preflight first says what is missing (packages, wrk, MNIST).
"""

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.harness import ROOT, process_tree
from benchmarks.needs import SERVICE, TESTS, missing

# Seconds of the budget per section, in the order they run: about 9 minutes on an H100.
SHARES = {
    "environment": 10,
    "cuda_tests": 140,  # three start processes: the owner via HTTP, cuda:N, a device assert
    "service_http": 70,
    "warmup": 40,
    "serve_bench": 200,  # two models, two layouts, two rounds of 4 s each
    "training": 80,
}


def preflight(data_dir: Path, dry: bool) -> dict[str, Any]:
    """What the sections need and is not here, said plainly."""
    from benchmarks.wrk import find_wrk  # standard library only until here

    absent = missing({**SERVICE, **TESTS})
    problems = [f"Python packages not importable: {', '.join(absent)} (WHEELS=<folder>)"] * bool(
        absent
    )
    try:
        wrk: str | None = find_wrk()
    except RuntimeError as exc:
        wrk = None
        problems.append(str(exc))
    if not (data_dir / "MNIST" / "raw").is_dir():
        problems.append(f"MNIST not found in {data_dir}/MNIST/raw (MNIST_DATA_DIR=<folder>)")
    if not dry and shutil.which("nvidia-smi") is None:
        problems.append("nvidia-smi not on PATH: CUDA contexts will not be counted")
    return {"wrk": wrk, "data_dir": str(data_dir), "problems": problems}


def _kill_tree(pid: int) -> None:
    for p in reversed(process_tree(pid)):  # the servers a section started, too
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, signal.SIGKILL)


def run_section(name: str, args: argparse.Namespace, work: Path, timeout: float) -> dict[str, Any]:
    """One section in a process of its own; its figures, or why there are none."""
    result, log = work / f"{name}.json", work / f"{name}.log"
    command = [
        sys.executable,
        "-m",
        "benchmarks.gpu_check",
        "--section",
        name,
        "--device",
        args.device,
        "--data-dir",
        str(args.data_dir),
        "--work",
        str(work),
    ]
    started = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.Popen(
            command + ["--dry-run"] * args.dry_run,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            code = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            _kill_tree(proc.pid)
            proc.wait()
            code = None
    seconds = round(time.perf_counter() - started, 1)
    if code == 0 and result.exists():
        return {"status": "ok", "seconds": seconds, **json.loads(result.read_text())}
    status = "timed out" if code is None else f"failed (exit code {code})"
    return {"status": status, "seconds": seconds, "log_tail": log.read_text()[-3000:]}


def _headline(name: str, s: dict[str, Any]) -> list[str]:
    """The few figures of a section that the summary shows."""
    if s["status"] != "ok":
        return [f"**{s['status']}**: see gpu_check.json (log_tail)"]
    if name == "environment":
        gpu = f"{s.get('gpu', 'no GPU')} (compute capability {s.get('capability', '-')})"
        return [f"{gpu}, torch {s['torch']}, serving dtype {s['serving_dtype']}"]
    if name == "cuda_tests":
        counts = f"{s['failures']} failed, {s['errors']} errors, {s['skipped']} skipped"
        return [
            f"{s['tests']} tests: {counts}",
            *(f"- {f['test']}: {f['message']}" for f in s["failed"]),
        ]
    if name == "service_http":
        head = f"{s['images']} digits; the service's CUDA contexts: {s['service_contexts']}; "
        rows = [
            f"- {m}: accuracy {v['accuracy']:.4f}, evaluation CLI "
            f"{v['evaluation_cli_accuracy']:.4f}, equal: {v['equal_to_evaluation_cli']}, "
            f"{v['images_s']:.0f} images/s"
            for m, v in s["models"].items()
        ]
        return [head + f"GPU MiB {s['service_gpu_mib']}", *rows]
    if name == "warmup":
        return [f"first call > 2x second + 2 ms: {s['spikes'] or 'none'}"]
    if name == "serve_bench":
        rows = []
        for m, r in s["models"].items():
            for k, v in r["layouts"].items():
                verdict = (
                    "" if r["pass"] is None or k != "shared" else " PASS" if r["pass"] else " FAIL"
                )
                rows.append(
                    f"- {m} {k}: {v['percent_of_bare']:.1f}% of bare{verdict} "
                    f"({v['images_s']:.0f} img/s), p99 {v['p99_ms']:.1f} ms, "
                    f"GPU MiB {v['gpu_mib']}, contexts {v['contexts']}"
                )
        return rows
    if name == "training":
        reached = f"time to {s['target_accuracy']:.1%}: {s['train_seconds_to_target']} s"
        return [f"{reached}; {len(s['epochs'])} epochs, {s['wall_s']:.1f} s in all"]
    return []


def write(results: dict[str, Any], out: Path, stem: str) -> None:
    """The results as JSON and as a short markdown summary."""
    (out / f"{stem}.json").write_text(json.dumps(results, indent=1))
    title = f"# GPU check{' (dry run, CPU)' if results['dry_run'] else ''}"
    made = f"commit {results['commit']}, {results['started']}, `{results['command']}`"
    lines = [title, "", made, ""]
    lines += [f"- missing: {p}" for p in results["preflight"]["problems"]]
    for name, section in results["sections"].items():
        lines += ["", f"## {name} ({section['status']}, {section['seconds']} s)", ""]
        lines += _headline(name, section)
    (out / f"{stem}.md").write_text("\n".join(lines) + "\n")


def _commit() -> str:
    done = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    )
    return done.stdout.strip() or "unknown"


def main(argv: list[str] | None = None) -> int:
    """Run every section (or, with --section, one of them in this process)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--dry-run", action="store_true", help="on the CPU, tiny sizes")
    p.add_argument("--device", default=os.environ.get("DEVICE", "cuda"))
    default_data = os.environ.get("MNIST_DATA_DIR", str(ROOT.parent / "shared" / "data"))
    p.add_argument("--data-dir", type=Path, default=Path(default_data))
    p.add_argument(
        "--out", type=Path, default=Path(os.environ.get("OUT", ROOT / "benchmarks" / "results"))
    )
    p.add_argument(
        "--budget-s", type=float, help=f"default {sum(SHARES.values())} s; a dry run: 30 min"
    )
    p.add_argument("--section", choices=list(SHARES), help=argparse.SUPPRESS)
    p.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    if args.dry_run or args.device == "cpu":
        args.dry_run, args.device = True, "cpu"
    if args.section:
        from benchmarks.gpu_sections import SECTIONS, Run

        run = Run(args.device, args.data_dir, args.dry_run, args.work)
        figures = SECTIONS[args.section](run)
        (args.work / f"{args.section}.json").write_text(json.dumps(figures, indent=1))
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "gpu_check_dry" if args.dry_run else "gpu_check"
    results: dict[str, Any] = {
        "command": " ".join(["python -m benchmarks.gpu_check", *(argv or sys.argv[1:])]),
        "commit": _commit(),
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "dry_run": args.dry_run,
        "device": args.device,
        "preflight": preflight(args.data_dir, args.dry_run),
        "sections": {},
    }
    for problem in results["preflight"]["problems"]:
        print(f"gpu_check: missing: {problem}", flush=True)
    budget = args.budget_s or (1800 if args.dry_run else sum(SHARES.values()))
    deadline = time.monotonic() + budget
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        names = list(SHARES)
        for i, name in enumerate(names):
            left = deadline - time.monotonic()
            timeout = max(30.0, left * SHARES[name] / sum(SHARES[n] for n in names[i:]))
            print(f"gpu_check: {name} (up to {timeout:.0f} s)", flush=True)
            section = run_section(name, args, Path(tmp), timeout)
            results["sections"][name] = section
            print(f"gpu_check: {name}: {section['status']} in {section['seconds']} s", flush=True)
            write(results, args.out, stem)
    print(f"gpu_check: results in {args.out / stem}.json and .md", flush=True)
    return 0 if all(s["status"] == "ok" for s in results["sections"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
