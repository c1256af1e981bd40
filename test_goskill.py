"""Tests of collect_data.py and goskill.py, on the real simulator with tiny sizes: python -m pytest -q test_goskill.py"""

# ---- collect_data.py ----
# Real 500-step MetaWorld episodes, few of them: two tiny collections (2 tasks x 8 episodes, with 1 and with 2
# workers) are made once per module and copied where a test needs to damage or reuse them.

import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from metaworld.env_dict import ALL_V3_ENVIRONMENTS
from metaworld.policies import ENV_POLICY_MAP

import collect_data as cd

ROOT = pathlib.Path(__file__).resolve().parent
TASKS = ["reach-v3", "push-v3"]   # the fastest task and one with an object
EPISODES = 8                      # the fewest that give quarters of 2 episodes


@pytest.fixture(scope="module")
def collected(tmp_path_factory) -> dict[int, pathlib.Path]:
    """workers -> folder of the same TASKS x EPISODES collection, made with that many workers."""
    dirs = {}
    for workers in (1, 2):
        dirs[workers] = tmp_path_factory.mktemp(f"workers{workers}")
        cd.collect(TASKS, EPISODES, workers=workers, seed=0, data_dir=dirs[workers])
    return dirs


@pytest.fixture
def copied(collected, tmp_path) -> pathlib.Path:
    """A private copy of the 1-worker collection, for tests that modify files."""
    return pathlib.Path(shutil.copytree(collected[1], tmp_path / "data"))


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "collect_data.py"), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def test_task_sets_match_metaworld():
    assert (len(cd.TASK_SETS["mt10"]), len(cd.TASK_SETS["mt30"]), len(cd.TASK_SETS["mt50"])) == (10, 30, 50)
    assert set(cd.TASK_SETS["mt50"]) == set(ALL_V3_ENVIRONMENTS) == set(ENV_POLICY_MAP)
    assert set(cd.TASK_SETS["mt10"]) | set(cd.TASK_SETS["mt30"]) <= set(cd.TASK_SETS["mt50"])
    assert cd.resolve_tasks("mt10") == cd.TASK_SETS["mt10"]
    assert cd.resolve_tasks("push-v3, reach-v3,push-v3") == ["push-v3", "reach-v3"]
    with pytest.raises(ValueError) as err:
        cd.resolve_tasks("reach-v3,fly-v3")
    message = str(err.value)
    assert "fly-v3" in message and "mt10" in message and "window-open-v3" in message and "\n" not in message


def test_variant_seeds_are_deterministic_and_disjoint():
    seeds = {(task, ep, stream): cd.variant_seed(0, task, ep, stream)
             for task in cd.TASK_SETS["mt10"] for ep in range(20) for stream in cd.SEED_STREAMS}
    assert len(set(seeds.values())) == len(seeds)                  # no two episodes, tasks or streams share one
    assert all(s % len(cd.SEED_STREAMS) == cd.SEED_STREAMS[k[2]] for k, s in seeds.items())   # streams disjoint
    assert cd.variant_seed(0, "push-v3", 3, "eval") == seeds["push-v3", 3, "eval"]
    assert cd.variant_seed(1, "push-v3", 3, "eval") != seeds["push-v3", 3, "eval"]
    with pytest.raises(ValueError):
        cd.variant_seed(0, "push-v3", 3, "test")


def test_env_observes_a_fresh_goal_per_seed():
    env = cd.make_env("reach-v3")
    first = cd.reset_env(env, 1)
    assert first.shape == (cd.OBS_DIM,) and first.dtype == np.float64
    assert np.array_equal(first[-3:], env._target_pos) and np.abs(first[-3:]).sum() > 0   # the goal is observed
    second = cd.reset_env(env, 2)
    assert not np.array_equal(first[-3:], second[-3:])              # another seed, another variant
    assert np.array_equal(cd.reset_env(env, 1), first)              # the same seed, the same variant


def test_episode_does_not_depend_on_env_history():
    fresh = cd.play_episode(cd.make_env("push-v3"), ENV_POLICY_MAP["push-v3"](), "push-v3", 5, 8, seed=0)
    env = cd.make_env("push-v3")
    cd.play_episode(env, ENV_POLICY_MAP["push-v3"](), "push-v3", 2, 8, seed=0)   # warm the solver state first
    reused = cd.play_episode(env, ENV_POLICY_MAP["push-v3"](), "push-v3", 5, 8, seed=0)
    assert all(np.array_equal(fresh[k], reused[k]) for k in fresh)


