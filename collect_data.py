"""Offline MetaWorld datasets for GO-Skill: Near-Optimal and Sub-Optimal, generated on this machine.

The GO-Skill authors trained on SAC replay buffers (2000 episodes x 500 steps per task, stored in the order the
agent produced them): Near-Optimal = the whole stream, from random to expert behaviour; Sub-Optimal = its first
half. Those files are a download; this script generates data with the same structure instead, from MetaWorld's
scripted expert policies (reach's aimed at the tool centre: DEFAULT_EXPERT_AIM) degraded by a quality schedule
that imitates an online learner's replay stream: episode i of N is played at quality q_i = 1 - (1 - i / (N - 1))^2
(a learning curve: fast rise, then a plateau), and at every step its action is, with probability 1 - q, uniform
random in [-1, 1]^4, otherwise the expert's action + N(0, (NOISE_STD_MAX * (1 - q))^2) noise, clipped to
[-1, 1] (`episode_quality`, `behaviour_action`). Every episode has a fresh goal/object variant of the task.
One collection serves both datasets: Sub-Optimal is a strict prefix of Near-Optimal (`episodes_in_dataset`).

Commands:
  python collect_data.py --tasks mt10                       # MT10, DEFAULT_EPISODES per task, into data/
  python collect_data.py --tasks mt50 --episodes 200 --workers 16 --data-dir data50
  python collect_data.py --tasks reach-v3,push-v3 --episodes 8 --data-dir /tmp/tiny
  python collect_data.py --tasks mt10 --overwrite            # regenerate files made with other settings
  python collect_data.py --benchmark                        # collection speed vs bare env.step, 1 vs 2 workers
  python collect_data.py --tasks mt10 --expert-aim hand --data-dir data-hand   # MetaWorld's reach experts unchanged
A rerun of the same command skips the tasks whose file is complete and was made with the same settings, so an
interrupted collection is finished by running it again.

File schema, one `<data-dir>/<task>.npz` per task (np.savez_compressed, no pickled objects:
np.load(path, allow_pickle=False) works). N episodes, T = EPISODE_LENGTH = 500 steps, in collection order:
  observations (N, T+1, 39) float32   observation t; index T is the final next-observation
  actions      (N, T, 4)    float32   the action executed at step t, already clipped to [-1, 1]
  rewards      (N, T)       float32   MetaWorld dense reward (0..10) of step t
  successes    (N, T)       bool      info["success"] of step t; an episode succeeds if any step does
  quality      (N,)         float32   the schedule's quality q of each episode, 0 (random) .. 1 (expert)
  metadata     ()           unicode   JSON: task, episodes, seed, schedule constants, library versions,
                                      command line, ... (`_settings` lists the keys a rerun must match)
Episodes have no terminal states: MetaWorld never terminates early and truncates at T.
`<data-dir>/summary.json` holds the per-task table printed at the end of a collection.

Determinism: episode i of task k depends only on (seed, k, i): its goal/object variant and its behaviour noise
come from `variant_seed`, and the simulator is reset completely before every episode. The same seed, tasks and
N therefore give byte-identical arrays whatever the number of workers (tested), and replaying an episode's
actions after reset_env(make_env(task), variant_seed(seed, task, i, "data")) reproduces its observations exactly.

Public API used by goskill.py: EPISODE_LENGTH, OBS_DIM, ACT_DIM, DEFAULT_EPISODES, TASK_SETS,
DATASET_QUALITIES, EXPERT_AIMS, DEFAULT_EXPERT_AIM, resolve_tasks, variant_seed, make_env, reset_env, dataset_path,
episodes_in_dataset, missing_tasks, collect, load_dataset, main (and expert_policy, for scripts/).

Tested with: Python 3.11, metaworld 3.1.1 (mujoco 3.3.0, gymnasium 1.4.0), numpy 2.4, tqdm 4.70.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import importlib.metadata
import json
import math
import multiprocessing as mp
import os
import pathlib
import shlex
import signal
import sys
import tempfile
import time
import warnings
import zipfile
import zlib

import mujoco
import numpy as np
from metaworld.env_dict import ALL_V3_ENVIRONMENTS_GOAL_OBSERVABLE
from metaworld.policies import ENV_POLICY_MAP
from tqdm import tqdm

# =====================================================================================================================
# Constants
# =====================================================================================================================

EPISODE_LENGTH = 500   # MetaWorld's max_path_length: step() truncates at 500 and raises if stepped further
OBS_DIM = 39           # hand xyz, gripper, 2 objects (pos+quat) padded to 14; the same 18 of the previous frame; goal
ACT_DIM = 4            # end-effector dx, dy, dz, gripper effort

# 200 episodes per task (100,000 transitions; Sub-Optimal: the first 100 episodes). Measured on this project's
# 2-core machine: `time python collect_data.py --tasks mt10` took 107 s with 100 episodes and 226 s with 200
# (README, "Data collection"), which fits the ~5-minute budget for a first run with room for slower periods of
# the shared host (the project's notes once measured 800-1100 env steps/s per core there; we saw 2300-2800).
# The authors' buffers hold 2000 episodes per task: --episodes 2000 takes about 10x longer.
DEFAULT_EPISODES = 200

# Behaviour schedule (see behaviour_action): at quality q the action is uniform random with probability 1 - q,
# otherwise the expert's action plus Gaussian noise of std NOISE_STD_MAX * (1 - q).
NOISE_STD_MAX = 0.5
SCHEDULE_NAME = "learning-curve-v1"   # stored in the metadata; change it when the schedule's code changes

EXPERT_END_FRACTION = 0.1   # summary: success of the last 10% of episodes, the expert end of the stream
EPISODES_PER_UNIT = 4       # episodes per work unit: ~2 s of simulation, small enough to balance the workers
ENV_CACHE_SIZE = 4          # environments kept per worker; work is task-major, so a worker needs ~1 at a time
BENCHMARK_EPISODES = 8      # --benchmark default: episodes per task of each timed run
BENCHMARK_ROUNDS = 2        # --benchmark times every run this often and keeps the fastest (~2 min in all)
FORMAT_VERSION = 1

DATASET_QUALITIES = ("near-optimal", "sub-optimal")

# Where the expert aims (--expert-aim). MetaWorld's scripted reach policies steer the *hand* onto the goal, while
# MetaWorld 3 measures reach's success (and reward) at the gripper's tool centre, 4.5 cm below the hand: the
# noise-free expert's tool centre stops 4.47 cm from the goal (median over 20 evaluation variants, never more than
# 4.50 cm), inside the 5 cm success radius by 0.5 cm, so an imitator that ends 0.5 cm lower, or ~2.2 cm to the
# side, fails. "tool-centre" shows the policy a goal moved by the hand-to-tool-centre offset, so the tool centre
# stops on the goal (0.02-0.04 cm, same variants) and an imitator has the whole radius to spare (reach-wall-v3's
# policy, which steers the hand too: 3.0 cm -> 0.0 cm, 10 variants, a one-off check). Only the tasks in
# TOOL_CENTRE_TASKS change; "hand" is MetaWorld's policies unchanged.
EXPERT_AIMS = ("hand", "tool-centre")
# The default since 2026-12-01 (before: "hand"; files without an "expert_aim" setting were made with the hand's).
# Why: MetaWorld measures reach's success and reward at the tool centre; an expert whose tool centre stops 0.5 cm
# inside the radius is an artefact of a scripted policy that steers the hand, not a trait of the authors' SAC data
# (their agents are rewarded at the tool centre; where it stops inside the flat-reward radius is not known to us).
# Measured with goskill.py's default preset (MT10 near-optimal, README "The `default` preset: the 90% bar"):
# 90.5 +- 3.5% success over five seeds on tool-centre data (reach 86%) against 81.5% on the hand's (seed 0, reach 30%).
DEFAULT_EXPERT_AIM = "tool-centre"
TOOL_CENTRE_TASKS = ("reach-v3", "reach-wall-v3")

# Disjoint seed streams of variant_seed: "data" = goal/object variants of the dataset's episodes,
# "behaviour" = the dataset's action noise, "eval" = the variants goskill.py evaluates on.
SEED_STREAMS = {"data": 0, "eval": 1, "behaviour": 2}

# MT50 in the order of the paper's task indices (reference-notes Appendix B, the authors' v2 order) with v3 names.
# variant_seed uses a task's index in this list, so this order is part of the data's identity: do not reorder.
_MT50 = [
    "assembly", "basketball", "bin-picking", "box-close", "button-press-topdown", "button-press-topdown-wall",
    "button-press", "button-press-wall", "coffee-button", "coffee-pull", "coffee-push", "dial-turn",
    "disassemble", "door-close", "door-lock", "door-open", "door-unlock", "drawer-close", "drawer-open",
    "faucet-close", "faucet-open", "hammer", "hand-insert", "handle-press-side", "handle-press",
    "handle-pull-side", "handle-pull", "lever-pull", "peg-insert-side", "peg-unplug-side", "pick-out-of-hole",
    "pick-place", "pick-place-wall", "plate-slide-back-side", "plate-slide-back", "plate-slide-side",
    "plate-slide", "push-back", "push", "push-wall", "reach", "reach-wall", "shelf-place", "soccer",
    "stick-pull", "stick-push", "sweep-into", "sweep", "window-close", "window-open",
]
# MetaWorld's MT10 (metaworld.env_dict.MT10_V3, same order).
_MT10 = [
    "reach", "push", "pick-place", "door-open", "drawer-open", "drawer-close", "button-press-topdown",
    "peg-insert-side", "window-open", "window-close",
]
# The paper's MT30 (= HarmoDT's mt30_task_list), in the paper's order.
_MT30 = [
    "basketball", "bin-picking", "button-press-topdown", "button-press", "button-press-wall", "coffee-button",
    "coffee-pull", "coffee-push", "dial-turn", "disassemble", "door-close", "door-lock", "door-open",
    "door-unlock", "drawer-close", "drawer-open", "faucet-close", "faucet-open", "hand-insert",
    "handle-press-side", "handle-press", "handle-pull-side", "handle-pull", "lever-pull", "peg-insert-side",
    "pick-out-of-hole", "pick-place-wall", "push-back", "push", "reach",
]
TASK_SETS: dict[str, list[str]] = {
    "mt10": [f"{t}-v3" for t in _MT10],
    "mt30": [f"{t}-v3" for t in _MT30],
    "mt50": [f"{t}-v3" for t in _MT50],
}


class DataError(ValueError):
    """Bad input or an existing file that does not match the request. main() prints it as one line, exit 2."""


# =====================================================================================================================
# Tasks, seeds, environments
# =====================================================================================================================


def resolve_tasks(spec: str) -> list[str]:
    """'mt10' / 'mt30' / 'mt50' or a comma list of MetaWorld 3 names (sets may be mixed in) -> task names, in
    order, without duplicates. Raises ValueError (one line, listing the valid sets and names) otherwise."""
    tasks: list[str] = []
    for item in (part.strip() for part in spec.split(",")):
        expanded = TASK_SETS.get(item.lower(), [item])
        for task in expanded:
            if task not in TASK_SETS["mt50"]:
                raise DataError(
                    f"unknown task {item!r}: use a set ({', '.join(TASK_SETS)}) or comma-separated MetaWorld 3 "
                    f"names ({', '.join(TASK_SETS['mt50'])})")
            if task not in tasks:
                tasks.append(task)
    return tasks


def _seed_sequence(seed: int, task: str, episode: int, stream: str) -> np.random.SeedSequence:
    if stream not in SEED_STREAMS:
        raise ValueError(f"unknown seed stream {stream!r}; use one of {', '.join(SEED_STREAMS)}")
    if seed < 0 or episode < 0:
        raise ValueError(f"seed and episode must be >= 0, got seed={seed}, episode={episode}")
    return np.random.SeedSequence(seed, spawn_key=(TASK_SETS["mt50"].index(task), episode, SEED_STREAMS[stream]))


def variant_seed(seed: int, task: str, episode: int, stream: str) -> int:
    """The environment seed of episode `episode` of `task` in run `seed`, for `stream` "data" (the dataset's
    episodes) or "eval" (evaluation episodes); "behaviour" seeds the dataset's action noise.

    Derived with np.random.SeedSequence from (seed, the task's index in TASK_SETS["mt50"], episode, stream), so it
    does not depend on which tasks are collected together or on their order. The stream's id is the value's residue
    modulo len(SEED_STREAMS), so seeds of different streams can never coincide: evaluation never replays a
    variant seed of the training data."""
    state = int(_seed_sequence(seed, task, episode, stream).generate_state(1, np.uint64)[0])
    return (state >> 4) * len(SEED_STREAMS) + SEED_STREAMS[stream]   # < 2**62, a valid gymnasium seed


def make_env(task: str):
    """A MetaWorld 3 environment of `task` ('reach-v3', ...) whose goal is in the observation and whose goal/object
    variant is re-sampled, from the env's own seeded generator, at every reset_env().

    MetaWorld's goal-observable classes freeze the variant after construction (`_freeze_rand_vec = True`);
    unfreezing it with `seeded_rand_vec = True` makes `_get_state_rand_vec` draw the variant from
    `env.np_random`, which `env.seed(s)` re-creates. Observations are (39,) float64, actions Box(-1, 1, (4,))."""
    if task not in TASK_SETS["mt50"]:
        resolve_tasks(task)   # raises the error that lists the valid names
    env = ALL_V3_ENVIRONMENTS_GOAL_OBSERVABLE[f"{task}-goal-observable"]()
    env._freeze_rand_vec = False
    env.seeded_rand_vec = True
    if env._partially_observable or env.max_path_length != EPISODE_LENGTH:
        raise RuntimeError(f"{task}: expected a goal-observable env with {EPISODE_LENGTH}-step episodes; "
                           f"this metaworld version differs (tested with 3.1.1)")
    return env


def reset_env(env, seed: int) -> np.ndarray:
    """Reset `env` (from make_env) to the goal/object variant that `seed` selects; returns the (39,) float64
    first observation. The episode that follows depends only on `seed` and the actions, not on what the env did
    before: mj_resetData clears all simulator state (including the solver's warm start) before the reset."""
    mujoco.mj_resetData(env.model, env.data)
    env.seed(seed)
    obs, _ = env.reset()
    return obs


# =====================================================================================================================
# Behaviour policy: the quality schedule
# =====================================================================================================================


def episode_quality(episode: int, episodes: int) -> float:
    """Quality q_i = 1 - (1 - p)^2 of episode i of N, p = i / (N - 1): 0 for the first episode (random-like), 1 for
    the last (noise-free expert). The curve rises fast and then flattens, like an online learner's learning
    curve (SAC on MetaWorld is competent on most tasks well before the end of its run), so the stream's mean
    quality is 2/3 (Near-Optimal) and 0.42 for its first half (Sub-Optimal), against 1/2 and 1/4 for a linear
    ramp. Measured with goskill.py on MT10 near-optimal at equal settings, the linear ramp and this curve gave
    the same success (58.5% vs 57.5%, 20 episodes per task); this curve is kept as the more faithful stand-in."""
    p = episode / (episodes - 1)
    return 1.0 - (1.0 - p) ** 2


class ToolCentreAim:
    """A scripted policy that puts the gripper's tool centre, not the hand, on the goal (EXPERT_AIMS): it shows
    `policy` the observation with the goal (its last 3 entries) moved by the current offset from the hand
    (obs[:3]) to `env`'s tool centre. The offset is read from the simulator at each call, so `obs` must be the
    env's current observation."""

    def __init__(self, policy, env):
        self.policy, self.env = policy, env

    def get_action(self, obs: np.ndarray) -> np.ndarray:
        shifted = np.array(obs, copy=True)
        shifted[-3:] -= self.env.tcp_center - obs[:3]
        return self.policy.get_action(shifted)


def aim_of(task: str, aim: str) -> str:
    """The aim `task`'s expert actually takes when `aim` is asked for: "tool-centre" changes TOOL_CENTRE_TASKS
    only, every other task keeps the hand's (its policy and data are the same either way)."""
    return aim if task in TOOL_CENTRE_TASKS else "hand"


def expert_policy(task: str, env, aim: str = DEFAULT_EXPERT_AIM):
    """MetaWorld's scripted expert for `task`, aimed as `aim` says (EXPERT_AIMS)."""
    if aim not in EXPERT_AIMS:
        raise ValueError(f"unknown expert aim {aim!r}; use one of {', '.join(EXPERT_AIMS)}")
    policy = ENV_POLICY_MAP[task]()
    return ToolCentreAim(policy, env) if aim_of(task, aim) == "tool-centre" else policy


def behaviour_action(policy, obs: np.ndarray, quality: float, rng: np.random.Generator) -> np.ndarray:
    """The dataset's action at quality q (float32, (4,), in [-1, 1]):
      with probability 1 - q: uniform random in [-1, 1]^4 (the learner's exploration / untrained behaviour);
      otherwise: the MetaWorld scripted expert's action + N(0, (NOISE_STD_MAX * (1 - q))^2) per dimension,
      clipped to [-1, 1].
    So q = 0 is a uniform random policy and q = 1 the noise-free expert (clipped to the action space)."""
    if rng.random() >= quality:   # probability 1 - q
        return rng.uniform(-1.0, 1.0, ACT_DIM).astype(np.float32)
    noise = rng.normal(0.0, NOISE_STD_MAX * (1.0 - quality), ACT_DIM)
    return np.clip(policy.get_action(obs) + noise, -1.0, 1.0).astype(np.float32)


def play_episode(env, policy, task: str, episode: int, episodes: int, seed: int) -> dict[str, np.ndarray]:
    """Episode `episode` of the N = `episodes` stream of `task`: a fresh variant, EPISODE_LENGTH steps of the
    behaviour policy at quality episode_quality(episode, N). Returns one episode's arrays (schema without N)."""
    quality = episode_quality(episode, episodes)
    rng = np.random.default_rng(_seed_sequence(seed, task, episode, "behaviour"))
    observations = np.empty((EPISODE_LENGTH + 1, OBS_DIM), np.float32)   # (T+1, 39)
    actions = np.empty((EPISODE_LENGTH, ACT_DIM), np.float32)            # (T, 4)
    rewards = np.empty(EPISODE_LENGTH, np.float32)                       # (T,)
    successes = np.empty(EPISODE_LENGTH, bool)                           # (T,)
    obs = reset_env(env, variant_seed(seed, task, episode, "data"))
    observations[0] = obs
    truncated = False
    with warnings.catch_warnings():
        # The scripted policies warn when their gain overshoots [-1, 1]; the env clips, and so do we.
        warnings.filterwarnings("ignore", message="Constant\\(s\\) may be too high")
        for t in range(EPISODE_LENGTH):
            action = behaviour_action(policy, obs, quality, rng)
            obs, reward, _, truncated, info = env.step(action)
            observations[t + 1], actions[t], rewards[t], successes[t] = obs, action, reward, info["success"]
    if not truncated:
        raise RuntimeError(f"{task}: the env did not truncate after {EPISODE_LENGTH} steps (metaworld changed?)")
    return {"observations": observations, "actions": actions, "rewards": rewards, "successes": successes}


class _EnvCache:
    """The last few (env, expert policy) pairs by task, so a worker builds each env once (~0.2 s), not per episode.
    Bounded because an env holds ~25 MB and an MT50 worker would otherwise keep all 50."""

    def __init__(self, size: int = ENV_CACHE_SIZE):
        self.size = size
        self.entries: collections.OrderedDict[tuple[str, str], tuple] = collections.OrderedDict()   # (task, aim)

    def get(self, task: str, aim: str = DEFAULT_EXPERT_AIM) -> tuple:
        key = (task, aim)
        if key in self.entries:
            self.entries.move_to_end(key)
        else:
            env = make_env(task)
            self.entries[key] = (env, expert_policy(task, env, aim))
            if len(self.entries) > self.size:
                self.entries.popitem(last=False)
        return self.entries[key]


def _run_unit(unit: tuple, cache: _EnvCache) -> tuple[str, int, dict[str, np.ndarray]]:
    """Play episodes [start, stop) of one task; returns (task, start, arrays stacked over those episodes)."""
    task, start, stop, episodes, seed, aim = unit
    env, policy = cache.get(task, aim)
    played = [play_episode(env, policy, task, i, episodes, seed) for i in range(start, stop)]
    return task, start, {key: np.stack([p[key] for p in played]) for key in played[0]}


_worker_cache: _EnvCache | None = None   # per worker process, set by _init_worker (a worker has no other state slot)


def _init_worker() -> None:
    global _worker_cache
    _worker_cache = _EnvCache()
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # Ctrl-C is handled once, by the parent, which cancels the rest


def _run_unit_in_worker(unit: tuple) -> tuple[str, int, dict[str, np.ndarray]]:
    return _run_unit(unit, _worker_cache)


# =====================================================================================================================
# Files: paths, settings, validation, loading
# =====================================================================================================================


def dataset_path(task: str, data_dir) -> pathlib.Path:
    return pathlib.Path(data_dir) / f"{task}.npz"


def _temp_path(path: pathlib.Path) -> pathlib.Path:
    # Hidden and not ending in .npz, so nothing that globs *.npz or opens <task>.npz can mistake it for data.
    return path.with_name(f".{path.name}.tmp")


def episodes_in_dataset(quality: str, episodes: int) -> int:
    """How many leading episodes of a task's N-episode stream form the dataset `quality`: all N for
    "near-optimal", the first N // 2 for "sub-optimal" (the authors: episodes 0-1999 and 0-999 of 2000)."""
    if quality == "near-optimal":
        return episodes
    if quality == "sub-optimal":
        return episodes // 2
    raise ValueError(f"unknown dataset quality {quality!r}; use one of {', '.join(DATASET_QUALITIES)}")


def _versions() -> dict[str, str]:
    return {"metaworld": importlib.metadata.version("metaworld"), "mujoco": mujoco.__version__}


def _settings(task: str, episodes: int, seed: int, expert_aim: str = DEFAULT_EXPERT_AIM) -> dict:
    """Everything that determines a task file's arrays: a rerun reuses a file only if all of these match.
    expert_aim is recorded only where it changes the arrays (a TOOL_CENTRE_TASKS task aimed at the tool centre):
    files made before the option existed stay valid for the hand's aim, and other tasks' files serve either aim."""
    aim = aim_of(task, expert_aim)
    return {
        "format_version": FORMAT_VERSION,
        "task": task,
        "episodes": episodes,
        "seed": seed,
        "episode_length": EPISODE_LENGTH,
        "schedule": {"name": SCHEDULE_NAME, "noise_std_max": NOISE_STD_MAX},
        "versions": _versions(),
        **({"expert_aim": aim} if aim != "hand" else {}),
    }


def _array_shapes(episodes: int) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """The schema of a task file with N = `episodes` (module docstring)."""
    return {
        "observations": ((episodes, EPISODE_LENGTH + 1, OBS_DIM), np.dtype(np.float32)),
        "actions": ((episodes, EPISODE_LENGTH, ACT_DIM), np.dtype(np.float32)),
        "rewards": ((episodes, EPISODE_LENGTH), np.dtype(np.float32)),
        "successes": ((episodes, EPISODE_LENGTH), np.dtype(bool)),
        "quality": ((episodes,), np.dtype(np.float32)),
    }


# Reading a damaged file can fail in any of these ways (truncated zip, bad member, bad header, bad JSON).
_READ_ERRORS = (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error)


def _read_metadata(path: pathlib.Path) -> dict:
    """The metadata of a complete task file, after checking that every array is present with the schema's shape
    and dtype (from the .npy headers, without decompressing the arrays). Raises one of _READ_ERRORS otherwise."""
    with np.load(path, allow_pickle=False) as npz:
        metadata = json.loads(npz["metadata"].item())
        for name, (shape, dtype) in _array_shapes(metadata["episodes"]).items():
            with npz.zip.open(f"{name}.npy") as member:
                version = np.lib.format.read_magic(member)
                read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                               else np.lib.format.read_array_header_2_0)
                found_shape, _, found_dtype = read_header(member)
            if found_shape != shape or found_dtype != dtype:
                raise ValueError(f"{name} is {found_dtype}{list(found_shape)}, expected {dtype}{list(shape)}")
    return metadata


def _settings_diff(found: dict, wanted: dict) -> list[str]:
    return [f"{key} {found.get(key)} (requested {value})" for key, value in wanted.items() if found.get(key) != value]


def missing_tasks(tasks, data_dir, episodes: int | None = None, seed: int | None = None) -> list[str]:
    """The tasks of `tasks` that have no complete file in `data_dir`; with `episodes` / `seed` given, a file made
    with another N / seed counts as missing too (None = any)."""
    missing = []
    for task in tasks:
        try:
            metadata = _read_metadata(dataset_path(task, data_dir))
        except _READ_ERRORS:
            missing.append(task)
            continue
        if (episodes is not None and metadata["episodes"] != episodes) or (seed is not None and metadata["seed"] != seed):
            missing.append(task)
    return missing


def load_dataset(task: str, quality: str, data_dir) -> dict[str, np.ndarray]:
    """One task's `quality` dataset ("near-optimal": all N episodes, "sub-optimal": the first N // 2) as arrays
    with the file's keys, sliced to those episodes (observations (n, 501, 39), actions (n, 500, 4), rewards,
    successes (n, 500), quality (n,)), plus "metadata" (dict, with "dataset_quality" and "dataset_episodes").

    Raises FileNotFoundError (with the command that makes the file) when it is missing, ValueError when it is
    unreadable or incomplete (regenerate with --overwrite) or holds NaN/inf."""
    path = dataset_path(task, data_dir)
    make = f"python collect_data.py --tasks {task} --data-dir {shlex.quote(str(data_dir))}"
    if quality not in DATASET_QUALITIES:
        raise ValueError(f"unknown dataset quality {quality!r}; use one of {', '.join(DATASET_QUALITIES)}")
    if not path.exists():
        raise FileNotFoundError(f"no dataset for {task}: {path} does not exist; create it with `{make}`")
    try:
        metadata = _read_metadata(path)
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in _array_shapes(metadata["episodes"])}
    except _READ_ERRORS as exc:
        raise ValueError(f"{path} is unreadable or incomplete ({type(exc).__name__}: {exc}); "
                         f"regenerate it with `{make} --overwrite`") from exc
    for name, array in arrays.items():
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            raise ValueError(f"{task}: {name} in {path} contains NaN or inf; regenerate it with `{make} --overwrite`")
    n_wanted = episodes_in_dataset(quality, metadata["episodes"])
    # Copy a strict prefix, so the unused second half of the arrays can be freed.
    data = {name: (array if n_wanted == len(array) else array[:n_wanted].copy()) for name, array in arrays.items()}
    data["metadata"] = dict(metadata, dataset_quality=quality, dataset_episodes=n_wanted)
    return data


