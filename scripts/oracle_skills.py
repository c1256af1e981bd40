"""Which level limits a trained GO-Skill model: the skill policy's choices, or the skill library and decoder?

Runs a checkpoint's skill decoder under an *oracle* high level. At every skill step (every H env steps) a copy of
the simulator state is rolled forward H steps with MetaWorld's noise-free scripted expert, the state change it
reaches is encoded and quantised exactly as in labelling (SkillModel.label), and the decoder executes that skill;
the simulator is then restored and the episode goes on from the decoder's own actions. The trained skill policy
still sees every step (with the oracle's skills in its history), so the share of skill steps on which it would
have picked the oracle's skill is measured on the same states. Without VQ (ablation) the oracle's skill is the
continuous embedding of the expert's state change, which tells how much the quantisation alone costs.

    python scripts/oracle_skills.py runs/mt10-near-optimal-default-seed0/checkpoint.pt [--episodes 10]

Reading it: success under the oracle close to the expert's (~98% on MT10) means the library and decoder can
solve the task, so the skill policy is what limits the trained model; low success under the oracle means the
16-code library (or the decoder executing it) cannot reach the goal precisely enough, whatever the policy picks.
Same evaluation variants as goskill.py's evaluation (the "eval" seed stream) and the same prompt choice. All
episodes run in this one process, one environment each (~25 MB per env: lower --episodes for MT50)."""

import argparse
import sys
from pathlib import Path

import mujoco
import numpy as np
import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import collect_data  # noqa: E402
import goskill  # noqa: E402


def snapshot(env) -> tuple:
    """Everything env.step reads or writes: the full MuJoCo integration state (joints, actuators, mocap targets of
    the hand, solver warm start, time) and the Python-side step counter and observations."""
    spec = mujoco.mjtState.mjSTATE_INTEGRATION
    state = np.empty(mujoco.mj_stateSize(env.model, spec))
    mujoco.mj_getState(env.model, env.data, state, spec)
    return (state, env._prev_obs.copy(), env.curr_path_length, env._last_stable_obs, env._did_see_sim_exception)


def restore(env, snap: tuple) -> None:
    state, prev_obs, env.curr_path_length, env._last_stable_obs, env._did_see_sim_exception = snap
    mujoco.mj_setState(env.model, env.data, state, mujoco.mjtState.mjSTATE_INTEGRATION)
    mujoco.mj_forward(env.model, env.data)
    env._prev_obs = prev_obs.copy()


def expert_lookahead(env, expert, obs: np.ndarray, steps: int) -> np.ndarray:
    """The observation the noise-free expert reaches `steps` env steps after `obs` (fewer at the episode's end,
    as labelling clips the goal to the last state); the env is left exactly where it was."""
    snap = snapshot(env)
    steps = min(steps, collect_data.EPISODE_LENGTH - env.curr_path_length)
    for _ in range(steps):
        obs = env.step(np.clip(expert.get_action(obs), -1.0, 1.0))[0]
    restore(env, snap)
    return obs


