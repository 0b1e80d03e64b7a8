"""`vfm3d backbones`: the registry with each model's input rules and token grid.

Backbones without local weights are described from their tiny config (same architecture class,
same rules); those that cannot be built here are listed with the reason.
"""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("names", nargs="*", help="only these backbones (default: all)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def describe_all(names: list[str] | None = None) -> list[dict]:
    """One dict per backbone: registry facts plus ``Backbone.describe()`` (or ``error``)."""
    import torch

    from vfm3d.backbones.registry import ADAPTERS, ZOO, available, load

    torch.set_num_threads(1)
    rows = []
    for name in names or available():
        adapter = ZOO[name][0] if name in ZOO else name
        if adapter not in ADAPTERS:
            raise ValueError(f"unknown backbone {name!r}; available: {', '.join(available())}")
        spec = ADAPTERS[adapter]
        row = {"name": name, "family": spec.family, "description": spec.description}
        try:
            backbone = load(name) if name in ZOO else load(name, tiny=True)
            info = backbone.describe()
            info.pop("name", None)
            row.update(
                info,
                needs_geometry=backbone.needs_geometry,
                described_from=("weights" if name in ZOO else "tiny config"),
            )
        except Exception as error:  # report, keep listing the others
            row["error"] = f"{type(error).__name__}: {error}"
        rows.append(row)
    return rows


def format_table(rows: list[dict]) -> str:
    header = ["name", "family", "diffusion", "frame/size rules", "grid (t-stride, patch)"]
    lines = []
    for row in rows:
        if "error" in row:
            lines.append([row["name"], row["family"], "?", f"unavailable: {row['error']}", ""])
            continue
        causal = " causal" if row["causal_first_frame"] else ""
        grid = f"{row['temporal_stride']}{causal}, {row['patch_size'][0]}x{row['patch_size'][1]}"
        lines.append(
            [row["name"], row["family"], "yes" if row["diffusion"] else "no", row["rules"], grid]
        )
    widths = [max(len(str(x)) for x in col) for col in zip(header, *lines)]
    out = ["  ".join(h.ljust(w) for h, w in zip(header, widths))]
    out.append("  ".join("-" * w for w in widths))
    out += ["  ".join(str(x).ljust(w) for x, w in zip(line, widths)) for line in lines]
    out.append("")
    out.append("Rules of models without local weights are those of their tiny config; real")
    out.append("weights can fix other sizes (see `vfm3d backbones NAME --json` and the README).")
    return "\n".join(line.rstrip() for line in out)


def main(args: argparse.Namespace) -> int:
    rows = describe_all(args.names or None)
    print(json.dumps(rows, indent=2) if args.json else format_table(rows))
    return 0
