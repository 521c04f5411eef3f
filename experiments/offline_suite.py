"""``python -m experiments.offline_suite``: the GLoRA / FLoRA claims on real offline data.

    # where the offline data and weights are installed: compact packs + float16 weights
    python -m experiments.offline_suite pack --assets .suite/assets
    # on the GPU: derived inputs once, then parts (in parallel processes or separate calls)
    python -m experiments.offline_suite prepare --assets .suite/assets --runs .suite/runs
    python -m experiments.offline_suite run --assets .suite/assets --runs .suite/runs --part 1/4
    python -m experiments.offline_suite run --workers 8 ...     # prepare + 8 processes, 1 GPU
    python -m experiments.offline_suite run ... --dry-run          # print the plan, run nothing
    # anywhere the result.json files are: tables + plots into docs/results.md
    python -m experiments.offline_suite report --runs .suite/runs --doc docs/results.md

Every sub-command takes ``--set key=value`` overrides of ``SuiteSettings`` (e.g.
``--set epochs=2 --set "tasks=('digits',)" --set fewshot_task=digits``, checked together);
use the same ones for
run and report. Finished runs (``<runs>/<run id>/result.json``) are skipped, so a cut-off part
just runs again; finished runs made with other settings are refused (use another ``--runs``).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

from experiments.command_line import path_argument, positive_int, run_main, spellings
from experiments.config import override
from experiments.suite_plan import (
    BACKBONE_OF_STUDY,
    Assets,
    SuiteSettings,
    check_configs,
    in_part,
    overrides,
    parse_part,
    plan,
    waiting_groups,
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.offline_suite",
        description=(__doc__ or "").splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join((__doc__ or "").splitlines()[1:]),
    )
    commands = parser.add_subparsers(dest="command", required=True)
    pack = commands.add_parser("pack", help="data packs and float16 weights into --assets")
    prepare = commands.add_parser("prepare", help="float32 weights, few-shot packs, data cache")
    run = commands.add_parser("run", help="run (a part of) the plan, skipping finished runs")
    report = commands.add_parser("report", help="tables and plots into the results document")
    for sub in (pack, prepare, run, report):
        sub.add_argument("--set", dest="overrides", action="append", default=[],
                         metavar="KEY=VALUE", help="override a SuiteSettings field")  # fmt: skip
    for sub in (pack, prepare, run, report):
        sub.add_argument("--assets", type=path_argument, default=Path(".suite/assets"))
        sub.add_argument("--runs", type=path_argument, default=Path(".suite/runs"))
    run.add_argument("--part", type=parse_part, default=(1, 1), help="i/n: this share of runs")
    run.add_argument(*spellings("--dry-run"), action="store_true", help="print the plan and exit")
    run.add_argument(*spellings("--deadline-s"), type=float, default=None,
                     help="start no run after this many seconds")  # fmt: skip
    run.add_argument(
        *spellings("--compile-cache"), default=None, help="JAX persistent compilation cache"
    )
    run.add_argument(
        *spellings("--matmul-precision"), default="highest", choices=("default", "high", "highest"),
        help="jax_default_matmul_precision; 'highest' = true float32 on GPUs (the default "
        "would use TF32, whose rounding can fail the merged-model check)",
    )  # fmt: skip
    run.add_argument(
        "--workers",
        type=positive_int,
        default=1,
        help="N > 1: prepare, then N processes share this part through --claims "
        "(default <runs>/claims, emptied first); logs in <runs>/logs",
    )
    run.add_argument("--claims", type=path_argument, default=None,
                     help="shared folder: parallel processes of one part take runs first come, "
                     "first served (empty it before starting them)")  # fmt: skip
    report.add_argument("--doc", type=path_argument, default=Path("docs/results.md"))
    report.add_argument("--figures", type=path_argument, default=Path("docs"))
    return parser.parse_args(argv)


def pack_assets(settings: SuiteSettings, assets: Assets) -> None:
    """Offline tasks as checked packs, backbone weights as float16 copies."""
    from experiments.suite_data import check_pack, half_precision_copy, offline_pack
    from experiments.weights import cached

    for task in dict.fromkeys((*settings.tasks, *settings.conv_tasks, settings.fewshot_task)):
        path = offline_pack(task, assets.pack(task), seed=settings.split_seed)
        shots = settings.shots if task == settings.fewshot_task else ()
        check_pack(path, task, seed=settings.split_seed, shots=shots)
        print(f"packed {task} -> {path} ({path.stat().st_size / 1e6:.1f} MB, splits checked)")
    for backbone in sorted(set(BACKBONE_OF_STUDY.values())):
        half = half_precision_copy(cached(backbone), assets.half_weights(backbone))
        print(f"{backbone}: float16 copy {half} ({half.stat().st_size / 1e6:.1f} MB)")


def print_plan(settings: SuiteSettings, assets: Assets, args: argparse.Namespace) -> None:
    from experiments.suite_run import cache_dir, finished

    results = finished(args.runs) if args.runs.is_dir() else {}
    runs = [r for r in plan(settings, results) if in_part(r, args.part)]
    for run in runs:
        status = "done" if run.run_id in results else "todo"
        knobs = [o for o in overrides(run, settings, assets, cache_dir(args.runs))
                 if o.split("=")[0] in _SHOWN]  # fmt: skip
        print(f"{status} {run.run_id}  {' '.join(knobs)}")
    waiting = waiting_groups(settings, results)
    print(f"# part {args.part[0]}/{args.part[1]}: {len(runs)} runs planned; "
          f"{len(waiting)} groups wait for their lr choice")  # fmt: skip


_SHOWN = {"data.task", "backbone.image_size", "train.epochs", "search.param_budget"}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings: SuiteSettings = override(SuiteSettings(), args.overrides)
    assets = Assets(args.assets, args.runs / "derived")
    from experiments.suite_run import cache_dir

    # a run's config error, refused here: not by each worker that comes to that run
    check_configs(settings, assets, cache_dir(args.runs))
    if args.command == "pack":
        pack_assets(settings, assets)
    elif args.command == "prepare":
        from experiments.suite_run import prepare

        prepare(settings, assets, args.runs)
    elif args.command == "run" and args.dry_run:
        print_plan(settings, assets, args)
    elif args.command == "run" and args.workers > 1:
        from experiments.suite_run import prepare

        claims_folder(args)  # refused before the preparation, not after
        prepare(settings, assets, args.runs)
        return launch_workers(args)
    elif args.command == "run":
        import jax

        jax.config.update("jax_default_matmul_precision", args.matmul_precision)
        if args.compile_cache:
            jax.config.update("jax_compilation_cache_dir", args.compile_cache)
        from experiments.suite_run import execute

        done = execute(settings, assets, args.runs, part=args.part,
                       deadline_s=args.deadline_s, claims=args.claims)  # fmt: skip
        print(f"part {args.part[0]}/{args.part[1]} ran {len(done)} runs")
    else:
        write_report(settings, assets, args.runs, doc=args.doc, figures=args.figures)
    return 0


def claims_folder(args: argparse.Namespace) -> Path:
    """The workers' claims folder (``--claims``, default <runs>/claims), which the launch
    empties; ValueError if it holds anything but claims (empty files): a mistaken ``--claims``
    naming the runs folder, say, would delete the results."""
    claims: Path = args.claims or args.runs / "claims"
    if claims.exists() and (
        not claims.is_dir() or any(p.is_dir() or p.stat().st_size for p in claims.iterdir())
    ):
        raise ValueError(
            f"--claims {claims} holds more than claims (empty files named by run id), and the "
            "launch would delete it: name a folder of its own (the default is <runs>/claims)"
        )
    return claims


def launch_workers(args: argparse.Namespace, *, poll_s: float = 1.0) -> int:
    """Start ``args.workers`` processes of ``run`` on the same part and claims; wait for all.
    Returns 0 if every worker succeeded. Once one fails, stops the others (which could wait on
    its runs), prints the end of its log and returns its code (1 if killed by a signal)."""
    claims = claims_folder(args)
    shutil.rmtree(claims, ignore_errors=True)
    logs = args.runs / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable, "-m", "experiments.offline_suite", "run", "--workers", "1",
        "--assets", str(args.assets), "--runs", str(args.runs), "--claims", str(claims),
        "--part", f"{args.part[0]}/{args.part[1]}",
        *(f"--set={item}" for item in args.overrides),
        *(["--deadline-s", str(args.deadline_s)] if args.deadline_s is not None else []),
        *(["--compile-cache", args.compile_cache] if args.compile_cache else []),
        "--matmul-precision", args.matmul_precision,
    ]  # fmt: skip
    processes, starts = [], []
    for worker in range(args.workers):
        path = logs / f"worker{worker}.log"
        starts.append(path.stat().st_size if path.exists() else 0)  # the log is appended to
        with path.open("a") as log_file:
            processes.append(subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT))
    print(f"{args.workers} workers started; logs in {logs}", flush=True)
    while True:
        codes = [process.poll() for process in processes]
        failed = next((i for i, code in enumerate(codes) if code not in (None, 0)), None)
        if failed is None and None not in codes:
            return 0
        if failed is not None:
            break
        time.sleep(poll_s)
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        process.wait()
    code = codes[failed]
    assert code is not None
    path = logs / f"worker{failed}.log"
    with path.open("rb") as log_file:
        log_file.seek(starts[failed])
        tail = log_file.read().decode(errors="replace").splitlines()[-20:]
    print(f"worker {failed} failed (exit code {code}), the others were stopped; the end of "
          f"{path}:", *tail, sep="\n", file=sys.stderr)  # fmt: skip
    return code if code > 0 else 1  # a signal's is negative: still a failure


def write_report(
    settings: SuiteSettings, assets: Assets, runs: Path, *, doc: Path, figures: Path
) -> None:
    from experiments.suite_report import (
        markdown,
        plot_accuracy_vs_params,
        plot_few_shot,
        summarize,
        write_section,
    )
    from experiments.suite_run import check_results_fit, finished

    results = finished(runs)
    if not results:  # a wrong --runs (or a report before any run) would blank the doc's section
        raise ValueError(
            f"no finished runs under {runs}: give the --runs of `python -m "
            "experiments.offline_suite run`, or run it first"
        )
    check_results_fit(settings, assets, runs, results)
    rows = summarize(settings, results)
    # the doc first: a doc that lost a marker of its section is refused before any figure
    write_section(doc, markdown(settings, rows, results))
    figures.mkdir(parents=True, exist_ok=True)
    for study, name in (("main", "accuracy_vs_params"), ("conv", "conv_accuracy_vs_params")):
        plot_accuracy_vs_params(rows, figures / f"offline_suite_{name}.png", study=study)
    plot_few_shot(rows, figures / "offline_suite_few_shot.png")
    print(f"{len(results)} runs -> {len(rows)} rows in {doc}; figures in {figures}")


if __name__ == "__main__":
    run_main(
        main, timestamps=True,
        resume_hint="rerun the same command to go on (finished runs are kept, a stopped run "
        "resumes from its checkpoints)",
    )  # fmt: skip
