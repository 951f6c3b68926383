"""The ``lth`` command: LightningCLI's ``fit`` (the experiment) and friends; ``export``, ``aggregate``, ``compare``,
``report``, ``dashboard``.

``export``, ``aggregate``, ``compare``, ``report`` and ``dashboard`` read run folders and do not import Lightning.
A user error (an option out of range, a missing data folder, a metric that was never logged) prints its
message and exits with status 2, as argparse does; ``LTH_TRACEBACK=1`` shows the traceback.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Callable, MutableMapping, Sequence
from pathlib import Path

__all__ = ["main"]

TRAINING = ("fit", "validate", "test", "predict")
HELP = """usage: lth [-h] {fit,validate,test,predict,export,aggregate,compare,report,dashboard} ...

Find lottery tickets with PyTorch Lightning.

commands:
  fit        run a lottery-ticket experiment: rounds of train, test, prune, rewind (LightningCLI)
  validate   LightningCLI validate, test, predict: one Trainer call with the lottery callback
  test
  predict
  export     export a finished round's ticket: plain state_dict, masks and a JSON card
  aggregate  combine the seeds of an experiment run as separate jobs: results_seeds.csv, plots, TensorBoard
  compare    overlay several experiments in one plot and one TensorBoard logdir
  report     the results as tables (mean [min, max] over seeds) and the papers' claims checked on them
  dashboard  open a folder's story in TensorBoard: its summary runs, smoothing 0