def write_atomically(path: pathlib.Path, write) -> None:
    """write(file) into a temporary file beside `path`, then rename it over `path`: a reader or a later run never
    sees a half-written file, even if this process is killed (os.replace is atomic within a folder)."""
    tmp = _temp_path(path)
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_task_file(path: pathlib.Path, arrays: dict[str, np.ndarray], metadata: dict) -> None:
    """One task's episodes (the arrays of the "Files" table in the README) and its metadata, atomically: the file
    load_dataset reads. Public so that tools deriving a dataset (scripts/subset_data.py) write the same format."""
    # Compressed: 2.9x smaller than np.savez (3.1 vs 8.9 MB per 100 push-v3 episodes) for 0.14 s more per
    # 100 episodes, ~1% of the wall time of collecting them with 2 workers; loading takes 0.02 s.
    write_atomically(path, lambda f: np.savez_compressed(f, **arrays, metadata=np.array(json.dumps(metadata))))


# =====================================================================================================================
# Summary
# =====================================================================================================================


def _split_stats(rewards: np.ndarray, successes: np.ndarray) -> dict:
    return {"episodes": len(rewards), "transitions": int(rewards.size),
            "mean_return": float(rewards.sum(1, dtype=np.float64).mean()),
            "success_rate": float(successes.any(1).mean())}