def test_quality_schedule_end_points():
    assert cd.episode_quality(0, 10) == 0.0 and cd.episode_quality(9, 10) == 1.0
    env, policy = cd.make_env("push-v3"), ENV_POLICY_MAP["push-v3"]()
    obs = cd.reset_env(env, 0)
    rng = np.random.default_rng(0)
    expert = np.clip(policy.get_action(obs), -1, 1).astype(np.float32)
    assert all(np.array_equal(cd.behaviour_action(policy, obs, 1.0, rng), expert) for _ in range(20))
    random = np.stack([cd.behaviour_action(policy, obs, 0.0, rng) for _ in range(200)])
    assert random.dtype == np.float32 and np.abs(random).max() <= 1 and random.std(0).min() > 0.4   # ~U(-1, 1)


def test_files_have_the_schema(collected):
    for task in TASKS:
        with np.load(cd.dataset_path(task, collected[1]), allow_pickle=False) as npz:
            assert sorted(npz.files) == sorted([*cd._array_shapes(EPISODES), "metadata"])
            for name, (shape, dtype) in cd._array_shapes(EPISODES).items():
                assert npz[name].shape == shape and npz[name].dtype == dtype, name
            assert npz["observations"].shape == (EPISODES, 501, 39) and npz["actions"].shape == (EPISODES, 500, 4)
            np.testing.assert_allclose(npz["quality"], np.linspace(0, 1, EPISODES), rtol=1e-6)
            metadata = json.loads(npz["metadata"].item())
        assert metadata["task"] == task and metadata["episodes"] == EPISODES and metadata["seed"] == 0
        assert metadata["schedule"]["noise_std_max"] == cd.NOISE_STD_MAX
        assert metadata["versions"]["metaworld"] == "3.1.1" and metadata["command"]


def test_workers_do_not_change_the_data(collected):
    for task in TASKS:
        with np.load(cd.dataset_path(task, collected[1])) as one, np.load(cd.dataset_path(task, collected[2])) as two:
            for name in cd._array_shapes(EPISODES):
                assert one[name].tobytes() == two[name].tobytes(), (task, name)


def test_replaying_the_actions_reproduces_the_observations(collected):
    data = cd.load_dataset("push-v3", "near-optimal", collected[1])
    env, episode = cd.make_env("push-v3"), EPISODES - 1
    obs = [cd.reset_env(env, cd.variant_seed(0, "push-v3", episode, "data"))]
    obs += [env.step(action)[0] for action in data["actions"][episode]]
    assert np.array_equal(np.asarray(obs, np.float32), data["observations"][episode])


