"""`vfm3d sweep --spec SPEC.toml --out DIR`: run or resume a probe sweep and write its report."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--spec", required=True, help="sweep spec (TOML); see docs/sweep.md")
    parser.add_argument("--out", required=True, help="output folder (resumable)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def main(args: argparse.Namespace) -> int:
    from pathlib import Path

    from vfm3d.probe.sweep import load_spec, run_sweep
    from vfm3d.report.tables import to_markdown

    spec = load_spec(args.spec)
    rows = run_sweep(spec, args.out, progress=not args.quiet)
    print(to_markdown(rows))
    print(f"report: {(Path(args.out) / 'report.html').resolve()}")
    return 0