def _task_summary(rewards: np.ndarray, successes: np.ndarray) -> dict:
    """rewards, successes (N, T) of one task -> stats of each dataset and of the expert end of the stream."""
    n = len(rewards)
    summary = {q: _split_stats(rewards[:episodes_in_dataset(q, n)], successes[:episodes_in_dataset(q, n)])
               for q in DATASET_QUALITIES}
    tail = max(1, math.ceil(EXPERT_END_FRACTION * n))
    summary["expert-end"] = _split_stats(rewards[-tail:], successes[-tail:])
    return summary


def _mean_summary(rows: list[dict]) -> dict:
    """Counts summed over tasks, returns and success rates averaged over tasks (each task weighs the same)."""
    return {part: {key: (sum(r[part][key] for r in rows) if key in ("episodes", "transitions")
                         else float(np.mean([r[part][key] for r in rows])))
                   for key in rows[0][part]}
            for part in rows[0]}


def format_summary(summary: dict) -> str:
    """The summary as a Markdown table (printed at the end of a collection and pasted into the README)."""
    lines = [
        f"{len(summary['tasks'])} tasks, {summary['episodes']} episodes per task, seed {summary['seed']}, "
        f"metaworld {summary['versions']['metaworld']}",
        "",
        "| task | episodes | transitions | Near-Optimal return | Near-Optimal success | Sub-Optimal return "
        "| Sub-Optimal success | expert end (last 10%) success |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, row in [*summary["tasks"].items(), ("**mean**", summary["mean"])]:
        near, sub, end = row["near-optimal"], row["sub-optimal"], row["expert-end"]
        lines.append(f"| {name} | {near['episodes']} | {near['transitions']} | {near['mean_return']:.0f} "
                     f"| {near['success_rate']:.0%} | {sub['mean_return']:.0f} | {sub['success_rate']:.0%} "
                     f"| {end['success_rate']:.0%} |")
    return "\n".join(lines)


# =====================================================================================================================
# Collection
# =====================================================================================================================


def default_workers() -> int:
    """The CPU cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _mp_context():
    """fork where it is safe, so workers inherit the imported simulator (re-importing it costs ~0.75 s each).
    Not on macOS/Windows, and not once torch is loaded (goskill.py calls collect()): forking a process whose torch
    thread pools may hold locks can deadlock the child. spawn re-imports the parent's main module per worker."""
    safe_to_fork = sys.platform.startswith("linux") and "torch" not in sys.modules
    return mp.get_context("fork" if safe_to_fork else "spawn")


def _check_request(tasks, episodes, workers, seed, expert_aim: str = DEFAULT_EXPERT_AIM) -> list[str]:
    tasks = resolve_tasks(tasks) if isinstance(tasks, str) else resolve_tasks(",".join(tasks))
    if not tasks:
        raise DataError("no tasks given; use --tasks mt10, mt30, mt50 or a comma list such as reach-v3,push-v3")
    if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 2 or episodes % 2:
        raise DataError(f"--episodes must be an even number >= 2 (Sub-Optimal is the first half of the "
                        f"episodes), got {episodes}")
    if workers is not None and (not isinstance(workers, int) or workers < 1):
        raise DataError(f"--workers must be >= 1, got {workers}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise DataError(f"--seed must be an integer >= 0, got {seed}")
    if expert_aim not in EXPERT_AIMS:
        raise DataError(f"--expert-aim must be one of {', '.join(EXPERT_AIMS)}, got {expert_aim!r}")
    return tasks


def _prepare_data_dir(data_dir: pathlib.Path) -> None:
    """Create `data_dir` and check that files can be written there (also as root, for whom os.access lies)."""
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=data_dir):
            pass
    except OSError as exc:
        raise DataError(f"cannot write to --data-dir {data_dir} ({exc.strerror or exc}); "
                        f"choose a writable folder") from exc


def _plan(tasks: list[str], episodes: int, seed: int, expert_aim: str, data_dir: pathlib.Path, overwrite: bool,
          log) -> tuple[list[str], list[str]]:
    """Split `tasks` into (to collect, complete and reusable). Raises DataError naming every file that exists
    with other settings, unless `overwrite`. Reads only: nothing is written before the whole request is valid."""
    to_collect, reuse, conflicts = [], [], []
    for task in tasks:
        path = dataset_path(task, data_dir)
        if overwrite or not path.exists():
            to_collect.append(task)
            continue
        try:
            found = _read_metadata(path)
        except _READ_ERRORS as exc:
            log(f"note: {path} is unreadable or incomplete ({type(exc).__name__}); regenerating it")
            to_collect.append(task)
            continue
        wanted = _settings(task, episodes, seed, expert_aim)
        # Compared as the aim each file is made with: a file without the key was made with the hand's.
        found_aim = found.get("expert_aim", "hand")
        diff = _settings_diff({**found, "expert_aim": found_aim}, {**wanted, "expert_aim": aim_of(task, expert_aim)})
        if diff:
            conflicts.append((path, diff, found_aim))
        else:
            reuse.append(task)
    if conflicts:
        only_the_aim = all(len(diff) == 1 and diff[0].startswith("expert_aim") for _, diff, _ in conflicts)
        found_aims = {aim for _, _, aim in conflicts}
        keep = ""
        if only_the_aim and len(found_aims) == 1:        # e.g. a data folder made before the default changed
            keep = (f", or pass --expert-aim {found_aims.pop()} to use them (the default is {DEFAULT_EXPERT_AIM} "
                    f"since 2026-12-01)")
        described = [f"{path} has {', '.join(diff)}" for path, diff, _ in conflicts]
        raise DataError(f"existing file(s) made with other settings: {'; '.join(described)}. "
                        f"Rerun with --overwrite to regenerate them, or use another --data-dir{keep}")
    return to_collect, reuse


def _units(tasks: list[str], episodes: int, seed: int, expert_aim: str) -> list[tuple]:
    """Work units in task-major order, so the first tasks finish (and are written) first."""
    return [(task, start, min(start + EPISODES_PER_UNIT, episodes), episodes, seed, expert_aim)
            for task in tasks for start in range(0, episodes, EPISODES_PER_UNIT)]


def collect(tasks, episodes: int = DEFAULT_EPISODES, workers: int | None = None, seed: int = 0,
            data_dir="data", overwrite: bool = False, *, expert_aim: str = DEFAULT_EXPERT_AIM, command: str | None = None,
            verbose: bool = True) -> dict:
    """Collect `episodes` episodes of each task (a list of names or a spec for resolve_tasks) into
    <data_dir>/<task>.npz, reusing complete files made with the same settings, and write <data_dir>/summary.json.
    Returns the summary (per-task and mean stats of both datasets and of the expert end).

    workers: processes (default: all CPU cores). expert_aim: EXPERT_AIMS. command: recorded in the metadata
    (default: sys.argv).
    verbose: show the progress bar and print the summary table.
    Raises DataError (a ValueError) on bad input or an existing file made with other settings; in that case
    nothing is written."""
    tasks = _check_request(tasks, episodes, workers, seed, expert_aim)
    data_dir = pathlib.Path(data_dir)
    to_collect, reuse = _plan(tasks, episodes, seed, expert_aim, data_dir, overwrite,
                              log=lambda msg: print(msg, file=sys.stderr))
    _prepare_data_dir(data_dir)

    units = _units(to_collect, episodes, seed, expert_aim)
    workers = max(1, min(workers or default_workers(), len(units)))
    metadata_extra = {"command": command or shlex.join(sys.argv), "workers": workers,
                      "numpy_version": np.__version__, "python_version": sys.version.split()[0]}
    summaries = {}
    buffers: dict[str, dict[str, np.ndarray]] = {}   # task -> arrays being filled, while its units arrive
    done_episodes = collections.Counter()
    bar = tqdm(total=len(to_collect) * episodes * EPISODE_LENGTH, unit="step", unit_scale=True,
               desc=f"collecting {len(to_collect)} task(s) x {episodes} episodes", disable=not (units and verbose))
    bar.set_postfix(tasks=f"0/{len(to_collect)}", workers=workers)
    pool, finished = None, False
    try:
        if workers == 1:
            cache = _EnvCache()
            results = (_run_unit(unit, cache) for unit in units)
        else:
            # An executor, not multiprocessing.Pool: when a worker dies, Pool silently starts another, forever;
            # the executor fails the run instead (BrokenProcessPool, turned into a DataError below).
            others = set(mp.active_children())
            pool = concurrent.futures.ProcessPoolExecutor(workers, mp_context=_mp_context(),
                                                          initializer=_init_worker)
            results = (f.result() for f in concurrent.futures.as_completed(
                [pool.submit(_run_unit_in_worker, unit) for unit in units]))
        for task, start, arrays in results:
            if task not in buffers:
                buffers[task] = {name: np.empty(shape, dtype) for name, (shape, dtype) in _array_shapes(episodes).items()}
            n = len(arrays["actions"])
            for name, array in arrays.items():
                buffers[task][name][start:start + n] = array
            done_episodes[task] += n
            bar.update(n * EPISODE_LENGTH)
            if done_episodes[task] == episodes:
                data = buffers.pop(task)
                data["quality"][:] = [episode_quality(i, episodes) for i in range(episodes)]
                write_task_file(dataset_path(task, data_dir), data,
                                 {**_settings(task, episodes, seed, expert_aim), **metadata_extra,
                                  "sub_optimal_episodes": episodes_in_dataset("sub-optimal", episodes),
                                  "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
                summaries[task] = _task_summary(data["rewards"], data["successes"])
                bar.set_postfix(tasks=f"{len(summaries)}/{len(to_collect)}", workers=workers)
        finished = True
    except concurrent.futures.BrokenExecutor as exc:              # BrokenProcessPool
        # Seen when a script that calls collect() (or goskill) has no main guard: with spawn (always once torch is
        # imported) each worker re-imports the main script, which starts a collection of its own and dies.
        raise DataError(f"a collection worker process died ({exc}); the task files already written are kept. "
                        "If you call this from your own script, put its code under if __name__ == '__main__': "
                        "(worker processes re-import it), then run it again") from exc
    finally:
        if pool is not None:
            if not finished:         # an error or Ctrl-C: drop the units not started, stop the running ones now
                # Letting each finish its unit instead (~2 s) hung the exit in the 2-worker test, which sends a
                # second Ctrl-C 2 s after the first (one Ctrl-C alone exited after 4.6 s). Known rare risk, as
                # with multiprocessing.Pool.terminate: a worker killed in the ~1 ms it spends sending a result
                # leaves the executor's reader waiting for the rest.
                pool.shutdown(wait=False, cancel_futures=True)
                for worker in set(mp.active_children()) - others:     # the children this pool started
                    worker.terminate()
            pool.shutdown()          # joins the executor's threads (and, at the end, its idle workers)
        bar.close()

    for task in reuse:
        with np.load(dataset_path(task, data_dir), allow_pickle=False) as npz:
            summaries[task] = _task_summary(npz["rewards"], npz["successes"])
    summary = {"episodes": episodes, "seed": seed, "noise_std_max": NOISE_STD_MAX, "schedule": SCHEDULE_NAME,
               "expert_aim": expert_aim,
               "versions": _versions(), "reused": reuse,
               "tasks": {task: summaries[task] for task in tasks}}
    summary["mean"] = _mean_summary(list(summary["tasks"].values()))
    write_atomically(data_dir / "summary.json", lambda f: f.write((json.dumps(summary, indent=2) + "\n").encode()))
    if verbose:
        print(format_summary(summary))
    return summary


# =====================================================================================================================
# Benchmark
# =====================================================================================================================


def _bare_loop(tasks: list[str], episodes: int, seed: int, actions: dict[str, np.ndarray] | None = None):
    """The simulator alone on the benchmark's work: build each env, then reset_env + env.step for every episode,
    with uniform random actions, or replaying `actions[task]` (N, T, 4). Returns (seconds, observations by task)."""
    rng = np.random.default_rng(seed)
    observations = {task: np.empty((episodes, EPISODE_LENGTH + 1, OBS_DIM), np.float32) for task in tasks}
    start = time.perf_counter()
    for task in tasks:
        env = make_env(task)
        for episode in range(episodes):
            obs = observations[task][episode]
            obs[0] = reset_env(env, variant_seed(seed, task, episode, "data"))
            for t in range(EPISODE_LENGTH):
                action = (rng.uniform(-1.0, 1.0, ACT_DIM).astype(np.float32) if actions is None
                          else actions[task][episode, t])
                obs[t + 1] = env.step(action)[0]
    return time.perf_counter() - start, observations


def _busy_loop(iterations: int) -> float:
    start = time.perf_counter()
    total = 0
    for i in range(iterations):
        total += i
    return time.perf_counter() - start


def _parallel_capacity(iterations: int = 5_000_000) -> float:
    """How many cores' worth of CPU two processes get right now: 2 x (time of a fixed pure-Python loop alone) /
    (its time when two copies run at once). 2.0 on two idle cores; less when the host is shared and busy, which
    caps any 2-worker speed-up."""
    alone = _busy_loop(iterations)
    with _mp_context().Pool(2) as pool:
        together = pool.map(_busy_loop, [iterations, iterations])
    return 2 * alone / max(together)


def benchmark(tasks: list[str], episodes: int = BENCHMARK_EPISODES, seed: int = 0,
              rounds: int = BENCHMARK_ROUNDS) -> dict:
    """Time, in one run, the same work (`episodes` episodes of each task) done by
      (a) a bare loop of env.step with uniform random actions (the simulator's own speed),
      (b) collect() with 1 worker,
      (r) a bare loop of env.step replaying (b)'s actions: the same states as (b), so (r)/(b) is the cost of
          everything collection adds to the simulator, while (a)/(b) also includes that the behaviour policy's
          contact-rich states cost the simulator more than a random policy's,
      (c) collect() with 2 workers.
    Each is timed `rounds` times, interleaved, and the fastest time counts (as timeit does): on a shared host the
    other load only ever slows a run down. Every timing includes building the envs; (b) and (c) include writing
    the files. Also checks that (b) and (c) wrote identical arrays and that the replay reproduces (b)'s
    observations exactly, and measures how much CPU two processes can get between rounds (_parallel_capacity)."""
    steps = len(tasks) * episodes * EPISODE_LENGTH
    times = collections.defaultdict(list)   # run -> seconds of each round
    capacity = [_parallel_capacity()]
    identical = replay_exact = True
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in tqdm(range(rounds), desc="benchmark rounds"):
            times["bare_random"].append(_bare_loop(tasks, episodes, seed)[0])
            for workers in (1, 2):
                out = pathlib.Path(tmp, f"round{round_}-workers{workers}")
                start = time.perf_counter()
                # The hand's aim, as when the README's figures were measured (the aim costs ~nothing).
                collect(tasks, episodes, workers=workers, seed=seed, data_dir=out, verbose=False,
                        expert_aim="hand", command=f"benchmark, {workers} worker(s)")
                times[f"workers{workers}"].append(time.perf_counter() - start)
                data = {task: load_dataset(task, "near-optimal", out) for task in tasks}
                if workers == 1:
                    seconds, replayed = _bare_loop(tasks, episodes, seed, {t: data[t]["actions"] for t in tasks})
                    times["bare_replay"].append(seconds)
                    replay_exact &= all(np.array_equal(replayed[t], data[t]["observations"]) for t in tasks)
                    one_worker = data
                else:
                    identical &= all(np.array_equal(one_worker[t][name], data[t][name])
                                     for t in tasks for name in _array_shapes(episodes))
            capacity.append(_parallel_capacity())
    seconds = {run: min(round_times) for run, round_times in times.items()}
    result = {"tasks": len(tasks), "episodes_per_task": episodes, "steps": steps, "rounds": rounds,
              "seconds_per_round": dict(times), "steps_per_second": {k: steps / s for k, s in seconds.items()},
              "collection_vs_bare_random": seconds["bare_random"] / seconds["workers1"],
              "collection_vs_bare_replay": seconds["bare_replay"] / seconds["workers1"],
              "speedup_2_vs_1_workers": seconds["workers1"] / seconds["workers2"],
              "identical_arrays_1_vs_2_workers": identical, "replay_reproduces_observations": replay_exact,
              "cpu_cores": default_workers(), "parallel_capacity": capacity}
    sps = result["steps_per_second"]
    print(f"\nbenchmark: {len(tasks)} tasks x {episodes} episodes = {steps} steps per run, fastest of {rounds} "
          f"rounds, {default_workers()} CPU cores\n"
          f"  (a) bare env.step loop, random actions:          {sps['bare_random']:6.0f} steps/s\n"
          f"  (r) bare env.step loop, replaying (b)'s actions: {sps['bare_replay']:6.0f} steps/s\n"
          f"  (b) collection, 1 worker:                        {sps['workers1']:6.0f} steps/s = "
          f"{result['collection_vs_bare_random']:.0%} of (a), {result['collection_vs_bare_replay']:.0%} of (r)"
          f"   (target >= 85%)\n"
          f"  (c) collection, 2 workers:                       {sps['workers2']:6.0f} steps/s = "
          f"{result['speedup_2_vs_1_workers']:.2f}x (b)   (target >= 1.7x on 2 cores)\n"
          f"  CPU two processes could get before/between/after rounds: "
          f"{' / '.join(f'{c:.2f}' for c in capacity)} cores (2.00 = two free cores; less = a busy shared host)\n"
          f"  arrays of (b) and (c) identical: {identical}; replay reproduces (b)'s observations: {replay_exact}")
    return result


# =====================================================================================================================
# CLI
# =====================================================================================================================


class _OneLineParser(argparse.ArgumentParser):
    def error(self, message):   # argparse prints usage + message; bad input here is reported in one line
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def main(argv: list[str] | None = None) -> int:
    parser = _OneLineParser(prog="collect_data.py", description=__doc__.split("\n\n")[0],
                            epilog="See the module docstring or README.md for the file schema and the schedule.")
    parser.add_argument("--tasks", default="mt10",
                        help="mt10, mt30, mt50 or a comma list of MetaWorld 3 names, e.g. reach-v3,push-v3")
    parser.add_argument("--episodes", type=int, default=None,
                        help=f"episodes per task, even, >= 2 (default {DEFAULT_EPISODES}; "
                             f"{BENCHMARK_EPISODES} with --benchmark); Sub-Optimal is the first half")
    parser.add_argument("--workers", type=int, default=None,
                        help=f"worker processes (default: the CPU cores, here {default_workers()})")
    parser.add_argument("--seed", type=int, default=0, help="seed of the variants and the behaviour noise")
    parser.add_argument("--data-dir", default="data", help="folder of the <task>.npz files and summary.json")
    parser.add_argument("--expert-aim", default=DEFAULT_EXPERT_AIM, choices=EXPERT_AIMS,
                        help="tool-centre: the reach experts put the gripper's tool centre, where success is "
                             "measured, on the goal; hand: MetaWorld's scripted experts as they are (default "
                             f"{DEFAULT_EXPERT_AIM}; --benchmark always uses hand)")
    parser.add_argument("--overwrite", action="store_true",
                        help="regenerate task files even if they exist (e.g. made with other settings)")
    parser.add_argument("--benchmark", action="store_true",
                        help="time collection (1 and 2 workers) against a bare env.step loop in temporary "
                             "folders; --data-dir is not touched")
    args = parser.parse_args(argv)
    command = shlex.join(["python", "collect_data.py", *(sys.argv[1:] if argv is None else argv)])
    try:
        if args.benchmark:
            episodes = BENCHMARK_EPISODES if args.episodes is None else args.episodes
            benchmark(_check_request(args.tasks, episodes, args.workers, args.seed), episodes, args.seed)
        else:
            episodes = DEFAULT_EPISODES if args.episodes is None else args.episodes
            collect(args.tasks, episodes, args.workers, args.seed, args.data_dir, args.overwrite,
                    expert_aim=args.expert_aim, command=command)
    except DataError as exc:
        print(f"collect_data.py: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("collect_data.py: interrupted; the task files already written are complete and kept. "
              "Run the same command again to collect the rest.", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
