"""A reference for the imitation problem itself: one small MLP per task, trained by behaviour cloning (MSE on the
actions) on that task's data alone, evaluated as goskill.py evaluates (the same "eval" variants, 500 steps,
success at any step, return over the episode).

What it answers (README, "Which level limits success"): how far a plain imitator gets on our data, and how much
further it gets when the noisy part of the stream is left out (--min-quality). An MSE policy averages the actions
of every episode that visits a state, and most episodes of the stream mix uniform random steps into the
expert's (collect_data.behaviour_action), so a gap between --min-quality 0 and 0.8 is what the noise costs an
imitator that cannot tell good episodes from bad. It is not a multi-task method: every task gets its own network
and its own state normalisation, and sees no prompt, return or history.

    python scripts/bc_reference.py --tasks reach-v3,push-v3 [--min-quality 0.8] [--out results/bc.json]
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import collect_data  # noqa: E402
import goskill  # noqa: E402
from goal_precision import POSITIONAL_TASKS  # noqa: E402  (scripts/ is on sys.path: it holds this file)
from oracle_skills import positive_int  # noqa: E402
from subset_data import quality_mask  # noqa: E402


class StateAgent:
    """goskill.evaluate's agent interface for a state -> action network (no history, prompt or return)."""

    def __init__(self, net: nn.Module):
        self.net = net.eval()

    @torch.no_grad()
    def act(self, t: int, s: torch.Tensor, rtg: torch.Tensor) -> tuple[torch.Tensor, None]:
        return self.net(s), None                                       # (E, S_OBS) normalised -> (E, A)


def train_bc(observations: np.ndarray, actions: np.ndarray, args, rng: np.random.Generator):
    """An MLP (S_OBS -> hidden -> hidden -> A, tanh output like goskill's action heads) fitted to (s, a) pairs by
    Adam on the MSE. observations (n, S_OBS), actions (n, A). Returns (net, state mean, state std, final loss)."""
    mean, std = observations.mean(0), observations.std(0) + 1e-6      # per task (goskill: over all tasks)
    states = torch.as_tensor((observations - mean) / std, dtype=torch.float32)
    targets = torch.as_tensor(actions, dtype=torch.float32)
    net = nn.Sequential(nn.Linear(states.shape[1], args.hidden), nn.ReLU(), nn.Linear(args.hidden, args.hidden),
                        nn.ReLU(), nn.Linear(args.hidden, targets.shape[1]), nn.Tanh())
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    bar = tqdm(range(args.iters), desc="behaviour cloning", dynamic_ncols=True, leave=False)
    for it in bar:
        idx = torch.as_tensor(rng.integers(0, len(states), args.batch_size))
        loss = (net(states[idx]) - targets[idx]).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if it % 100 == 0:
            bar.set_postfix(mse=f"{loss.item():.4f}")
    return net, mean.astype(np.float32), std.astype(np.float32), loss.item()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", default=POSITIONAL_TASKS,
                        help=f"mt10, mt30, mt50 or a comma list of task names (default {POSITIONAL_TASKS})")
    parser.add_argument("--dataset", default="near-optimal", choices=collect_data.DATASET_QUALITIES)
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--min-quality", type=float, default=0.0,
                        help="train only on episodes of at least this behaviour quality (default 0: all)")
    parser.add_argument("--iters", type=positive_int, default=3000, help="Adam steps per task (default 3000)")
    parser.add_argument("--batch-size", type=positive_int, default=256)
    parser.add_argument("--hidden", type=positive_int, default=256)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--episodes", type=positive_int, default=20, help="evaluation episodes per task (default 20)")
    parser.add_argument("--seed", type=int, default=0, help="seeds initialisation and batches")
    parser.add_argument("--eval-seed", type=int, default=0, help="evaluation variants, as goskill.py's --eval-seed")
    parser.add_argument("--out", default="", help="JSON file of the figures (default: print only)")
    args = parser.parse_args()
    try:
        tasks = collect_data.resolve_tasks(args.tasks)
        datasets = {task: collect_data.load_dataset(task, args.dataset, args.data_dir) for task in tasks}
        keeps = {task: quality_mask(task, data, args.min_quality, args.data_dir)   # before any training
                 for task, data in datasets.items()}
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    # goskill.evaluate reads the evaluation fields of a Config, num_codes (skill usage, left empty here) and
    # prompt_trajectories (prompt choice; there are no prompts here).
    cfg = goskill.Config(eval_parallel=args.episodes, amp=False)
    device = torch.device("cpu")
    per_task = {}
    for task, data in datasets.items():
        keep = keeps[task]
        rng = goskill.set_seed(args.seed)
        t0 = time.time()
        net, mean, std, loss = train_bc(data["observations"][keep, :-1].reshape(-1, collect_data.OBS_DIM),
                                        data["actions"][keep].reshape(-1, collect_data.ACT_DIM), args, rng)
        train_seconds = time.time() - t0
        result = goskill.evaluate(lambda prompt, n_env: StateAgent(net), [task], {}, torch.zeros(1), mean, std,
                                  cfg, device, args.episodes, args.eval_seed, workers=0)
        per_task[task] = dict(result["per_task"][task], episodes_trained=int(keep.sum()), final_mse=loss,
                              train_seconds=train_seconds, eval_seconds=time.time() - t0 - train_seconds)
        print(f"{task}: {keep.sum()} episodes, success {per_task[task]['success_rate']:.0%}, "
              f"return {per_task[task]['return_mean']:.0f}")
    out = {"args": vars(args), "per_task": per_task,
           "mean": {"success_rate": float(np.mean([r["success_rate"] for r in per_task.values()])),
                    "return": float(np.mean([r["return_mean"] for r in per_task.values()]))},
           "versions": goskill.library_versions()}
    print(json.dumps(out["mean"]))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        goskill.atomic_write_json(out, Path(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
