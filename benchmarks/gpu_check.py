"""Every GPU check in order, what each measured written into one small results file; the exit
status says whether everything passed, and the last lines say what did not.

    scripts/gpu_check.sh [--quick | --part 1 | --part 2]   # on the GPU machine (prepares Python)
    python -m benchmarks.gpu_check --dry-run --out DIR     # the same code on the CPU, tiny sizes

Sections (benchmarks/gpu_sections.py), each in a process of its own with its share of a time
budget (what a section leaves unused goes to the next): the environment; tests/test_cuda.py;
the service on the device through HTTP (MNIST test digits for mnist_cnn and a 224x224 net
trained for a few hundred steps, against the evaluation CLI; start-up time, one CUDA context);
warm-up (first against second call per batch size); ``serve_bench --gpu`` (alexnet >= 80% and
vgg16 >= 92% of the bare model's best batch, GPU memory per layout); mnist_cnn's training time.
``--mode quick`` runs the whole check in under 5 minutes; the full check is two parts (``full1``,
``full2``), each within one 600 s command. After each section the results (``gpu_check.json``
and the summary ``gpu_check.md`` in ``--out``) are written again, so what was measured survives
a timeout. A preflight first says what is missing (packages, wrk, MNIST, nvidia-smi).

It fails (exit 1) when a section fails or times out, and on any failed, errored or (on CUDA)
skipped CUDA test, serve_bench FAIL verdict or error, accuracy through HTTP that differs from
the evaluation CLI's, warm-up spike, or training that did not finish.
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

from benchmarks.harness import ROOT, git_state, process_tree
from benchmarks.needs import SERVICE, TESTS, missing

# Per mode, the sections in the order they run and the seconds of the budget each gets.
MODES: dict[str, dict[str, int]] = {
    "quick": {  # under 5 minutes of command time in all, pip's install before it included
        "environment": 5,
        "cuda_tests": 95,  # three start processes: the owner via HTTP, cuda:N, a device assert
        "service_http": 60,  # alexnet trained 300 steps, then 2000 digits for each net
        "serve_bench": 85,  # alexnet and vgg16: a bare sweep, then one round of 2 s, shared
        "training": 35,  # mnist_cnn, three epochs
    },
    "full1": {  # each part within one 600 s command
        "environment": 10,
        "cuda_tests": 140,
        "service_http": 150,  # every MNIST test digit, lenet too
        "warmup": 60,
    },
    "full2": {
        "environment": 10,
        "serve_bench": 300,  # two models, two layouts, two rounds of 4 s each
        "training": 150,  # mnist_cnn's default recipe: time to 99.5%
    },
}
SECTION_NAMES = list(dict.fromkeys(name for shares in MODES.values() for name in shares))


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
    """One section in a process of its own; its figures, or why there are none (and what it
    had measured when it timed out or failed, where it writes as it goes)."""
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
        "--mode",
        args.mode,
        "--cuda-tests",
        args.cuda_tests,
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
    out = {"status": status, "seconds": seconds, "log_tail": log.read_text()[-3000:]}
    partial = work / f"{name}.partial.json"
    if partial.exists() and name == "serve_bench":  # the models it measured before it stopped
        from benchmarks.gpu_sections import serve_bench_figures

        with contextlib.suppress(ValueError, KeyError):
            out["partial"] = serve_bench_figures(json.loads(partial.read_text()))
    return out


def verdicts(sections: dict[str, dict[str, Any]], skips_fail: bool) -> list[str]:
    """Everything that failed, one line each; empty when everything passed. ``skips_fail``:
    a skipped CUDA test is a failure (on CUDA, where none may skip)."""
    problems = []
    for name, s in sections.items():
        if s["status"] != "ok":
            problems.append(f"{name}: {s['status']}")
            continue
        if name == "cuda_tests":
            bad = s["failed"] + (s["skipped_tests"] if skips_fail else [])
            problems += [f"cuda_tests: {t['test']} {t['outcome']}: {t['message']}" for t in bad]
            if not s["tests"]:
                problems.append("cuda_tests: no test ran")
            elif s["exit_code"] not in (0, 5) and not bad:
                problems.append(f"cuda_tests: pytest exited {s['exit_code']}")
        elif name == "service_http":
            for model, m in s["models"].items():
                if m["mismatch"]:
                    problems.append(
                        f"service_http: {model} accuracy through HTTP {m['accuracy']:.4f} "
                        f"against the evaluation CLI's {m['evaluation_cli_accuracy']:.4f}"
                    )
        elif name == "warmup" and s["spikes"]:
            problems += [f"warmup: a first call is slow: {spike}" for spike in s["spikes"]]
        elif name == "serve_bench":
            for model, r in s["models"].items():
                if r["pass"] is False:
                    problems.append(
                        f"serve_bench: {model} FAIL: the shared layout below "
                        f"{r['target_fraction']:.0%} of the bare model"
                    )
                problems += [
                    f"serve_bench: {model} {k}: {v['errors']} errors"
                    for k, v in r["layouts"].items()
                    if v["errors"]
                ]
        elif name == "training" and s["exit_code"] != 0:
            problems.append(f"training: the training CLI exited {s['exit_code']}")
    return problems


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
            *(f"- {f['test']} ({f['outcome']}): {f['message']}" for f in s["failed"]),
            *(f"- {f['test']} (skipped): {f['message']}" for f in s["skipped_tests"]),
        ]
    if name == "service_http":
        head = f"{s['images']} digits; start to ready {s['start_to_ready_s']:.1f} s; "
        head += f"the service's CUDA contexts: {s['service_contexts']}; "
        trained = [
            f"- {m} trained {t['steps']} steps of {t['batch_size']} in {t['wall_s']:.1f} s: "
            f"test accuracy {t['test_accuracy']:.4f}"
            for m, t in s["trained"].items()
        ]
        rows = [
            f"- {m}: accuracy {v['accuracy']:.4f}, evaluation CLI "
            f"{v['evaluation_cli_accuracy']:.4f}, equal: {v['equal_to_evaluation_cli']}, "
            f"{v['images_s']:.0f} images/s"
            for m, v in s["models"].items()
        ]
        return [head + f"GPU MiB {s['service_gpu_mib']}", *trained, *rows]
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
        per_epoch = ", ".join(f"{e['seconds']:.1f}" for e in s["epochs"])
        return [f"{reached}; epochs of {per_epoch} s; {s['wall_s']:.1f} s in all"]
    return []


def write(results: dict[str, Any], out: Path, stem: str) -> None:
    """The results as JSON and as a short markdown summary."""
    (out / f"{stem}.json").write_text(json.dumps(results, indent=1))
    title = f"# GPU check{' (dry run, CPU)' if results['dry_run'] else ''}"
    made = f"commit {results['commit']}, {results['started']}, `{results['command']}`"
    lines = [title, "", made, ""]
    lines += [f"- missing: {p}" for p in results["preflight"]["problems"]]
    failed = results.get("failed")
    if failed is not None:
        lines += ["", "**FAILED**:" if failed else "**everything passed**", ""]
        lines += [f"- {p}" for p in failed]
    for name, section in results["sections"].items():
        lines += ["", f"## {name} ({section['status']}, {section['seconds']} s)", ""]
        lines += _headline(name, section)
    (out / f"{stem}.md").write_text("\n".join(lines) + "\n")


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
    p.add_argument("--mode", choices=list(MODES), default="quick", help="default quick")
    p.add_argument("--sections", help="a comma-separated subset of the mode's sections")
    p.add_argument(
        "--cuda-tests", default="tests/test_cuda.py", help="the CUDA tests (the rehearsal: fakes)"
    )
    p.add_argument(
        "--skips-fail",
        action=argparse.BooleanOptionalAction,
        help="a skipped CUDA test fails the check (default: on CUDA yes, in a dry run no)",
    )
    p.add_argument("--budget-s", type=float, help="default: the mode's; a dry run: 30 min")
    p.add_argument("--section", choices=SECTION_NAMES, help=argparse.SUPPRESS)
    p.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    if args.dry_run or args.device == "cpu":
        args.dry_run, args.device = True, "cpu"
    if args.skips_fail is None:
        args.skips_fail = not args.dry_run
    mode = "full" if args.mode.startswith("full") else "quick"
    if args.section:
        from benchmarks.gpu_sections import SECTIONS, Run

        run = Run(args.device, args.data_dir, args.dry_run, args.work, mode, args.cuda_tests)
        figures = SECTIONS[args.section](run)
        (args.work / f"{args.section}.json").write_text(json.dumps(figures, indent=1))
        return 0
    shares = MODES[args.mode]
    if args.sections:
        wanted = args.sections.split(",")
        if unknown := set(wanted) - set(shares):
            p.error(f"not sections of --mode {args.mode}: {', '.join(sorted(unknown))}")
        shares = {name: share for name, share in shares.items() if name in wanted}
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "gpu_check_dry" if args.dry_run else "gpu_check"
    stem += "" if args.mode == "quick" else f"_{args.mode}"
    results: dict[str, Any] = {
        "command": " ".join(["python -m benchmarks.gpu_check", *(argv or sys.argv[1:])]),
        "commit": git_state()["commit"],
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "dry_run": args.dry_run,
        "device": args.device,
        "mode": args.mode,
        "preflight": preflight(args.data_dir, args.dry_run),
        "sections": {},
    }
    for problem in results["preflight"]["problems"]:
        print(f"gpu_check: missing: {problem}", flush=True)
    budget = args.budget_s or (1800 if args.dry_run else sum(shares.values()))
    deadline = time.monotonic() + budget
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        names = list(shares)
        for i, name in enumerate(names):
            left = deadline - time.monotonic()
            timeout = max(30.0, left * shares[name] / sum(shares[n] for n in names[i:]))
            print(f"gpu_check: {name} (up to {timeout:.0f} s)", flush=True)
            section = run_section(name, args, Path(tmp), timeout)
            results["sections"][name] = section
            print(f"gpu_check: {name}: {section['status']} in {section['seconds']} s", flush=True)
            write(results, args.out, stem)
    failed = verdicts(results["sections"], args.skips_fail)
    results["failed"] = failed
    write(results, args.out, stem)
    print(f"gpu_check: results in {args.out / stem}.json and .md", flush=True)
    for problem in failed:
        print(f"gpu_check: FAILED: {problem}", flush=True)
    print(f"gpu_check: {'FAILED' if failed else 'everything passed'}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
