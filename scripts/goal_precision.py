"""Where do the positional tasks' failures end up? Closest approach to the goal, and whether the goal is followed.

On reach, push, pick-place and peg-insert-side a variant moves the goal (and the object) with every episode, and
success needs the hand or object within a few centimetres of it. A failure can be a policy that goes the right way
and stops short, or one that ignores where this episode's goal is and heads for where goals usually are. This
script tells the two apart. It runs a checkpoint on the same evaluation variants as goskill.py's evaluation, with
the run's own policy (GO-Skill, w/o VQ or Prompt-DT) or, with --oracle, with GO-Skill's decoder under the expert
lookahead oracle of scripts/oracle_skills.py, or, with --expert, MetaWorld's noise-free scripted expert alone
(the reference). Per task it reports:

- success (at any step) and return, as goskill.py's evaluation;
- closest approach: the median over episodes of the smallest `obj_to_target` MetaWorld reports in an episode
  (metres -> cm; on reach the tool centre to the goal, otherwise the object to its goal; success needs it under
  5 cm on reach and push, 7 cm on pick-place and peg-insert-side, where it is the peg head's distance with its y
  and z doubled);
- goal gain per axis x, y, z: across episodes, the least-squares slope of the tracked point (the hand position
  the observation reports on reach, the object otherwise), taken at that closest step, on the goal's position.
  1 means it goes wherever the variant puts the goal; 0 means it ends in the same place whatever the goal; in
  between, it is pulled toward an average goal. Reported where the goal moves along the axis between variants
  (std > 1 cm), with that std. With 20 episodes a gain is a rough figure (about +- 0.2 where the approach is
  precise, more where it is not).
  Compare a policy with the --expert row rather than with 1: on peg-insert-side the peg slides into the hole
  along x, and the expert's own x gain reads 1.6.

    python scripts/goal_precision.py runs/mt10-near-optimal-default-seed0/checkpoint.pt [--oracle | --expert] [--episodes 20]

All episodes run in this one process on the CPU in fp32, one environment each."""

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Literal

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import collect_data  # noqa: E402
import goskill  # noqa: E402
import oracle_skills  # noqa: E402

POSITIONAL_TASKS = "reach-v3,push-v3,pick-place-v3,peg-insert-side-v3"
HAND, OBJECT, GOAL = slice(0, 3), slice(4, 7), slice(36, 39)   # observation layout of MetaWorld 3 (39 dims)
MOVING_AXIS_STD = 0.01                                           # metres: below this the goal barely moves


def tracked_points(is_reach: np.ndarray, obs: np.ndarray) -> np.ndarray:
    """(E, 3): per env, the hand on reach (it has no object), the first object otherwise. is_reach (E,) bool."""
    return np.where(is_reach[:, None], obs[:, HAND], obs[:, OBJECT])


def goal_gain(point: np.ndarray, goal: np.ndarray) -> list:
    """Per axis, the least-squares slope of point (N, 3) on goal (N, 3) and the goal's std, or None for an axis
    along which the goal (nearly) does not move."""
    out = []
    for axis in range(3):
        g, p = goal[:, axis], point[:, axis]
        std = float(g.std())
        if std < MOVING_AXIS_STD:
            out.append(None)
            continue
        slope = float(((g - g.mean()) * (p - p.mean())).sum() / ((g - g.mean()) ** 2).sum())
        out.append({"gain": slope, "goal_std_cm": 100 * std})
    return out


def check_tasks(trainer: goskill.Trainer, tasks: list[str]) -> None:
    """Refuses (ValueError, naming the fix) an empty task list or a task the checkpoint was not trained on."""
    if not tasks:
        raise ValueError(f"no task given; pass --tasks with some of {', '.join(trainer.tasks)}")
    missing = [t for t in tasks if t not in trainer.tasks]
    if missing:
        raise ValueError(f"{', '.join(missing)} not among the checkpoint's tasks ({', '.join(trainer.tasks)})")