class OracleSkillAgent(goskill.SkillAgent):
    """SkillAgent whose skill at each skill step is the oracle's (set in self.oracle before act); the policy's own
    choice on the same state is recorded in self.policy_choice."""

    def choose(self, j: int, s: torch.Tensor, rtg: torch.Tensor) -> torch.Tensor:
        self.policy_choice = super().choose(j, s, rtg)
        return self.oracle


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="checkpoint.pt of a finished GO-Skill run (with or without VQ)")
    parser.add_argument("--episodes", type=int, default=10, help="episodes per task (default 10)")
    parser.add_argument("--eval-seed", type=int, default=0, help="seed of the evaluation variants (default 0)")
    parser.add_argument("--out", default="", help="JSON file of the figures (default: oracle.json beside the checkpoint)")
    args = parser.parse_args()

    if not Path(args.checkpoint).is_file():
        print(f"error: no checkpoint at {args.checkpoint}; train one with python goskill.py --tasks mt10",
              file=sys.stderr)
        return 2
    ckpt = torch.load(args.checkpoint, map_location="cpu", weights_only=False)
    cfg = goskill.Config(**ckpt["config"])
    if cfg.algo != "goskill" or ckpt["state"]["phase"] != "done":
        print(f"error: {args.checkpoint} is not a finished GO-Skill run (algo {cfg.algo}, phase "
              f"{ckpt['state']['phase']}); the oracle needs a trained goal encoder and skill decoder", file=sys.stderr)
        return 2
    device = torch.device("cpu")
    cfg.device = "cpu"
    trainer = goskill.Trainer(cfg, Path(args.checkpoint).parent, device)
    trainer.load(ckpt)
    tasks, H, T, n = trainer.tasks, cfg.skill_horizon, collect_data.EPISODE_LENGTH, args.episodes

    # Same prompt choice and variants as goskill.evaluate with per_round = episodes (one round).
    env_task = np.repeat(np.arange(len(tasks)), n)
    choice = (np.arange(len(tasks)) * cfg.prompt_trajectories
              + np.random.default_rng(args.eval_seed).integers(0, cfg.prompt_trajectories, len(tasks)))
    prompt = {k: v[torch.as_tensor(choice[env_task])] for k, v in trainer.prompts.items()}
    envs = [collect_data.make_env(tasks[ti]) for ti in env_task]
    experts = [collect_data.ENV_POLICY_MAP[tasks[ti]]() for ti in env_task]
    obs = np.stack([collect_data.reset_env(env, collect_data.variant_seed(args.eval_seed, tasks[ti], int(ep), "eval"))
                    for env, ti, ep in zip(envs, env_task, np.arange(len(envs)) % n)])
    mean, std = (torch.as_tensor(x, dtype=torch.float32) for x in (trainer.state_mean, trainer.state_std))
    agent = OracleSkillAgent(trainer.skills, trainer.policy, prompt, cfg, len(envs), device)
    rtg = torch.as_tensor(trainer.target_returns, dtype=torch.float32)[env_task].clone()
    ep_return, ep_success = np.zeros(len(envs)), np.zeros(len(envs), bool)
    agree = np.zeros(len(envs))
    for t in tqdm(range(T), desc="oracle skills", unit="step"):
        s = (torch.as_tensor(obs, dtype=torch.float32) - mean) / std                          # (E, S_OBS)
        if t % H == 0:
            future = np.stack([expert_lookahead(env, ex, o, H) for env, ex, o in zip(envs, experts, obs)])
            agent.oracle = trainer.skills.label(s, (torch.as_tensor(future, dtype=torch.float32) - mean) / std)
        with torch.no_grad():
            action, _ = agent.act(t, s, rtg)
        if t % H == 0 and cfg.quantize:
            agree += (agent.policy_choice == agent.oracle).numpy()
        stepped = [env.step(a) for env, a in zip(envs, action.numpy())]
        obs = np.stack([o[0] for o in stepped])
        reward = np.array([o[1] for o in stepped])
        ep_success |= np.array([o[4]["success"] for o in stepped], bool)
        ep_return += reward
        rtg -= torch.as_tensor(reward, dtype=torch.float32)

    decisions = -(-T // H)                                             # skill steps per episode

    def figures(m: np.ndarray, return_key: str) -> dict:               # over the envs selected by mask m
        return {"success_rate": float(ep_success[m].mean()), return_key: float(ep_return[m].mean()),
                "policy_agreement": float(agree[m].mean() / decisions) if cfg.quantize else None}
    # Keys as in goskill.py's results.json: "return_mean" per task, "return" for the mean over tasks.
    per_task = {task: figures(env_task == ti, "return_mean") for ti, task in enumerate(tasks)}
    overall = figures(np.ones(len(envs), bool), "return")
    print(f"\n{'task':<28} {'success':>8} {'return':>8} {'policy = oracle' if cfg.quantize else '':>16}")
    for name, f in [*per_task.items(), ("mean", overall)]:
        agreement = f"{100 * f['policy_agreement']:>15.1f}%" if cfg.quantize else ""
        print(f"{name:<28} {100 * f['success_rate']:>7.1f}% {f.get('return_mean', f.get('return')):>8.0f} {agreement}")
    print(f"({n} episodes per task; skills chosen by the expert-lookahead oracle, executed by the checkpoint's "
          f"decoder" + ("; last column: skill steps on which the trained policy's argmax is the oracle's skill)"
                        if cfg.quantize else "; w/o VQ the oracle's skill is the continuous goal embedding)"))
    out = Path(args.out) if args.out else Path(args.checkpoint).parent / "oracle.json"
    goskill.atomic_write_json({"checkpoint": args.checkpoint, "config": ckpt["config"], "episodes_per_task": n,
                               "eval_seed": args.eval_seed, "per_task": per_task, "mean": overall}, out)
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
