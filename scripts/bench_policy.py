"""Training throughput of a preset, phase by phase, without a full run: builds goskill.Trainer, runs a short
extraction (which the policy phase needs: labels and prompts), then times the policy phase (skill policy + skill
enhancement) over --policy-iters iterations. Nothing is evaluated or kept (the run folder is a temporary one).

    python scripts/bench_policy.py                              # default preset, MT10, 60 + 1500 iterations
    python scripts/bench_policy.py --preset paper --device cuda --policy-iters 300

Run it on an idle machine, and compare two commits on the same machine within the same hour: a 2-core host's
speed varies by 2x from day to day (README, "Training throughput")."""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import goskill  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", choices=sorted(goskill.PRESETS), default="default")
    p.add_argument("--tasks", default="mt10")
    p.add_argument("--data-dir", default="data", help="generated first if missing, as goskill.py does")
    p.add_argument("--extract-iters", type=int, default=60)
    p.add_argument("--policy-iters", type=int, default=1500)
    p.add_argument("--device", default="auto")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as out:
        cfg = goskill.Config(**{**goskill.PRESETS[args.preset], "tasks": args.tasks, "data_dir": args.data_dir,
                                "extract_iters": args.extract_iters, "policy_iters": args.policy_iters,
                                "device": args.device, "out": out})
        device = goskill.resolve_device(cfg.device)
        trainer = goskill.Trainer(cfg, Path(out), device)
        trainer.load_data()
        trainer.extract_skills()
        trainer.label_data()
        start = time.time()
        trainer.learn_policy()
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.time() - start
    print(f"{args.preset}, {args.tasks}, {torch.get_num_threads()} threads, {device}: extraction "
          f"{trainer.state.phase_iters_per_s['extract']:.1f} it/s ({args.extract_iters} iterations, k-means start "
          f"included), policy {args.policy_iters / seconds:.1f} it/s ({args.policy_iters} iterations)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
