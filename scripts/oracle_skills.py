"""Which level limits a trained GO-Skill model: the skill policy's choices, or the skill library and decoder?

Runs a checkpoint's skill decoder under an *oracle* high level. At every skill step (every H env steps) a copy of
the simulator state is rolled forward H steps with MetaWorld's noise-free scripted expert, the state change it
reaches is encoded and quantised exactly as in labelling (SkillModel.label), and the decoder executes that skill;
the simulator is then restored and the episode goes on from the decoder's own actions. The trained skill policy
still sees every step (with the oracle's skills in its history), so the share of skill steps on which it would
have picked the oracle's skill is measured on the same states. Without VQ (ablation) the oracle's skill is the
continuous embedding of the expert's state change, which tells how much the quantisation alone costs.

    python scripts/oracle_skills.py runs/mt10-near-optimal-default-seed0/checkpoint.pt [--episodes 10]

With --library-only the checkpoint may come from a run stopped after skill extraction (`goskill.py ...
--stop-after extract`, ~3 minutes on a 2-core CPU instead of ~25): a cheap measure of what a skill library
(number of codes, horizon H) can deliver before any skill policy is trained. Its decoder has not been through
skill enhancement, and its untrained policy's agreement with the oracle is not reported.

Reading it: success under the oracle close to the expert's (the noise-free end of the MT10 data succeeds 98%,
README's dataset table) means the library and decoder can solve the task, so the skill policy is what limits the
trained model; low success under the oracle means the skill library (or the decoder executing it) cannot reach
the goal precisely enough along the expert's path. It is a strong reference, not a strict upper bound: a policy
may do better by picking skills the decoder happens to execute more reliably than the code of the expert's
next H steps (README, "Which level limits success", measures both cases). Same evaluation variants (the "eval"
seed stream), prompt choice and target returns as goskill.py's evaluation; on the CPU in fp32 (goskill.py
evaluates a CUDA run with bf16 autocast).

The episode loop, `rollout`, also runs a checkpoint's own policy or the scripted expert alone: goal_precision.py
uses it for those modes too. It is not goskill.evaluate's loop because the oracle needs the env objects
themselves (to snapshot and restore them) and goal_precision needs MetaWorld's info dicts, both of which
evaluate's worker pool keeps in its processes."""

import argparse
import dataclasses
import json
import sys
import warnings
from pathlib import Path
from typing import Callable, Literal

import mujoco
import numpy as np
import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import collect_data  # noqa: E402
import goskill  # noqa: E402


def snapshot(env) -> tuple:
    """What env.step reads and writes: MuJoCo's integration state (joints, actuators, mocap targets of the hand,
    solver warm start, time), the previous-frame and last observations, and every scalar attribute of the env
    (the step counter, and reward bookkeeping some tasks set on their first step, e.g. bin-picking's
    _target_to_obj_init). Array attributes other than the two observations are views into MuJoCo's data
    (e.g. init_left_pad) or constants of the variant, so they are not copied."""
    spec = mujoco.mjtState.mjSTATE_INTEGRATION
    state = np.empty(mujoco.mj_stateSize(env.model, spec))
    mujoco.mj_getState(env.model, env.data, state, spec)
    scalars = {k: v for k, v in vars(env).items() if v is None or isinstance(v, (bool, int, float))}
    return state, env._prev_obs.copy(), env._last_stable_obs, scalars


def restore(env, snap: tuple) -> None:
    """Back to `snap`. No mj_forward here: the next env.step recomputes everything from the restored state, and
    an extra mj_forward makes the episode drift from an unprobed one by MuJoCo round-off (measured ~1e-7 after
    500 steps); without it the two are bit-identical (tested)."""
    state, prev_obs, env._last_stable_obs, scalars = snap
    mujoco.mj_setState(env.model, env.data, state, mujoco.mjtState.mjSTATE_INTEGRATION)
    env._prev_obs = prev_obs.copy()
    for name, value in scalars.items():
        setattr(env, name, value)


