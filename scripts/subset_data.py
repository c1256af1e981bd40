"""Copies the episodes of a data folder whose behaviour quality is at least --min-quality into a new data folder,
as complete task files that goskill.py and collect_data.load_dataset read like any other.

A probe of how much the noisy part of the stream costs, not one of the paper's datasets (those are Near-Optimal =
the whole stream and Sub-Optimal = its first half, README "Data collection"). Quality q_i depends only on the
episode index (collect_data.episode_quality), so every task keeps the same episodes: with 200 episodes per task,
--min-quality 0.75 keeps episodes 100-199, the second half of the stream.

    python scripts/subset_data.py --min-quality 0.75 --out-dir runs/data-q075
    python goskill.py --tasks mt10 --data-dir runs/data-q075 --out runs/probe-q075-seed0

Train on the subset with --dataset near-optimal (all of its episodes); sub-optimal would take the first half of
the subset. Each file's metadata records where it came from ("subset_of")."""

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import collect_data  # noqa: E402


# Metadata of the source file that describes the source, not the subset (the subset's own command is recorded in
# "subset_of"); "dataset_*" keys are added by load_dataset, not stored.
SOURCE_ONLY_KEYS = ("sub_optimal_episodes", "created", "command")


def quality_mask(task: str, data: dict, min_quality: float, data_dir) -> np.ndarray:
    """Which episodes of one task's loaded data have quality >= min_quality, (n,) bool. Raises ValueError if none
    does (also used by bc_reference.py)."""
    keep = data["quality"] >= min_quality
    if not keep.any():
        raise ValueError(f"{task}: no episode of quality >= {min_quality} in {data_dir} "
                         f"(highest {data['quality'].max():.3f}); lower --min-quality")
    return keep


def subset(tasks: list[str], data_dir: Path, out_dir: Path, min_quality: float) -> dict[str, int]:
    """Writes out_dir/<task>.npz for each task: the episodes of data_dir/<task>.npz with quality >= min_quality.
    Returns the number of episodes kept per task. Raises ValueError if a task would keep none or out_dir exists.

    All files are written into a sibling folder that is renamed to out_dir at the end, so out_dir is either
    complete or absent: goskill.py would otherwise fill a half-written subset's missing tasks with whole streams."""
    if out_dir.exists():
        raise ValueError(f"{out_dir} already exists: remove it, or choose another --out-dir")
    selected = {}
    for task in tasks:                                                 # check everything before writing anything
        data = collect_data.load_dataset(task, "near-optimal", data_dir)   # all N episodes; raises if missing
        selected[task] = (data, quality_mask(task, data, min_quality, data_dir))
    partial = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)                         # left by an interrupted earlier call
    partial.mkdir(parents=True)
    for task, (data, keep) in selected.items():
        source = data.pop("metadata")
        arrays = {name: array[keep] for name, array in data.items()}
        metadata = {key: value for key, value in source.items()
                    if not key.startswith("dataset_") and key not in SOURCE_ONLY_KEYS}
        metadata.update(episodes=int(keep.sum()), subset_of={
            "data_dir": str(data_dir), "episodes": source["episodes"], "min_quality": min_quality,
            "command": " ".join(sys.argv), "episode_indices": np.flatnonzero(keep).tolist()})
        collect_data.write_task_file(collect_data.dataset_path(task, partial), arrays, metadata)
    os.replace(partial, out_dir)
    return {task: int(keep.sum()) for task, (_, keep) in selected.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", default="mt10", help="mt10, mt30, mt50 or a comma list of task names")
    parser.add_argument("--data-dir", default="data", help="folder of complete task files (default data)")
    parser.add_argument("--out-dir", required=True, help="folder to write the subset's task files into")
    parser.add_argument("--min-quality", type=float, required=True, help="keep episodes with quality >= this")
    args = parser.parse_args()
    try:
        tasks = collect_data.resolve_tasks(args.tasks)
        kept = subset(tasks, Path(args.data_dir), Path(args.out_dir), args.min_quality)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(kept))
    return 0


if __name__ == "__main__":
    sys.exit(main())