def test_sub_optimal_is_the_first_half(collected):
    near = cd.load_dataset("reach-v3", "near-optimal", collected[1])
    sub = cd.load_dataset("reach-v3", "sub-optimal", collected[1])
    assert len(near["actions"]) == EPISODES and len(sub["actions"]) == EPISODES // 2
    for name in cd._array_shapes(EPISODES):
        assert np.array_equal(sub[name], near[name][: EPISODES // 2]), name
    assert sub["metadata"]["dataset_quality"] == "sub-optimal" and sub["metadata"]["episodes"] == EPISODES
    with pytest.raises(ValueError, match="near-optimal"):
        cd.load_dataset("reach-v3", "expert", collected[1])


def test_quality_rises_along_the_stream(collected):
    returns = cd.load_dataset("reach-v3", "near-optimal", collected[1])["rewards"].sum(1)
    quarter = EPISODES // 4
    assert returns[-quarter:].mean() > returns[:quarter].mean() + 1000


def test_summary_is_saved(collected):
    summary = json.loads((collected[1] / "summary.json").read_text())
    assert list(summary["tasks"]) == TASKS
    reach = summary["tasks"]["reach-v3"]
    assert reach["near-optimal"]["episodes"] == EPISODES and reach["sub-optimal"]["episodes"] == EPISODES // 2
    assert reach["near-optimal"]["transitions"] == EPISODES * 500
    assert reach["expert-end"]["episodes"] == 1 and reach["expert-end"]["success_rate"] == 1.0
    assert summary["mean"]["near-optimal"]["episodes"] == 2 * EPISODES


def test_rerun_reuses_complete_files(copied, capsys):
    before = {task: cd.dataset_path(task, copied).stat().st_mtime_ns for task in TASKS}
    assert cd.missing_tasks(TASKS, copied) == [] and cd.missing_tasks(TASKS, copied, EPISODES, 0) == []
    assert cd.main(["--tasks", ",".join(TASKS), "--episodes", str(EPISODES), "--data-dir", str(copied)]) == 0
    assert "reach-v3" in capsys.readouterr().out                     # the table is printed
    assert {task: cd.dataset_path(task, copied).stat().st_mtime_ns for task in TASKS} == before


def test_partial_files_are_never_loaded_and_are_regenerated(collected, copied):
    reach, push = cd.dataset_path("reach-v3", copied), cd.dataset_path("push-v3", copied)
    reach.write_bytes(reach.read_bytes()[: reach.stat().st_size // 2])           # a truncated <task>.npz
    leftover = cd._temp_path(push)
    os.replace(push, leftover)                                                    # killed before the rename
    leftover.write_bytes(leftover.read_bytes()[:1000])
    assert cd.missing_tasks(TASKS, copied) == TASKS
    with pytest.raises(ValueError, match="--overwrite"):
        cd.load_dataset("reach-v3", "near-optimal", copied)
    with pytest.raises(FileNotFoundError, match=re.escape(f"python collect_data.py --tasks push-v3 --data-dir {copied}`")):
        cd.load_dataset("push-v3", "near-optimal", copied)

    summary = cd.collect(TASKS, EPISODES, workers=2, seed=0, data_dir=copied)
    assert summary["reused"] == [] and not leftover.exists()
    for task in TASKS:
        with np.load(cd.dataset_path(task, collected[1])) as original, np.load(cd.dataset_path(task, copied)) as new:
            assert all(np.array_equal(original[name], new[name]) for name in cd._array_shapes(EPISODES))


def test_interrupted_collection_keeps_finished_tasks(tmp_path):
    data_dir = tmp_path / "data"
    proc = subprocess.Popen([sys.executable, str(ROOT / "collect_data.py"), "--tasks", "reach-v3,push-v3",
                             "--episodes", "8", "--workers", "1", "--data-dir", str(data_dir)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not cd.dataset_path("reach-v3", data_dir).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)                # push-v3 (the second task) is ~3 s from done
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Run the same command again" in stderr
    assert sorted(p.name for p in data_dir.iterdir()) == ["reach-v3.npz"]          # no temp file, no push-v3.npz
    assert cd.missing_tasks(["reach-v3", "push-v3"], data_dir, 8, 0) == ["push-v3"]
    assert len(cd.load_dataset("reach-v3", "near-optimal", data_dir)["actions"]) == 8


def test_files_made_with_other_settings_are_reported(copied):
    before = sorted((p.name, p.stat().st_mtime_ns) for p in copied.iterdir())
    with pytest.raises(ValueError) as err:
        cd.collect(TASKS, episodes=4, seed=1, workers=1, data_dir=copied)
    message = str(err.value)
    assert str(cd.dataset_path("reach-v3", copied)) in message and str(cd.dataset_path("push-v3", copied)) in message
    assert "episodes 8 (requested 4)" in message and "seed 0 (requested 1)" in message and "--overwrite" in message
    assert sorted((p.name, p.stat().st_mtime_ns) for p in copied.iterdir()) == before   # nothing written
    assert cd.missing_tasks(TASKS, copied, episodes=4) == TASKS and cd.missing_tasks(TASKS, copied) == []

    result = run_cli("--tasks", "reach-v3", "--episodes", "4", "--data-dir", str(copied))
    assert result.returncode == 2 and "reach-v3.npz" in result.stderr and "--overwrite" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("args, expected", [
    (["--tasks", "reach-v3,fly-v3"], "unknown task 'fly-v3'"),
    (["--tasks", "reach-v3", "--episodes", "7"], "--episodes must be an even number >= 2"),
    (["--tasks", "reach-v3", "--episodes", "0"], "--episodes must be an even number >= 2"),
    (["--tasks", "reach-v3", "--episodes", "two"], "invalid int value"),
])
def test_cli_rejects_bad_input(tmp_path, args, expected):
    result = run_cli(*args, "--data-dir", str(tmp_path / "data"))
    assert result.returncode == 2 and expected in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and result.stdout == ""
    assert not (tmp_path / "data").exists()


def test_cli_rejects_an_unwritable_data_dir(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    result = run_cli("--tasks", "reach-v3", "--episodes", "2", "--data-dir", str(tmp_path / "file" / "data"))
    assert result.returncode == 2 and "cannot write to --data-dir" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_load_dataset_rejects_non_finite_values(collected, tmp_path):
    data = cd.load_dataset("reach-v3", "near-optimal", collected[1])
    metadata = {k: v for k, v in data.pop("metadata").items() if not k.startswith("dataset_")}
    data["rewards"][3, 7] = np.nan
    cd._write_task_file(cd.dataset_path("reach-v3", tmp_path), data, metadata)
    with pytest.raises(ValueError, match="reach-v3: rewards"):
        cd.load_dataset("reach-v3", "near-optimal", tmp_path)