def expert_lookahead(env, expert, obs: np.ndarray, steps: int) -> np.ndarray:
    """The observation the noise-free expert reaches `steps` env steps after `obs` (fewer at the episode's end,
    as labelling clips the goal to the last state); the env is left exactly where it was."""
    snap = snapshot(env)
    steps = min(steps, collect_data.EPISODE_LENGTH - env.curr_path_length)
    for _ in range(steps):
        obs = env.step(np.clip(expert.get_action(obs), -1.0, 1.0))[0]
    restore(env, snap)
    return obs


def expert_skills(skills: goskill.SkillModel, envs: list, experts: list, obs: np.ndarray, horizon: int,
                  state_mean: torch.Tensor, state_std: torch.Tensor) -> torch.Tensor:
    """The skill of the state change the expert reaches in `horizon` steps from each env's raw observation
    obs (E, S_OBS), labelled exactly as label_all labels the data: index (E,), or w/o VQ the embedding (E, D)."""
    ahead = np.stack([expert_lookahead(env, ex, o, horizon) for env, ex, o in zip(envs, experts, obs)])
    start, goal = ((torch.as_tensor(x, dtype=torch.float32) - state_mean) / state_std for x in (obs, ahead))
    return skills.label(start, goal)


class OracleSkillAgent(goskill.SkillAgent):
    """SkillAgent whose skill at every skill step comes from `oracle(s)` (normalised states (E, S_OBS) -> skills);
    the trained policy still decides on the same step, and its choice is kept in self.policy_choice."""

    def __init__(self, *args, oracle, **kwargs):
        super().__init__(*args, **kwargs)
        self.oracle = oracle

    @torch.no_grad()
    def choose(self, j: int, s: torch.Tensor, rtg: torch.Tensor) -> torch.Tensor:
        self.policy_choice = super().choose(j, s, rtg)     # also records step j in the policy's history
        self.oracle_choice = self.oracle(s)
        return self.oracle_choice


def require_skills(trainer: goskill.Trainer, path: Path) -> None:
    """The oracle executes skills with GO-Skill's goal encoder and decoder: a Prompt-DT checkpoint has neither."""
    if trainer.skills is None:
        raise ValueError(f"{path} is a {trainer.cfg.algo} run; the oracle needs GO-Skill's goal encoder and skill "
                         "decoder: pass a GO-Skill run's checkpoint")


def data_aim(trainer: goskill.Trainer, checkpoint: Path | None = None) -> str:
    """Where the scripted experts of the run's data aimed (collect_data.EXPERT_AIMS), so that the diagnostics'
    experts match it: as recorded for its data files (in the checkpoint, else in the results.json beside
    `checkpoint`; a file made before the option records no aim: the hand's), else the run's --data-expert-aim,
    which only says how missing files were to be generated."""
    sources = trainer.data_sources
    if sources is None and checkpoint is not None and (checkpoint.parent / "results.json").is_file():
        sources = json.loads((checkpoint.parent / "results.json").read_text()).get("data")
    if sources:
        return "tool-centre" if any(s.get("expert_aim") == "tool-centre" for s in sources.values()) else "hand"
    return trainer.cfg.data_expert_aim


