"""The `vfm3d` command: a thin dispatcher over subcommands.

Each subcommand lives in its own module that exposes
``add_arguments(parser: argparse.ArgumentParser) -> None`` and ``main(args) -> int``.
Only the chosen subcommand's module is imported, so `vfm3d --help` is instant and a
heavy optional dependency (diffusers, matplotlib) is only needed by the command that uses it.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "world": ("vfm3d.world.cli", "generate a procedural 3D world dataset (clips with exact depth)"),
    "traj-eval": ("vfm3d.metrics.cli", "ATE / RPE between two TUM-format trajectories"),
    "backbones": ("vfm3d.backbones.cli", "list registered backbones and their input rules"),
    "extract": ("vfm3d.features.cli", "extract backbone features into a resumable cache"),
    "probe": ("vfm3d.probe.cli", "train / evaluate the VGGT-like 3D probe"),
    "sweep": ("vfm3d.probe.sweep_cli", "backbones x layers x timesteps probe sweep with report"),
    "demo": ("vfm3d.demo", "the embedded end-to-end demo (world, backbones, sweep, report)"),
    "data": ("vfm3d.data.cli", "inspect and convert real datasets (CO3Dv2, DL3DV, TUM, ...)"),
    "zoo": ("vfm3d.zoo.cli", "train the miniature model zoo and run its experiment"),
    "view": ("vfm3d.report.view_cli", "show a run folder, clip or PLY in a 3D viewer (viser)"),
    "reconstruct": (
        "vfm3d.recon4d.cli",
        "depth, cameras and point clouds of a video / image folder / clips (PLY, GLB, COLMAP, TUM)",
    ),
    "recon4d": (
        "vfm3d.recon4d.eval_cli",
        "score 4D reconstruction (Sora3R, the 3D expert, gt, floor): ATE/RPE, video depth",
    ),
    "consistency": (
        "vfm3d.jointgen.consistency_cli",
        "MEt3R-style 3D-consistency score of videos / image folders / clips (lower is better)",
    ),
    "generate": (
        "vfm3d.jointgen.generate_cli",
        "videos from a caption with a joint generator (JOG3R T2V; --cameras: T2V+C)",
    ),
    "cameras": (
        "vfm3d.jointgen.cameras_cli",
        "cameras and point maps of a video / image folder / clips from a joint generator (V2C)",
    ),
    "jointgen": (
        "vfm3d.jointgen.cli",
        "evaluate joint generators (eval: consistency, Frechet, V2C cameras; compare: one table)",
    ),
    "spatial": (
        "vfm3d.spatial.cli",
        "spatial questions (VSI-Bench's 8 task types) from world room clips",
    ),
    "ask": (
        "vfm3d.spatial.ask_cli",
        "ask a VG-LLM model a spatial question about a video / image folder / clip",
    ),
}


def _top_level_help() -> str:
    lines = ["usage: vfm3d <command> [options]", "", "commands:"]
    width = max(len(name) for name in COMMANDS)
    for name, (_, help_text) in COMMANDS.items():
        lines.append(f"  {name.ljust(width)}  {help_text}")
    lines += ["", "Run `vfm3d <command> --help` for the options of one command."]
    return "\n".join(lines)


def build_parser(command: str) -> argparse.ArgumentParser:
    """Build the argument parser of one subcommand (imports only that module)."""
    module_name, help_text = COMMANDS[command]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog=f"vfm3d {command}", description=help_text)
    module.add_arguments(parser)
    parser.set_defaults(_main=module.main)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `vfm3d` console script."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(_top_level_help())
        return 0
    if args[0] in ("-V", "--version"):
        from vfm3d import __version__

        print(__version__)
        return 0
    command = args[0]
    if command not in COMMANDS:
        print(f"vfm3d: unknown command {command!r}\n\n{_top_level_help()}", file=sys.stderr)
        return 2
    parser = build_parser(command)
    parsed = parser.parse_args(args[1:])
    from vfm3d.utils.allocator import tune_allocator

    tune_allocator()  # this process only (see vfm3d.utils.allocator)
    try:
        return int(parsed._main(parsed) or 0)
    except (ValueError, FileNotFoundError, FileExistsError) as error:
        # User-facing errors: one clear line, no traceback.
        print(f"vfm3d {command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