`lth COMMAND --help` documents each command.
"""


def _export(argv: Sequence[str]) -> None:
    parser = argparse.ArgumentParser(
        prog="lth export", description="Export a finished round's ticket.", allow_abbrev=False
    )
    parser.add_argument("run_dir", type=Path, help="run folder (<experiment>/seed_<s>) or experiment folder")
    parser.add_argument(
        "--round",
        required=True,
        help="round to export: a number (0 is the dense network), last, or best: the pruned round with the best test "
        "metric (the sparser on a tie; never round 0)",
    )
    parser.add_argument("--out", type=Path, required=True, help="ticket file to write (a .json card goes beside it)")
    parser.add_argument(
        "--seed", type=int, default=None, help="the seed's run, in an experiment folder of several seeds"
    )
    parser.add_argument("--prefix", default="net.", help="prefix of the plain network's entries (default: net.)")
    args = parser.parse_args(argv)  # before the imports below: --help answers at once
    from lth_lightning.experiment.record.round_result import format_value
    from lth_lightning.export.ticket import export_ticket
    from lth_lightning.metric_names import MetricNames

    round_ = int(args.round) if args.round.lstrip("-").isdigit() else args.round
    card = export_ticket(args.run_dir, round_, args.out, prefix=args.prefix, seed=args.seed)
    names = MetricNames.from_config(card["config"])
    value, card_file = format_value(card["metrics"].get(names.test_column)), args.out.with_suffix(".json").name
    print(
        f"Exported round {card['round']}: {100 * card['density']:.2f}% of weights ({card['alive']}/{card['total']}), "
        f"{names.test} {value} -> {args.out} (+ {card_file})"
    )


def _print_table(table: Callable[[], str]) -> None:
    """Print ``lth report``'s table of what was just written; where the report refuses the folders (a round still
    running), say why instead: the files written hold what is done."""
    try:
        print(table())
    except ValueError as reason:
        print(f"(No table: {reason})")


def _aggregate(argv: Sequence[str]) -> None:
    parser = argparse.ArgumentParser(
        prog="lth aggregate",
        description="Combine the seeds of one experiment, run as separate jobs, into results_seeds.csv/.json, plots "
        "with min-max bands and a TensorBoard summary: what `lth fit --lottery.seeds` writes in one process; then "
        "print lth report's tables of them.",
        allow_abbrev=False,
    )
    parser.add_argument("folders", nargs="+", type=Path, help="an experiment folder (its seed_<s>/ runs), or runs")
    parser.add_argument(
        "--out", type=Path, default=None, help="where to write (default: the folder that holds the runs)"
    )
    args = parser.parse_args(argv)
    from lth_lightning.experiment.dashboard.across_runs import aggregate_runs
    from lth_lightning.experiment.record.aggregate import find_runs
    from lth_lightning.report.command import closing_summary

    runs = find_runs(args.folders)
    out = args.out
    if out is None:  # the experiment folder: the runs' common parent
        parents = {run.root.parent.resolve() for run in runs}
        if len(parents) != 1:
            parser.error("the runs are in several folders: say where to write with --out")
        out = parents.pop()
    aggregate_runs(runs, out)
    _print_table(lambda: closing_summary(out, runs))
    print(f"\nAggregated {len(runs)} runs (seeds {[r.seed for r in runs]}) into {Path(out).resolve()}")


def _compare(argv: Sequence[str]) -> None:
    parser = argparse.ArgumentParser(
        prog="lth compare",
        description="Overlay several experiments (rewind 0 vs late rewinding, global vs layerwise, ...): their tickets "
        "side by side as lth report's table, one accuracy-vs-weights-remaining plot and one TensorBoard logdir "
        "with a run per experiment.",
        allow_abbrev=False,
    )
    parser.add_argument("folders", nargs="+", type=Path, help="experiment folders (or runs)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the plot and the TensorBoard logdir")
    parser.add_argument("--labels", nargs="+", default=None, help="one label per folder (default: folder names)")
    args = parser.parse_args(argv)
    from lth_lightning.experiment.dashboard.across_runs import compare_runs
    from lth_lightning.report.command import comparison_table

    experiments = compare_runs(args.folders, args.out, args.labels)
    _print_table(lambda: comparison_table(args.folders, list(experiments)))
    out = args.out.resolve()
    plot = out / "accuracy_vs_weights_remaining.png"
    print(f"Compared {', '.join(experiments)}: {plot}; the TensorBoard runs: lth dashboard {out}")


def _report_parser() -> argparse.ArgumentParser:
    from lth_lightning.report.papers import available_papers  # paths only: --help stays quick

    parser = argparse.ArgumentParser(
        prog="lth report",
        description="The results of finished experiments as tables: every series (the ticket at the end and at "
        "early stopping, the early-stopping step, each control, instability, each control's gap to the ticket) by "
        "round, mean [min, max] over the seeds; with --claims, each claim of a paper checked on them: is the effect on "
        "the claimed side, and as large as the paper's figure, each by a named test at level 0.05 "
        "(docs/results.md). Reads the folders, writes nothing unless --save; needs no Lightning.",
        allow_abbrev=False,
    )
    parser.add_argument("folders", nargs="*", type=Path, help="experiment folders (their seed_<s>/ runs), or runs")
    parser.add_argument(
        "--format", choices=("md", "csv"), default="md", help="md: Markdown tables (default); csv: a column per number"
    )
    parser.add_argument(
        "--claims",
        nargs="+",
        default=[],
        metavar="NAME",
        help=f"papers whose claims to check ({', '.join(available_papers())}); `list` shows their claims",
    )
    parser.add_argument(
        "--test",
        choices=("t", "wilcoxon"),
        default="t",
        help="the test behind each verdict, at level 0.05 with Holm's correction over a claim's densities: t, a "
        "paired t-test (default); wilcoxon, the exact signed-rank test (needs more seeds)",
    )
    parser.add_argument(
        "--save",
        nargs="+",
        type=Path,
        default=None,
        metavar="DIR",
        help="also keep what the report needs of each folder (configs and results, no weights) in DIR, one per folder",
    )
    return parser


def _report(argv: Sequence[str]) -> None:
    parser = _report_parser()
    args = parser.parse_args(argv)
    from lth_lightning.report.command import claims_list, report

    if args.claims == ["list"]:
        print(claims_list(), end="")
        return
    if not args.folders:
        parser.error("give at least one experiment folder (or --claims list)")
    if args.save is not None and len(args.save) != len(args.folders):
        parser.error(f"--save takes one folder per experiment: {len(args.save)} for {len(args.folders)} folders")
    print(report(args.folders, args.format, args.claims, args.save, args.test), end="")


def dashboard_url(host: str, port: int) -> str:
    """The Custom Scalars page with smoothing 0 (TensorBoard reads it from the URL; its default is 0.6)."""
    return f"http://{host}:{port}/#custom_scalars&_smoothingWeight=0"


def _dashboard(argv: Sequence[str]) -> None:
    parser = argparse.ArgumentParser(
        prog="lth dashboard",
        description="Open a folder's story in TensorBoard: only its summary runs (the ticket and each control, one "
        "colour each, named in the tooltips), on the Custom Scalars page with smoothing 0. Ctrl-C stops it.",
        allow_abbrev=False,
    )
    parser.add_argument(
        "folder", type=Path, help="an experiment folder, a run folder (seed_<s>), or lth compare's --out"
    )
    parser.add_argument("--port", type=int, default=6006, help="TensorBoard's port (default: 6006)")
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on (default: 127.0.0.1)")
    args = parser.parse_args(argv)
    from lth_lightning.experiment.record.paths import dashboard_logdir

    logdir = dashboard_logdir(args.folder)
    print(
        f"TensorBoard on {logdir}\nOpen {dashboard_url(args.host, args.port)}\n(Once per browser: in the settings "
        "on the left, untick 'Ignore outliers in chart scaling', so that every round's point is on its chart; "
        "TensorBoard remembers it.)",
        flush=True,
    )
    command = [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir), "--host", args.host]
    os.execv(sys.executable, [*command, "--port", str(args.port)])  # this process becomes TensorBoard


def _training(argv: Sequence[str] | None) -> None:
    from lth_lightning.cli.lottery_cli import LotteryCLI
    from lth_lightning.experiment.training.trainer import quiet_lightning

    interrupted = []

    def interrupt(signum: int, frame: object) -> None:
        interrupted.append(signum)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, interrupt)
    try:
        with quiet_lightning():  # LightningCLI's own Trainer says the device lines; the rounds' Trainers do not again
            LotteryCLI(args=None if argv is None else list(argv))
    except (KeyboardInterrupt, SystemExit) as stop:
        if interrupted or isinstance(stop, KeyboardInterrupt):  # Lightning turns Ctrl-C into exit status 1
            raise SystemExit(INTERRUPTED) from None
        raise
    finally:
        signal.signal(signal.SIGINT, previous)


def _user_errors() -> tuple[type[BaseException], ...]:
    """Errors whose message says what to change; anything else is a bug and keeps its traceback."""
    errors: list[type[BaseException]] = [ValueError, FileNotFoundError, FloatingPointError]
    download = sys.modules.get("lth_lightning.data.download")  # only a loaded module raises its errors: no import here
    if download is not None:
        errors.append(download.DatasetFileError)
    return tuple(errors)


COMMANDS: dict[str, Callable[[Sequence[str]], None]] = {
    "export": _export,
    "aggregate": _aggregate,
    "compare": _compare,
    "report": _report,
    "dashboard": _dashboard,
}


def _rank() -> int:
    for variable in ("RANK", "LOCAL_RANK", "SLURM_PROCID"):
        if os.environ.get(variable, "").isdigit():
            return int(os.environ[variable])
    return 0


# OpenMP settings of torch's CPU threads that `lth` chooses unless the user set any of them (benchmarks/neighbour.py):
# threads that finished their work sleep after a short spin instead of spinning ~300000 times, so that a second
# torch process on the machine (another seed in another terminal) does not make every step tens of times slower.
OPENMP_DEFAULTS = {"GOMP_SPINCOUNT": "1000"}  # GNU OpenMP (libgomp), which torch's Linux wheels use
OPENMP_SETTINGS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")


def calm_openmp(environ: MutableMapping[str, str]) -> dict[str, str]:
    """Set :data:`OPENMP_DEFAULTS` in ``environ`` (before torch loads) unless one of :data:`OPENMP_SETTINGS` is set.

    Returns:
        What was set (nothing when the user chose: their setting always wins).
    """
    if any(name in environ for name in OPENMP_SETTINGS):
        return {}
    environ.update(OPENMP_DEFAULTS)
    return dict(OPENMP_DEFAULTS)


INTERRUPTED = 128 + signal.SIGINT  # a shell's exit status after Ctrl-C (130)


def main(args: Sequence[str] | None = None) -> None:
    """Entry point of the ``lth`` console script."""
    argv = list(sys.argv[1:] if args is None else args)
    if not argv or argv[0] in ("-h", "--help"):
        print(HELP, end="")
        return
    command = argv[0]
    if command in TRAINING and "torch" not in sys.modules:  # read by OpenMP when torch loads, not after
        calm_openmp(os.environ)
    if command in TRAINING and "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # `--model my_cnn.SmallCNN` beside my_cnn.py, as `python -m` imports
    run = COMMANDS.get(command)
    if run is None and command not in TRAINING:
        print(HELP, end="", file=sys.stderr)
        sys.exit(f"lth: error: unknown command {command!r}; choose from {', '.join([*TRAINING, *COMMANDS])}.")
    try:
        if run is not None:
            run(argv[1:])
        else:
            _training(None if args is None else argv)  # LightningCLI reads sys.argv itself when given none
    except _user_errors() as err:
        if os.environ.get("LTH_TRACEBACK"):
            raise
        rank = _rank()
        where = f" (rank {rank})" if rank else ""
        print(f"lth {command}: error{where}: {err}", file=sys.stderr)
        sys.exit(2)