def rollout(trainer: goskill.Trainer, task_ids: list[int], episodes: int, seed: int,
            chooser: Literal["oracle", "policy", "expert"],
            observe: Callable[[np.ndarray, list], None] | None = None, expert_aim: str | None = None) -> dict:
    """The episode loop of both diagnostics (this script and goal_precision.py): `episodes` episodes of each task
    in task_ids (indices into trainer.tasks), all at once in this process, one env each (~25 MB per env), on the
    same variants, prompts and target returns as goskill.evaluate with per_round = episodes (one round).
    Env e runs task task_ids[e // episodes] on variant e % episodes.
    chooser: "oracle" (the decoder executes the expert-lookahead oracle's skills; see require_skills), "policy"
    (the run's own: GO-Skill, w/o VQ or Prompt-DT) or "expert" (MetaWorld's noise-free scripted policy acts alone).
    observe(obs, infos), if given, is called after every env step with the raw observations (E, S_OBS) and the
    envs' info dicts. expert_aim: where the oracle's and the "expert" chooser's scripted policies aim
    (collect_data.EXPERT_AIMS; default None: the aim of the run's data, data_aim). Returns per env (E,): "task" (index into
    trainer.tasks), "success" (at any step), "return", and "agreement": the skill steps on which the trained
    policy's argmax was the oracle's skill (oracle with VQ; otherwise None)."""
    cfg, device = trainer.cfg, torch.device("cpu")
    # MetaWorld's scripted policies warn when their P-controller output exceeds [-1, 1]; the env clips it, and
    # so does the expert here.
    warnings.filterwarnings("ignore", message=r"Constant\(s\) may be too high")
    env_task = np.repeat(task_ids, episodes)
    prompt = goskill.evaluation_prompts(trainer.prompts, env_task, len(trainer.tasks), cfg, seed, device)
    names = [trainer.tasks[ti] for ti in env_task]
    envs = [collect_data.make_env(task) for task in names]
    aim = expert_aim or data_aim(trainer)
    experts = [collect_data.expert_policy(task, env, aim) for task, env in zip(names, envs)]
    obs = np.stack([collect_data.reset_env(env, collect_data.variant_seed(seed, task, k % episodes, "eval"))
                    for k, (env, task) in enumerate(zip(envs, names))])                 # (E, S_OBS) raw
    mean, std = (torch.as_tensor(x, dtype=torch.float32) for x in (trainer.state_mean, trainer.state_std))
    if chooser == "expert":
        agent = None
    elif chooser == "oracle":
        def oracle(s: torch.Tensor) -> torch.Tensor:
            # s is `obs` normalised; the expert needs the raw observations, so this reads the loop's current `obs`
            # (looked up at call time: binding it as a default argument would freeze it at the first step).
            return expert_skills(trainer.skills, envs, experts, obs, cfg.skill_horizon, mean, std)
        agent = OracleSkillAgent(trainer.skills, trainer.policy, prompt, cfg, len(envs), device, oracle=oracle)
    elif trainer.skills is None:
        agent = goskill.ActionAgent(trainer.policy, prompt, cfg, len(envs), device)
    else:
        agent = goskill.SkillAgent(trainer.skills, trainer.policy, prompt, cfg, len(envs), device)
    count_agreement = chooser == "oracle" and cfg.quantize
    rtg = torch.as_tensor(trainer.target_returns, dtype=torch.float32)[env_task].clone()
    success, returns, agree = np.zeros(len(envs), bool), np.zeros(len(envs)), np.zeros(len(envs))
    for t in tqdm(range(collect_data.EPISODE_LENGTH), desc=f"episodes ({chooser})", unit="step"):
        s = (torch.as_tensor(obs, dtype=torch.float32) - mean) / std                     # (E, S_OBS)
        if agent is None:
            action = np.stack([np.clip(ex.get_action(o), -1.0, 1.0) for ex, o in zip(experts, obs)])
        else:
            action = agent.act(t, s, rtg)[0].numpy()
        if count_agreement and t % cfg.skill_horizon == 0:
            agree += (agent.policy_choice == agent.oracle_choice).numpy()
        stepped = [env.step(a) for env, a in zip(envs, action)]
        obs = np.stack([o[0] for o in stepped])
        reward = np.array([o[1] for o in stepped])
        infos = [o[4] for o in stepped]
        rtg -= torch.as_tensor(reward, dtype=torch.float32)
        returns += reward
        success |= np.array([info["success"] for info in infos], bool)
        if observe is not None:
            observe(obs, infos)
    return {"task": env_task, "success": success, "return": returns, "agreement": agree if count_agreement else None}


def positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return int(text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="checkpoint.pt of a finished GO-Skill run (with or without VQ)")
    parser.add_argument("--episodes", type=positive_int, default=10, help="episodes per task (default 10)")
    parser.add_argument("--eval-seed", type=int, default=None,
                        help="seed of the evaluation variants and prompt choice (default: the run's eval_seed)")
    parser.add_argument("--out", default="", help="JSON file of the figures (default: oracle.json beside the checkpoint)")
    parser.add_argument("--expert-aim", choices=collect_data.EXPERT_AIMS, default=None,
                        help="where the oracle's scripted experts aim (collect_data.py --expert-aim; default: the "
                             "aim the run's data was made with)")
    parser.add_argument("--library-only", action="store_true",
                        help="accept a run in its policy phase, e.g. stopped after skill extraction (--stop-after "
                             "extract); no policy agreement")
    args = parser.parse_args()

    path, device = Path(args.checkpoint), torch.device("cpu")
    try:
        trainer = goskill.load_finished_run(path, device, path.parent, library_only=args.library_only)
        require_skills(trainer, path)
    except goskill.UnfinishedRunError as err:
        print(f"error: {err}, or pass --library-only once its skill library is extracted", file=sys.stderr)
        return 2
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    cfg = trainer.cfg
    seed = cfg.eval_seed if args.eval_seed is None else args.eval_seed
    tasks, H, T, n = trainer.tasks, cfg.skill_horizon, collect_data.EPISODE_LENGTH, args.episodes
    policy_trained = trainer.state.phase == "done"
    report_agreement = cfg.quantize and policy_trained
    aim = args.expert_aim or data_aim(trainer, path)
    result = rollout(trainer, list(range(len(tasks))), n, seed, "oracle", expert_aim=aim)
    env_task, ep_success, ep_return, agree = (result[k] for k in ("task", "success", "return", "agreement"))

    decisions = -(-T // H)                                             # skill steps per episode

    def figures(m: np.ndarray, return_key: str) -> dict:               # over the envs selected by mask m
        return {"success_rate": float(ep_success[m].mean()), return_key: float(ep_return[m].mean()),
                "policy_agreement": float(agree[m].mean() / decisions) if report_agreement else None}
    # Keys as in goskill.py's results.json: "return_mean" per task, "return" for the mean over tasks.
    per_task = {task: figures(env_task == ti, "return_mean") for ti, task in enumerate(tasks)}
    overall = figures(np.ones(len(env_task), bool), "return")
    print(f"\n{'task':<28} {'success':>8} {'return':>8} {'policy = oracle' if report_agreement else '':>16}")
    for name, f in [*per_task.items(), ("mean", overall)]:
        agreement = f"{100 * f['policy_agreement']:>15.1f}%" if report_agreement else ""
        print(f"{name:<28} {100 * f['success_rate']:>7.1f}% {f.get('return_mean', f.get('return')):>8.0f} {agreement}")
    print(f"({n} episodes per task; skills chosen by the expert-lookahead oracle, executed by the checkpoint's "
          f"decoder" + ("; last column: skill steps on which the trained policy's argmax is the oracle's skill"
                        if report_agreement else "") +
          ("" if cfg.quantize else "; w/o VQ the oracle's skill is the continuous goal embedding") +
          ("" if policy_trained else f"; run stopped at policy iteration {trainer.state.iteration}"
           + (": decoder without skill enhancement" if trainer.state.iteration == 0 and cfg.skill_enhancement
              else "")) + ")")
    out = Path(args.out) if args.out else path.parent / "oracle.json"
    goskill.atomic_write_json({"checkpoint": str(path), "config": dataclasses.asdict(cfg),
                               "phase": trainer.state.phase, "iteration": trainer.state.iteration,
                               "expert_aim": aim,
                               "episodes_per_task": n, "eval_seed": seed, "per_task": per_task, "mean": overall}, out)
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