def run(trainer: goskill.Trainer, tasks: list[str], episodes: int, seed: int,
        chooser: Literal["policy", "oracle", "expert"], expert_aim: str | None = None) -> dict:
    """Per task, success, return, closest approach and goal gains over `episodes` episodes, run by
    oracle_skills.rollout on the evaluation's variants, prompts and target returns. chooser: "policy" (the run's
    own), "oracle" (GO-Skill's decoder under the expert-lookahead oracle) or "expert" (MetaWorld's noise-free
    scripted policy acts alone: the reference the data's best episodes follow), the scripted policies aimed as
    expert_aim says (collect_data.EXPERT_AIMS; default: the aim of the run's data, oracle_skills.data_aim)."""
    check_tasks(trainer, tasks)
    is_reach = np.repeat([task == "reach-v3" for task in tasks], episodes)    # (E,): env e runs tasks[e // episodes]
    closest = np.full(len(is_reach), np.inf)
    at_closest = np.zeros((len(is_reach), 3))                       # tracked point at the closest step
    goal = np.zeros((len(is_reach), 3))

    def observe(obs: np.ndarray, infos: list) -> None:
        distance = np.array([info["obj_to_target"] for info in infos])    # every MetaWorld 3 task reports it
        nearer = distance < closest
        closest[nearer] = distance[nearer]
        at_closest[nearer] = tracked_points(is_reach, obs)[nearer]
        goal[:] = obs[:, GOAL]                                       # fixed within an episode

    task_ids = [trainer.tasks.index(t) for t in tasks]
    result = oracle_skills.rollout(trainer, task_ids, episodes, seed, chooser, observe, expert_aim)
    per_task = {}
    for task, ti in zip(tasks, task_ids):
        m = result["task"] == ti
        per_task[task] = {"success_rate": float(result["success"][m].mean()),
                          "return_mean": float(result["return"][m].mean()),
                          "closest_approach_cm": float(100 * np.median(closest[m])),
                          "goal_gain_xyz": goal_gain(at_closest[m], goal[m])}
    return per_task


def format_gain(entry) -> str:
    return "     -" if entry is None else f"{entry['gain']:>6.2f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="checkpoint.pt of a finished run (GO-Skill, w/o VQ or Prompt-DT)")
    choice = parser.add_mutually_exclusive_group()
    choice.add_argument("--oracle", action="store_true",
                        help="GO-Skill only: skills from the expert-lookahead oracle instead of the skill policy")
    choice.add_argument("--expert", action="store_true",
                        help="MetaWorld's noise-free scripted expert acts instead, on the same variants: the "
                             "reference (the checkpoint then only gives the task list, evaluation seed and data's aim)")
    parser.add_argument("--expert-aim", choices=collect_data.EXPERT_AIMS, default=None,
                        help="where the scripted experts of --expert and --oracle aim (collect_data.py "
                             "--expert-aim; default: the aim the run's data was generated with)")
    parser.add_argument("--tasks", default=POSITIONAL_TASKS, help=f"comma-separated (default {POSITIONAL_TASKS})")
    parser.add_argument("--episodes", type=oracle_skills.positive_int, default=20,
                        help="episodes per task (default 20)")
    parser.add_argument("--out", default="", help="JSON file of the figures (default: none)")
    args = parser.parse_args()

    path = Path(args.checkpoint)
    try:
        trainer = goskill.load_finished_run(path, torch.device("cpu"), path.parent)
        if args.oracle:
            oracle_skills.require_skills(trainer, path)
        tasks = list(dict.fromkeys(t.strip() for t in args.tasks.split(",") if t.strip()))
        check_tasks(trainer, tasks)
        if args.expert_aim is not None and not (args.expert or args.oracle):
            raise ValueError("--expert-aim applies to --expert and --oracle only (the scripted experts)")
    except ValueError as err:                  # bad input only: an error inside the rollout keeps its traceback
        print(f"error: {err}", file=sys.stderr)
        return 2
    chooser = "oracle" if args.oracle else "expert" if args.expert else "policy"
    aim = args.expert_aim or oracle_skills.data_aim(trainer, path)
    per_task = run(trainer, tasks, args.episodes, trainer.cfg.eval_seed, chooser, aim)
    print(f"\n{path} ({chooser}, {args.episodes} episodes per task)")
    print(f"{'task':<22}{'success':>8}{'closest cm':>11}   goal gain x / y / z")
    for task, r in per_task.items():
        gains = " ".join(format_gain(g) for g in r["goal_gain_xyz"])
        print(f"{task:<22}{100 * r['success_rate']:>7.0f}%{r['closest_approach_cm']:>11.1f}   {gains}")
    if args.out:
        goskill.atomic_write_json({"checkpoint": str(path), "config": dataclasses.asdict(trainer.cfg),
                                   "skills_chosen_by": chooser, "expert_aim": aim,
                                   "episodes_per_task": args.episodes,
                                   "eval_seed": trainer.cfg.eval_seed, "per_task": per_task}, Path(args.out))
        print(f"results: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
