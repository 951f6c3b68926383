"""Start-up time of the `lth` commands: those that do not train (export, aggregate, compare) import no Lightning.

Each command's `--help` runs in a fresh process, and so do the imports the commands need to work
(`lth_lightning.export.ticket`, the aggregation module, `lightning.pytorch`), all taking turns so that
they see the same machine. The table gives the median wall time, the ratio to `lth fit --help`,
and whether Lightning was loaded.

    python benchmarks/startup.py              # 7 rounds
    python benchmarks/startup.py --reps 1     # a smoke test
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

COMMANDS = {
    "lth --help": ["--help"],
    "lth export --help": ["export", "--help"],
    "lth aggregate --help": ["aggregate", "--help"],
    "lth compare --help": ["compare", "--help"],
    "lth fit --help": ["fit", "--help"],
}
IMPORTS = {
    "import lth_lightning.export.ticket (what `lth export` works with)": "lth_lightning.export.ticket",
    "import lth_lightning.experiment.dashboard.across_runs (`lth aggregate`, `lth compare`)": (
        "lth_lightning.experiment.dashboard.across_runs"
    ),
    "import lightning.pytorch": "lightning.pytorch",
}
IMPORT_PROBE = (
    "import importlib, sys; importlib.import_module({module!r})\n"
    "print('LIGHTNING', any(m.split('.')[0] == 'lightning' for m in sys.modules), file=sys.stderr)"
)
PROBE = (
    "import sys; from lth_lightning.cli.commands import main\n"
    "try:\n    main({args!r})\nexcept SystemExit:\n    pass\n"
    "print('LIGHTNING', any(m.split('.')[0] == 'lightning' for m in sys.modules), file=sys.stderr)"
)


def _run(code: str) -> tuple[float, bool]:
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=300)
    seconds = time.perf_counter() - start
    if "LIGHTNING" not in result.stderr:
        raise RuntimeError(f"{code!r} failed:\n{result.stderr[-2000:]}")
    return seconds, "LIGHTNING True" in result.stderr


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=7, help="rounds over all commands (default 7)")
    args = parser.parse_args(argv)
    probes = {f"`{name}`": PROBE.format(args=command) for name, command in COMMANDS.items()}
    probes.update({name: IMPORT_PROBE.format(module=module) for name, module in IMPORTS.items()})
    times: dict[str, list[float]] = {name: [] for name in probes}
    lightning: dict[str, bool] = {}
    for _ in range(args.reps):
        for name, code in probes.items():
            seconds, loaded = _run(code)
            times[name].append(seconds)
            lightning[name] = loaded
    reference = statistics.median(times["`lth fit --help`"])
    print("| command | median s | x `lth fit --help` | imports Lightning |")
    print("| --- | --- | --- | --- |")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.2f} | {median / reference:.2f} | {'yes' if lightning[name] else 'no'} |")


if __name__ == "__main__":
    main()
