"""A checkpoint's size and load time as it is and written again in the current format.

The current format (2) stores equal arrays once, as the snapshots of one seed in a pool carry
the same first guess. For each checkpoint this reads it, writes its arrays and metadata again
with :func:`forecast.checkpoint.save_checkpoint` to a temporary folder, checks that the copy
loads the same arrays and metadata (format and version aside), and prints both files' sizes,
how many arrays each stores and the median seconds of ``load_checkpoint`` over ``--repeat``
reads.

Usage::

    .venv/bin/python benchmarks/bench_checkpoint_size.py POOL.safetensors [MORE ...] [--repeat 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from safetensors import safe_open

from forecast.checkpoint import load_checkpoint, save_checkpoint

MIB = 2**20


def stored_arrays(path: Path) -> int:
    """How many arrays the file itself holds (shared ones once)."""
    with safe_open(str(path), framework="numpy") as f:
        return len(f.keys())


def load_seconds(path: Path, repeat: int) -> float:
    """Median wall seconds of ``load_checkpoint(path)``."""
    runs = []
    for _ in range(repeat):
        t = time.perf_counter()
        load_checkpoint(path)
        runs.append(time.perf_counter() - t)
    return float(np.median(runs))


def same_content(arrays: dict, meta: dict, path: Path) -> bool:
    """Whether the checkpoint at ``path`` loads ``arrays`` (names, dtypes, values) and ``meta``
    (format and version aside)."""
    again, again_meta = load_checkpoint(path)

    def plain(m: dict) -> dict:
        return {k: v for k, v in m.items() if k not in ("format", "version")}

    return (
        plain(meta) == plain(again_meta)
        and arrays.keys() == again.keys()
        and all(
            arrays[n].dtype == again[n].dtype and np.array_equal(arrays[n], again[n])
            for n in arrays
        )
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoints", nargs="+", type=Path)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    print(
        "| checkpoint | format | MiB | arrays stored / loaded | load s | now: MiB | stored ", end=""
    )
    print("| load s |")
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for path in args.checkpoints:
            arrays, meta = load_checkpoint(path)
            again = save_checkpoint(Path(tmp) / path.name, arrays, meta)
            if not same_content(arrays, meta, again):
                raise SystemExit(f"{path}: the copy in the current format loads other content")
            print(
                f"| {path} | {meta['format']} | {path.stat().st_size / MIB:.1f} | "
                f"{stored_arrays(path)} / {len(arrays)} | {load_seconds(path, args.repeat):.2f} | "
                f"{again.stat().st_size / MIB:.1f} | {stored_arrays(again)} | "
                f"{load_seconds(again, args.repeat):.2f} |"
            )
            again.unlink()


if __name__ == "__main__":
    main()
