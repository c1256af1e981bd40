"""Tests of collect_data.py and goskill.py, on the real simulator with tiny sizes: python -m pytest -q test_goskill.py"""

# ---- collect_data.py ----
# Real 500-step MetaWorld episodes, few of them: two tiny collections (2 tasks x 8 episodes, with 1 and with 2
# workers) are made once per module and copied where a test needs to damage or reuse them.

import dataclasses
import importlib.util
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

import torch
import torch.nn.functional as F

import collect_data as cd
import goskill

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
            progress = np.linspace(0, 1, EPISODES)                        # the learning-curve schedule
            np.testing.assert_allclose(npz["quality"], 1 - (1 - progress) ** 2, rtol=1e-6, atol=1e-7)
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


@pytest.mark.parametrize("workers", [1, 2])          # in-process, and a worker pool stopped on Ctrl-C
def test_interrupted_collection_keeps_finished_tasks(tmp_path, workers):
    data_dir = tmp_path / "data"
    tasks = ["reach-v3", "push-v3", "pick-place-v3", "door-open-v3"]
    proc = subprocess.Popen([sys.executable, str(ROOT / "collect_data.py"), "--tasks", ",".join(tasks),
                             "--episodes", "8", "--workers", str(workers), "--data-dir", str(data_dir)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            # A shell starts background jobs (`cmd &`) with SIGINT ignored, and Python keeps an
                            # ignored SIGINT ignored: Ctrl-C would never reach the child. Restore the default, so
                            # the test does not depend on how the test runner was started.
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while not cd.dataset_path("reach-v3", data_dir).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    # Ctrl-C with three tasks (~4-8 s of work) left, so a slow moment of a shared CI host cannot let the run finish
    # first. Sent once more if the process is still running 2 s later: CPython drops a KeyboardInterrupt that
    # lands inside a finaliser ("Exception ignored in ..."); a second one during the clean exit would kill it.
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=2)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Run the same command again" in stderr, stderr[-3000:]
    assert sorted(p.name for p in data_dir.iterdir()) == ["reach-v3.npz"]          # no temp file, no other task
    assert cd.missing_tasks(tasks, data_dir, 8, 0) == tasks[1:]
    assert len(cd.load_dataset("reach-v3", "near-optimal", data_dir)["actions"]) == 8


def test_unguarded_script_fails_instead_of_hanging(tmp_path):
    # A user's script without a main guard: with torch imported the workers are spawned, re-import the script,
    # start a collection of their own and die. The run must stop with the fix named (multiprocessing.Pool, used
    # before, replaced the dead workers forever).
    script = tmp_path / "unguarded.py"
    script.write_text(f"import sys\nsys.path.insert(0, {str(ROOT)!r})\nimport torch\nimport collect_data\n"
                      f"collect_data.collect(['reach-v3', 'push-v3'], episodes=8, workers=2, "
                      f"data_dir={str(tmp_path / 'data')!r})\n")
    result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=180)
    assert result.returncode == 1 and "if __name__ == '__main__':" in result.stderr, result.stderr[-3000:]
    assert "DataError: a collection worker process died" in result.stderr
    assert not (tmp_path / "data").exists() or list((tmp_path / "data").glob("*.npz")) == []


def test_files_made_with_other_settings_are_reported(copied):
    before = sorted((p.name, p.stat().st_mtime_ns) for p in copied.iterdir())
    with pytest.raises(ValueError) as err:
        cd.collect(TASKS, episodes=4, seed=1, workers=1, data_dir=copied)
    message = str(err.value)
    assert str(cd.dataset_path("reach-v3", copied)) in message and str(cd.dataset_path("push-v3", copied)) in message
    assert "episodes 8 (requested 4)" in message and "seed 0 (requested 1)" in message and "--overwrite" in message
    assert "--expert-aim" not in message                            # the aim is not what differs
    assert sorted((p.name, p.stat().st_mtime_ns) for p in copied.iterdir()) == before   # nothing written
    assert cd.missing_tasks(TASKS, copied, episodes=4) == TASKS and cd.missing_tasks(TASKS, copied) == []

    result = run_cli("--tasks", "reach-v3", "--episodes", "4", "--data-dir", str(copied))
    assert result.returncode == 2 and "reach-v3.npz" in result.stderr and "--overwrite" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_tool_centre_aim_puts_the_tool_centre_on_reach_goals_and_is_recorded_only_where_it_changes_data(copied):
    env = cd.make_env("reach-v3")
    closest = {}
    for aim in cd.EXPERT_AIMS:                                        # noise-free expert, one evaluation variant
        policy = cd.expert_policy("reach-v3", env, aim)
        obs = cd.reset_env(env, cd.variant_seed(0, "reach-v3", 0, "eval"))
        distances = []
        for _ in range(150):
            obs = env.step(np.clip(policy.get_action(obs), -1, 1))[0]
            distances.append(np.linalg.norm(env.tcp_center - env._target_pos))
        closest[aim] = min(distances)
    assert 0.04 < closest["hand"] < 0.05 and closest["tool-centre"] < 0.005, closest   # success radius: 0.05
    assert type(cd.expert_policy("push-v3", env, "tool-centre")) is type(ENV_POLICY_MAP["push-v3"]())
    assert cd.DEFAULT_EXPERT_AIM == "tool-centre"

    # The fixture's files (default aim) record it for reach only; the hand's aim reuses push and refuses reach.
    assert cd.load_dataset("reach-v3", "near-optimal", copied)["metadata"]["expert_aim"] == "tool-centre"
    assert "expert_aim" not in cd.load_dataset("push-v3", "near-optimal", copied)["metadata"]
    with pytest.raises(ValueError, match=r"reach-v3\.npz has expert_aim tool-centre \(requested hand\)") as err:
        cd.collect(TASKS, EPISODES, workers=1, seed=0, data_dir=copied, expert_aim="hand")
    assert "push-v3" not in str(err.value)
    tool_actions = cd.load_dataset("reach-v3", "near-optimal", copied)["actions"]
    cd.collect(["reach-v3"], EPISODES, workers=2, seed=0, data_dir=copied, expert_aim="hand", overwrite=True)
    hand_actions = cd.load_dataset("reach-v3", "near-optimal", copied)["actions"]
    assert np.array_equal(hand_actions[0], tool_actions[0])        # quality 0: uniform random, no expert
    assert not np.array_equal(hand_actions[-1], tool_actions[-1])  # quality 1: the aimed expert acted
    # A hand-aimed file has no expert_aim setting, like every file made before the option: reused for the hand,
    # refused for the default.
    summary = cd.collect(TASKS, EPISODES, workers=1, seed=0, data_dir=copied, expert_aim="hand")
    assert summary["reused"] == TASKS and summary["expert_aim"] == "hand"
    assert "expert_aim" not in cd.load_dataset("reach-v3", "near-optimal", copied)["metadata"]
    with pytest.raises(ValueError, match=r"expert_aim hand \(requested tool-centre\).*--expert-aim hand to use"):
        cd.collect(TASKS, EPISODES, workers=1, seed=0, data_dir=copied)
    result = run_cli("--tasks", "reach-v3", "--expert-aim", "tool", "--data-dir", str(copied))
    assert result.returncode == 2 and "invalid choice: 'tool'" in result.stderr
    with pytest.raises(ValueError, match="unknown expert aim 'tool_centre'"):
        cd.expert_policy("reach-v3", env, "tool_centre")


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
    cd.write_task_file(cd.dataset_path("reach-v3", tmp_path), data, metadata)
    with pytest.raises(ValueError, match="reach-v3: rewards"):
        cd.load_dataset("reach-v3", "near-optimal", tmp_path)


# ---- goskill.py: components ----
# Small networks on random tensors: each test pins one property a reader relies on when lifting a class.

TINY = dict(n_embd=32, n_layer=1, n_head=2, dropout=0.0, code_dim=8, num_codes=6, encoder_hidden=32,
            skill_horizon=5, context_skills=4, prompt_skills=3, prompt_trajectories=2, segments_per_task=4,
            sequences_per_task=3, warmup_iters=2, extract_iters=6, policy_iters=6, kmeans_iters=3,
            log_interval=2, checkpoint_interval=4, eval_episodes=2, eval_parallel=2)


def test_quantizer_forward_is_nearest_code_and_backward_is_identity():
    torch.manual_seed(0)
    vq = goskill.VectorQuantizer(num_codes=5, code_dim=3, beta=0.25)
    z_e = torch.randn(7, 3, requires_grad=True)
    z_q, codes, _ = vq(z_e)
    expected = torch.cdist(z_e.detach(), vq.codebook.detach()).argmin(-1)
    assert torch.equal(codes, expected)
    assert torch.allclose(z_q, vq.codebook[codes].detach(), atol=1e-6)       # value of the nearest code
    (z_q * torch.arange(21.0).view(7, 3)).sum().backward()
    assert torch.equal(z_e.grad, torch.arange(21.0).view(7, 3))               # gradient of the identity
    assert vq.codebook.grad is None                                           # the task loss never reaches codes


def test_vq_loss_terms_reach_only_their_tensor():
    torch.manual_seed(0)
    beta = 0.25
    vq = goskill.VectorQuantizer(num_codes=4, code_dim=3, beta=beta)
    z_e = torch.randn(6, 3, requires_grad=True)
    _, codes, vq_loss = vq(z_e)
    vq_loss.backward()
    e_k = vq.codebook.detach()[codes]
    n = z_e.numel()
    # commitment term only: d/dz_e beta * mean((z_e - sg e)^2)
    assert torch.allclose(z_e.grad, beta * 2 * (z_e.detach() - e_k) / n, atol=1e-6)
    # codebook term only: d/de mean((sg z_e - e)^2), summed over the rows that chose each code
    expected = torch.zeros_like(vq.codebook).index_add_(0, codes, 2 * (e_k - z_e.detach()) / n)
    assert torch.allclose(vq.codebook.grad, expected, atol=1e-6)
    assert torch.allclose(vq_loss, (1 + beta) * F.mse_loss(z_e.detach(), e_k))


def test_code_counts_equal_bincount_and_cover_unused_codes():
    # code_counts replaces torch.bincount (a host sync on CUDA); it must give the same counts, zeros included.
    vq = goskill.VectorQuantizer(num_codes=7, code_dim=2, beta=1.0)
    codes = torch.tensor([0, 3, 3, 5, 0, 3])
    assert torch.equal(vq.code_counts(codes), torch.bincount(codes, minlength=7).float())


def test_to_device_keeps_values_and_dtype():
    indices = np.arange(12).reshape(3, 4)[:, ::2]                     # a non-contiguous int64 view
    out = goskill.to_device(indices, torch.device("cpu"))
    assert out.dtype == torch.int64 and torch.equal(out, torch.as_tensor(indices))


def test_kmeans_init_puts_codes_on_clusters():
    torch.manual_seed(0)
    centres = torch.tensor([[5.0, 0.0], [-5.0, 0.0], [0.0, 5.0]])
    data = (centres[:, None] + 0.1 * torch.randn(3, 30, 2)).reshape(-1, 2)
    vq = goskill.VectorQuantizer(num_codes=3, code_dim=2, beta=1.0)
    vq.init_from_data(data, iters=10, generator=torch.Generator().manual_seed(1))
    assert bool(vq.initialised)
    assert torch.cdist(centres, vq.codebook.detach()).min(1).values.max() < 0.2


def test_focal_loss_is_cross_entropy_at_gamma_zero_and_down_weights_easy_examples():
    torch.manual_seed(0)
    logits, targets = torch.randn(32, 16) * 3, torch.randint(0, 16, (32,))
    assert torch.allclose(goskill.focal_loss(logits, targets, gamma=0.0, alpha=1.0), F.cross_entropy(logits, targets))
    per_ce = F.cross_entropy(logits, targets, reduction="none")
    fl = goskill.focal_loss(logits, targets, gamma=2.0, alpha=1.0)
    assert fl < per_ce.mean()
    weights = (torch.arange(32) % 2).float()                      # padded rows are masked out of the mean
    assert torch.allclose(goskill.focal_loss(logits, targets, 0.0, 1.0, weights), per_ce[1::2].mean())


@pytest.mark.parametrize("algo, enhancement", [("goskill", True), ("goskill", False), ("prompt-dt", True)])
def test_cosine_schedule_reaches_zero_exactly_when_each_optimiser_stops(tiny_data, tmp_path, algo, enhancement):
    cfg = goskill.Config(**{**TINY, "tasks": ",".join(TASKS), "data_dir": str(tiny_data), "device": "cpu",
                            "algo": algo, "skill_enhancement": enhancement, "lr_schedule": "cosine", "lr": 1e-3})
    trainer = goskill.Trainer(cfg, tmp_path, torch.device("cpu"))
    trainer.load_data()
    if algo == "goskill":
        trainer.extract_skills()
        # A resume rebuilds the schedule from the config and the saved step: mid-decay, at the same rate.
        trainer.save()
        resumed = goskill.Trainer(cfg, tmp_path, torch.device("cpu"))
        resumed.load(torch.load(tmp_path / "checkpoint.pt", weights_only=False))
        rate = trainer.skill_sched.get_last_lr()[0]
        assert resumed.skill_sched.get_last_lr()[0] == rate and (0 < rate < cfg.lr) == enhancement
        trainer.label_data()
        trainer.learn_policy()
    else:
        trainer.learn_actions()
    # Steps taken: extraction (+ enhancement) for the skill optimiser; the policy's phase for the policy's.
    schedules = [(trainer.policy_sched, cfg.policy_iters + (cfg.extract_iters if algo == "prompt-dt" else 0))]
    if algo == "goskill":
        schedules.append((trainer.skill_sched, cfg.extract_iters + (cfg.policy_iters if enhancement else 0)))
    for sched, steps in schedules:
        assert sched.last_epoch == steps
        assert sched.get_last_lr()[0] == pytest.approx(0.0, abs=1e-12)
        assert sched.lr_lambdas[0](steps - 1) > 0                  # the last step taken still learns
    factors = [goskill.lr_factor(step, 100, cfg) for step in range(101)]
    assert factors[:2] == [0.5, 1.0] and all(a >= b for a, b in zip(factors[1:], factors[2:]))
    constant = dataclasses.replace(cfg, lr_schedule="constant")
    assert [goskill.lr_factor(step, 100, constant) for step in (0, 1, 50, 100)] == [0.5, 1.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="unknown lr_schedule 'linear'"):    # a Config built in code, not the CLI
        goskill.make_optimizer(torch.nn.Linear(2, 2), dataclasses.replace(cfg, lr_schedule="linear"), 100)


def test_class_balanced_sampler_gives_each_present_skill_an_equal_share():
    labels = np.array([0] * 1000 + [3] * 5 + [7] * 20 + [9] * 1)
    sampler = goskill.ClassBalancedSampler(labels)
    rng = np.random.default_rng(0)
    idx = sampler.sample(400, rng)
    counts = np.bincount(labels[idx], minlength=12)
    assert counts.sum() == 400
    assert set(np.flatnonzero(counts)) == {0, 3, 7, 9}             # absent skills get nothing
    assert (counts[[0, 3, 7, 9]] == 100).all()
    counts = np.bincount(labels[sampler.sample(402, rng)], minlength=12)[[0, 3, 7, 9]]
    assert counts.max() - counts.min() <= 1 and counts.sum() == 402


def test_transformer_is_causal_and_ignores_padded_keys():
    torch.manual_seed(0)
    net = goskill.CausalTransformer(n_embd=16, n_layer=2, n_head=2, dropout=0.0).eval()
    x = torch.randn(2, 9, 16)
    y = net(x)
    x2 = x.clone()
    x2[:, 5] = torch.randn(2, 16)                                  # change token 5
    y2 = net(x2)
    assert torch.allclose(y[:, :5], y2[:, :5], atol=1e-6)         # earlier tokens never see it
    assert not torch.allclose(y[:, 5:], y2[:, 5:])
    valid = torch.ones(2, 9, dtype=torch.bool)
    valid[:, :3] = False                                           # left padding
    x3 = x.clone()
    x3[:, :3] = torch.randn(2, 3, 16)
    assert torch.allclose(net(x, valid)[:, 3:], net(x3, valid)[:, 3:], atol=1e-6)


def _policy_inputs(b, k, p, d, m, seed=0):
    g = torch.Generator().manual_seed(seed)
    prompt = {"rtg": torch.rand(b, p, generator=g), "states": torch.randn(b, p, 39, generator=g),
              "tokens": torch.randn(b, p, d, generator=g), "timesteps": torch.randint(0, 50, (b, p), generator=g)}
    return (torch.rand(b, k, generator=g), torch.randn(b, k, 39, generator=g), torch.randn(b, k, d, generator=g),
            torch.randint(0, 50, (b, k), generator=g), torch.ones(b, k, dtype=torch.bool), prompt)


def test_skill_policy_shapes_causality_and_prompt_conditioning():
    torch.manual_seed(0)
    policy = goskill.SkillPolicy(39, code_dim=8, num_codes=6, max_skill_steps=51, n_embd=32, n_layer=2,
                                 n_head=2, dropout=0.0).eval()
    rtg, states, skills, steps, valid, prompt = _policy_inputs(3, 5, 4, 8, 6)
    logits = policy(rtg, states, skills, steps, valid, prompt)
    assert logits.shape == (3, 5, 6)
    skills2 = skills.clone()
    skills2[:, 2] = torch.randn(3, 8)                              # the skill token of step 2 ...
    logits2 = policy(rtg, states, skills2, steps, valid, prompt)
    assert torch.allclose(logits[:, :3], logits2[:, :3], atol=1e-6)   # ... is unseen by the choice at step 2
    assert not torch.allclose(logits[:, 3:], logits2[:, 3:])
    other_prompt = _policy_inputs(3, 5, 4, 8, 6, seed=1)[-1]
    assert not torch.allclose(logits, policy(rtg, states, skills, steps, valid, other_prompt))


def test_skill_decoder_shapes_and_action_causality():
    torch.manual_seed(0)
    dec = goskill.SkillDecoder(39, 4, code_dim=8, horizon=5, n_embd=32, n_layer=2, n_head=2, dropout=0.0).eval()
    skill, progress = torch.randn(2, 8), torch.randn(2, 5, 8)
    states, actions = torch.randn(2, 5, 39), torch.rand(2, 5, 4)
    pred = dec(skill, progress, states, actions)
    assert pred.shape == (2, 5, 4) and pred.abs().max() <= 1       # tanh head
    actions2 = actions.clone()
    actions2[:, 2] = -actions2[:, 2]
    pred2 = dec(skill, progress, states, actions2)
    assert torch.allclose(pred[:, :3], pred2[:, :3], atol=1e-6)    # a_2 is predicted without seeing a_2
    assert not torch.allclose(pred[:, 3:], pred2[:, 3:])
    assert torch.allclose(dec(skill, progress[:, :3], states[:, :3], actions[:, :3]), pred[:, :3], atol=1e-6)
    assert not torch.allclose(pred, dec(torch.randn(2, 8), progress, states, actions))   # the skill matters


# ---- goskill.py: phases and the command line, on the tiny real collection above ----

@pytest.fixture(scope="module")
def tiny_data(collected) -> pathlib.Path:
    return collected[1]                                    # read only: goskill never writes into a complete data dir


def _tiny_flags(**extra):
    flags = []
    for key, value in {**TINY, **extra}.items():
        flags += [f"--{key.replace('_', '-')}", str(value)]
    return flags


def _run_cli(*args):
    return subprocess.run([sys.executable, str(ROOT / "goskill.py"), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)


def test_enhancement_trains_only_the_decoder(tiny_data, tmp_path):
    cfg = goskill.Config(**{**TINY, "tasks": ",".join(TASKS), "data_dir": str(tiny_data), "device": "cpu"})
    trainer = goskill.Trainer(cfg, tmp_path, torch.device("cpu"))
    trainer.load_data()
    trainer.extract_skills()
    trainer.label_data()
    before = {name: p.detach().clone() for name, p in trainer.skills.named_parameters()}
    policy_before = [p.detach().clone() for p in trainer.policy.parameters()]
    trainer.learn_policy()
    for name, p in trainer.skills.named_parameters():
        changed = not torch.equal(before[name], p.detach())
        assert changed == name.startswith("decoder."), name          # encoder and codebook bit-identical
    assert any(not torch.equal(a, b.detach()) for a, b in zip(policy_before, trainer.policy.parameters()))
    assert trainer.labels.shape == (trainer.data.num_episodes, cd.EPISODE_LENGTH)
    tables = json.loads((tmp_path / "skills.json").read_text())
    assert abs(sum(tables["share"]) - 1) < 1e-3
    best = tables["best_episode_skills"]                   # one skill index per H steps of each task's best episode
    assert set(best) == set(TASKS)
    assert all(len(seq) == cd.EPISODE_LENGTH // cfg.skill_horizon for seq in best.values())
    assert all(0 <= k < cfg.num_codes for seq in best.values() for k in seq)


def test_periodic_checkpoints_carry_the_phase_time_and_stop_after_extract_never_trains_later_phases(tiny_data,
                                                                                                      tmp_path):
    cfg = goskill.Config(**{**TINY, "tasks": ",".join(TASKS), "data_dir": str(tiny_data), "device": "cpu"})
    trainer = goskill.Trainer(cfg, tmp_path, torch.device("cpu"))
    trainer.load_data()
    saved = []
    trainer.save = lambda: saved.append((trainer.state.iteration, dict(trainer.state.phase_seconds)))
    trainer.extract_skills()
    # The checkpoint at iteration 4 of 6 holds the time spent so far, which a resume adds to (throughput in
    # results.json = iterations / all the phase's time, not / the time after the resume).
    assert saved[0][0] == cfg.checkpoint_interval and 0 < saved[0][1]["extract"] < trainer.state.phase_seconds["extract"]
    trainer.label_data()
    trainer.state.phase, trainer.state.iteration = "policy", 0
    policy_before = [p.detach().clone() for p in trainer.policy.parameters()]
    trainer.run(stop_after="extract")                                # e.g. --resume --stop-after extract, too late
    assert trainer.state.phase == "policy" and trainer.state.iteration == 0
    assert all(torch.equal(a, b) for a, b in zip(policy_before, trainer.policy.parameters()))


def test_too_few_episodes_for_the_prompts_is_refused_with_the_fix(tiny_data, tmp_path):
    cfg = goskill.Config(**{**TINY, "tasks": ",".join(TASKS), "data_dir": str(tiny_data), "device": "cpu",
                            "algo": "prompt-dt", "prompt_trajectories": EPISODES + 1})
    trainer = goskill.Trainer(cfg, tmp_path, torch.device("cpu"))
    trainer.load_data()
    with pytest.raises(ValueError, match=f"{TASKS[0]}, {TASKS[1]}: fewer than --prompt-trajectories"):
        trainer.learn_actions()


def test_train_stop_resume_and_eval_only_end_to_end(tiny_data, tmp_path):
    # The constant rate here (the default preset decays it): the cosine's resume is tested on its own.
    common = ["--tasks", ",".join(TASKS), "--data-dir", str(tiny_data), "--device", "cpu", *_tiny_flags(),
              "--lr-schedule", "constant"]
    run_a, run_b = tmp_path / "a", tmp_path / "b"
    r = _run_cli(*common, "--out", str(run_a), "--stop-after", "extract")
    assert r.returncode == 0, r.stderr
    assert torch.load(run_a / "checkpoint.pt", weights_only=False)["state"]["phase"] == "policy"
    assert (run_a / "skills.json").exists() and not (run_a / "results.json").exists()
    # The oracle diagnostic measures a library stopped after extraction only when asked to (--library-only).
    oracle = [sys.executable, str(ROOT / "scripts" / "oracle_skills.py"), str(run_a / "checkpoint.pt"), "--episodes", "1"]
    r = subprocess.run(oracle, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "unfinished run" in r.stderr
    r = subprocess.run([*oracle, "--library-only", "--out", str(tmp_path / "library.json")], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    library = json.loads((tmp_path / "library.json").read_text())
    assert library["phase"] == "policy" and library["mean"]["policy_agreement"] is None
    assert set(library["per_task"]) == set(TASKS) and 0.0 <= library["mean"]["success_rate"] <= 1.0
    r = _run_cli(*common, "--out", str(run_a))                  # the folder holds a run: refuse to overwrite it
    assert r.returncode == 2 and "--resume" in r.stderr
    with open(run_a / "metrics.jsonl", "a") as f:               # as if killed after logging past the checkpoint
        f.write(json.dumps({"phase": "policy", "iteration": 2, "loss/policy": -1.0}) + "\n")
    r = _run_cli(*common, "--out", str(run_a), "--resume")
    assert r.returncode == 0, r.stderr
    results = json.loads((run_a / "results.json").read_text())
    assert set(results["per_task"]) == set(TASKS)
    for task in TASKS:
        assert 0.0 <= results["per_task"][task]["success_rate"] <= 1.0
        assert abs(sum(results["per_task"][task]["skill_usage"]) - 1) < 1e-3
    assert results["episodes_per_task"] == TINY["eval_episodes"]
    assert set(results["phase_seconds"]) == {"extract", "policy"}
    assert {task: src["episodes"] for task, src in results["data"].items()} == {task: EPISODES for task in TASKS}
    assert {task: src["expert_aim"] for task, src in results["data"].items()} == {"reach-v3": "tool-centre",
                                                                                   "push-v3": "hand"}
    assert results["torch_threads"] == torch.get_num_threads()    # results depend on it (float reductions)
    lines = [json.loads(line) for line in (run_a / "metrics.jsonl").read_text().splitlines()]
    assert {line["phase"] for line in lines} == {"extract", "policy"}
    steps = [(line["phase"] != "extract", line["iteration"]) for line in lines]
    assert steps == sorted(set(steps)) and -1.0 not in [line.get("loss/policy") for line in lines]  # once each
    for line in lines:                  # the progress bar names a metric by its last part: no two may share one
        names = [key.split("/")[-1] for key in line if key not in ("phase", "iteration")]
        assert len(names) == len(set(names)), line
    # An interrupted-and-resumed run ends with the same weights as one that ran straight through.
    r = _run_cli(*common, "--out", str(run_b), "--stop-after", "policy")
    assert r.returncode == 0, r.stderr
    ckpt_a = torch.load(run_a / "checkpoint.pt", weights_only=False)
    ckpt_b = torch.load(run_b / "checkpoint.pt", weights_only=False)
    for part in ("skills", "policy"):
        for name, tensor in ckpt_a[part].items():
            assert torch.equal(tensor, ckpt_b[part][name]), f"{part}.{name} differs after resume"
    # Evaluate the saved checkpoint alone.
    r = _run_cli("--eval-only", str(run_a / "checkpoint.pt"), "--eval-episodes", "1", "--device", "cpu")
    assert r.returncode == 0, r.stderr
    evaluated = json.loads((run_a / "eval.json").read_text())
    assert evaluated["episodes_per_task"] == 1 and set(evaluated["per_task"]) == set(TASKS)
    # The diagnostics' experts aim as the run's data files did, recorded in the checkpoint (reach: tool-centre).
    oracle_skills, cpu = _script_module("oracle_skills"), torch.device("cpu")
    assert oracle_skills.data_aim(goskill.load_finished_run(run_a / "checkpoint.pt", cpu, tmp_path)) == "tool-centre"
    # A checkpoint from before 2026-12-01 records no data, nor (before --data-expert-aim) an aim in its config: it
    # loads as trained on the hand's data, unless its run's results.json says otherwise.
    older = torch.load(run_a / "checkpoint.pt", weights_only=False)
    del older["config"]["data_expert_aim"], older["data"]
    torch.save(older, tmp_path / "older.pt")
    trainer = goskill.load_finished_run(tmp_path / "older.pt", cpu, tmp_path)
    assert trainer.cfg.data_expert_aim == "hand" and oracle_skills.data_aim(trainer, tmp_path / "older.pt") == "hand"
    shutil.copy(run_a / "results.json", tmp_path / "results.json")
    assert oracle_skills.data_aim(trainer, tmp_path / "older.pt") == "tool-centre"
    # Resuming under another method config is refused with the reason.
    r = _run_cli(*common, "--out", str(run_a), "--resume", "--num-codes", "7")
    assert r.returncode == 2 and "num_codes" in r.stderr
    # The diagnostic that runs the decoder under an expert-lookahead oracle reads the same checkpoint.
    r = subprocess.run(oracle, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    rows = {line.split()[0]: line.split()[1:] for line in r.stdout.splitlines() if line.split()}
    assert set(TASKS) | {"mean"} <= set(rows)
    assert all(v[0].endswith("%") and v[2].endswith("%") for k, v in rows.items() if k in set(TASKS) | {"mean"})
    figures = json.loads((run_a / "oracle.json").read_text())
    assert set(figures["per_task"]) == set(TASKS) and 0.0 <= figures["mean"]["policy_agreement"] <= 1.0
    # Where the positional tasks end up: the same episodes as the evaluation (same variants, prompts, returns).
    precision = tmp_path / "precision.json"
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "goal_precision.py"), str(run_a / "checkpoint.pt"),
                        "--tasks", ",".join(TASKS), "--episodes", "1", "--out", str(precision)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    ends = json.loads(precision.read_text())["per_task"]
    for task in TASKS:
        assert ends[task]["success_rate"] == evaluated["per_task"][task]["success_rate"]
        assert ends[task]["return_mean"] == pytest.approx(evaluated["per_task"][task]["return_mean"], rel=1e-5)
    # Its reference: the noise-free expert, aimed as the run's data was (the default: the tool centre), solves
    # reach with the tool centre on the goal, and goes wherever the goal is (x gain ~1 over three variants).
    reference = tmp_path / "expert.json"
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "goal_precision.py"), str(run_a / "checkpoint.pt"),
                        "--tasks", "reach-v3", "--episodes", "3", "--expert", "--out", str(reference)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    aimed = json.loads(reference.read_text())
    reach = aimed["per_task"]["reach-v3"]
    assert aimed["expert_aim"] == "tool-centre" and reach["success_rate"] == 1.0 and reach["closest_approach_cm"] < 0.5
    assert reach["goal_gain_xyz"][0]["gain"] == pytest.approx(1.0, abs=0.1)
    # MetaWorld's policy as it is (--expert-aim hand) puts the hand on the goal: the tool centre stops 4-5 cm away.
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "goal_precision.py"), str(run_a / "checkpoint.pt"),
                        "--tasks", "reach-v3", "--episodes", "1", "--expert", "--expert-aim", "hand",
                        "--out", str(reference)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    hand = json.loads(reference.read_text())
    assert hand["expert_aim"] == "hand" and 4.0 < hand["per_task"]["reach-v3"]["closest_approach_cm"] < 5.0


def _script_module(name: str):
    """scripts/<name>.py imported as a module (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_goal_gain_is_the_slope_of_position_on_goal():
    """scripts/goal_precision.py: 1 where the point follows the goal, 0.5 where it moves half as far as the goal,
    None along an axis where the goal does not move."""
    goal = np.random.default_rng(0).normal(0, 0.05, (50, 3))
    goal[:, 2] = 0.2
    point = np.stack([goal[:, 0] + 0.01, 0.5 * goal[:, 1] + 0.3, goal[:, 2]], axis=1)
    x, y, z = _script_module("goal_precision").goal_gain(point, goal)
    assert x["gain"] == pytest.approx(1.0) and y["gain"] == pytest.approx(0.5) and z is None
    assert x["goal_std_cm"] == pytest.approx(100 * goal[:, 0].std())


def test_expert_lookahead_leaves_the_episode_unchanged():
    """scripts/oracle_skills.py rolls the simulator forward with the expert and restores it: the lookahead returns
    what the expert really reaches, and the episode then goes on bit for bit as if nothing had happened (push:
    the hand touches and moves the object)."""
    oracle = _script_module("oracle_skills")
    probed, plain, twin = cd.make_env("push-v3"), cd.make_env("push-v3"), cd.make_env("push-v3")
    expert = ENV_POLICY_MAP["push-v3"]()
    obs_p, obs, obs_twin = (cd.reset_env(env, 7) for env in (probed, plain, twin))
    for _ in range(10):                                             # what the expert reaches from the start
        obs_twin = twin.step(np.clip(expert.get_action(obs_twin), -1, 1))[0]
    np.testing.assert_array_equal(oracle.expert_lookahead(probed, expert, obs_p, 10), obs_twin)
    rng = np.random.default_rng(0)
    for t in range(cd.EPISODE_LENGTH):
        if t % 10 == 0:
            oracle.expert_lookahead(probed, expert, obs_p, 10)
        action = np.clip(expert.get_action(obs) + rng.normal(0, 0.3, cd.ACT_DIM), -1, 1)
        (obs_p, r_p, _, _, info_p), (obs, r, _, _, info) = probed.step(action), plain.step(action)
        np.testing.assert_array_equal(obs_p, obs)
        assert r_p == r and info_p["success"] == info["success"]


def test_oracle_labels_the_expert_episode_as_labelling_does(tiny_data, tmp_path):
    """On the data's last episode (quality 1: the noise-free expert) the oracle's lookahead from the recorded
    state reaches the recorded state H steps later, so its skill must equal the label of that step."""
    oracle = _script_module("oracle_skills")
    cfg = goskill.Config(**{**TINY, "tasks": "push-v3", "data_dir": str(tiny_data), "device": "cpu"})
    trainer = goskill.Trainer(cfg, tmp_path, torch.device("cpu"))
    trainer.load_data()
    trainer.extract_skills()
    trainer.label_data()
    episode, H = EPISODES - 1, cfg.skill_horizon
    actions = trainer.data.actions[episode].numpy()
    env, expert = cd.make_env("push-v3"), ENV_POLICY_MAP["push-v3"]()
    obs = cd.reset_env(env, cd.variant_seed(0, "push-v3", episode, "data"))
    mean, std = torch.as_tensor(trainer.state_mean), torch.as_tensor(trainer.state_std)
    skills = []
    for t in range(cd.EPISODE_LENGTH):
        if t % H == 0:
            skills.append(int(oracle.expert_skills(trainer.skills, [env], [expert], obs[None], H, mean, std)[0]))
        obs = env.step(actions[t])[0]
    assert skills == trainer.labels[episode, ::H].tolist()


def test_subset_keeps_the_high_quality_episodes_as_a_loadable_data_dir(tiny_data, tmp_path):
    """scripts/subset_data.py: the episodes of quality >= q, bit for bit, in files the loader accepts as complete;
    a threshold no episode reaches, or an existing folder (here the source), stops with exit code 2 and writes
    nothing."""
    script = [sys.executable, str(ROOT / "scripts" / "subset_data.py"), "--tasks", ",".join(TASKS),
              "--data-dir", str(tiny_data)]
    r = subprocess.run([*script, "--out-dir", str(tmp_path / "sub"), "--min-quality", "0.5"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    for task in TASKS:
        full = cd.load_dataset(task, "near-optimal", tiny_data)
        sub = cd.load_dataset(task, "near-optimal", tmp_path / "sub")
        keep = full["quality"] >= 0.5
        assert 0 < keep.sum() < EPISODES and sub["metadata"]["episodes"] == keep.sum()
        for name in ("observations", "actions", "rewards", "successes", "quality"):
            np.testing.assert_array_equal(sub[name], full[name][keep])
        assert sub["metadata"]["subset_of"]["episode_indices"] == np.flatnonzero(keep).tolist()
    sources = goskill.OfflineData(TASKS, "near-optimal", str(tmp_path / "sub"), torch.device("cpu")).sources
    assert all(source["subset_of"]["min_quality"] == 0.5 for source in sources.values())   # recorded in results.json
    for bad in (["--out-dir", str(tmp_path / "none"), "--min-quality", "1.5"],
                ["--out-dir", str(tiny_data), "--min-quality", "0.5"]):
        r = subprocess.run([*script, *bad], capture_output=True, text=True, timeout=120)
        assert r.returncode == 2 and r.stderr.startswith("error: ")
    assert not (tmp_path / "none").exists() and not (tmp_path / "none.partial").exists()   # nothing half-written


def test_bc_reference_trains_and_evaluates_one_mlp_per_task(tiny_data, tmp_path):
    """scripts/bc_reference.py end to end on the tiny data: one figure per task from goskill's evaluation loop."""
    out = tmp_path / "bc.json"
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "bc_reference.py"), "--tasks", ",".join(TASKS),
                        "--data-dir", str(tiny_data), "--iters", "20", "--episodes", "1", "--min-quality", "0.5",
                        "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    result = json.loads(out.read_text())
    assert list(result["per_task"]) == TASKS
    quality = cd.load_dataset(TASKS[0], "near-optimal", tiny_data)["quality"]
    for figures in result["per_task"].values():
        assert figures["episodes_trained"] == (quality >= 0.5).sum()
        assert 0 <= figures["success_rate"] <= 1 and np.isfinite(figures["return_mean"])


def test_bad_input_stops_with_a_one_line_error(tiny_data, tmp_path):
    r = _run_cli("--tasks", "reach-v3,flying-v3", "--data-dir", str(tiny_data), "--out", str(tmp_path / "x"))
    assert r.returncode == 2 and "flying-v3" in r.stderr and "mt10" in r.stderr
    assert not (tmp_path / "x").exists()
    r = _run_cli("--eval-only", str(tmp_path / "missing.pt"))
    assert r.returncode == 2 and "no checkpoint" in r.stderr
    r = _run_cli("--eval-only", str(tmp_path / "missing.pt"), "--num-codes", "7", "--no-amp")
    assert r.returncode == 2 and "drop --num-codes, --[no-]amp" in r.stderr
    r = _run_cli("--tasks", "reach-v3", "--lr-schedule", "linear", "--out", str(tmp_path / "x"))
    assert r.returncode == 2 and "cosine" in r.stderr and not (tmp_path / "x").exists()


def test_every_preset_is_a_valid_config_and_the_cli_applies_it_under_flags():
    """Each preset names only Config fields and passes its checks; --preset NAME starts from that preset (the
    README's older rows name default-v1), a flag overrides it, and the run folder is named after it."""
    fields = {f.name for f in dataclasses.fields(goskill.Config)}
    for name, preset in goskill.PRESETS.items():
        assert set(preset) <= fields, f"preset {name}: unknown fields {set(preset) - fields}"
        args = goskill.build_parser().parse_args(["--preset", name, "--seed", "3", "--policy-iters", "7"])
        cfg = goskill.config_from_args(args)
        assert cfg == goskill.Config(**{**preset, "seed": 3, "policy_iters": 7, "out": cfg.out})
        assert cfg.out == f"runs/mt10-near-optimal-{name}-seed3"


def test_nan_in_data_stops_training_with_the_task_named(collected, tmp_path):
    data_dir = pathlib.Path(shutil.copytree(collected[1], tmp_path / "data"))
    data = cd.load_dataset("push-v3", "near-optimal", data_dir)
    metadata = {k: v for k, v in data.pop("metadata").items() if not k.startswith("dataset_")}
    data["observations"][1, 20, 5] = np.nan
    cd.write_task_file(cd.dataset_path("push-v3", data_dir), data, metadata)
    r = _run_cli("--tasks", ",".join(TASKS), "--data-dir", str(data_dir), "--out", str(tmp_path / "run"),
                 *_tiny_flags())
    assert r.returncode == 2 and "push-v3" in r.stderr and "observations" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_one_task_with_fewer_segments_than_codes_still_initialises_the_codebook(tiny_data, tmp_path):
    cfg = goskill.Config(**{**TINY, "tasks": "reach-v3", "data_dir": str(tiny_data), "device": "cpu",
                            "extract_iters": 2})
    assert cfg.segments_per_task < cfg.num_codes
    trainer = goskill.Trainer(cfg, tmp_path, torch.device("cpu"))
    trainer.load_data()
    trainer.extract_skills()
    assert bool(trainer.skills.quantizer.initialised)
    assert len(torch.unique(trainer.skills.quantizer.codebook.detach(), dim=0)) == cfg.num_codes


@pytest.mark.parametrize("ablation", [
    {"quantize": False},                                   # w/o VQ: continuous skills, regression policy
    {"skill_enhancement": False, "focal_gamma": 0.0, "num_codes": 4, "skill_horizon": 10},
], ids=["no-vq", "no-enhancement-ce-4codes-h10"])
def test_ablations_train_save_and_evaluate(tiny_data, tmp_path, ablation):
    cfg = goskill.Config(**{**TINY, **ablation, "tasks": ",".join(TASKS), "data_dir": str(tiny_data),
                            "device": "cpu", "eval_episodes": 1, "eval_parallel": 1})
    trainer = goskill.Trainer(cfg, tmp_path, torch.device("cpu"))
    trainer.load_data()
    decoder_before = [p.detach().clone() for p in trainer.skills.decoder.parameters()]
    trainer.extract_skills()
    trainer.label_data()
    decoder_after_extract = [p.detach().clone() for p in trainer.skills.decoder.parameters()]
    assert any(not torch.equal(a, b) for a, b in zip(decoder_before, decoder_after_extract))
    trainer.learn_policy()
    enhanced = any(not torch.equal(a, b.detach())
                   for a, b in zip(decoder_after_extract, trainer.skills.decoder.parameters()))
    assert enhanced == cfg.skill_enhancement
    n_ep = trainer.data.num_episodes
    if cfg.quantize:
        assert trainer.labels.shape == (n_ep, cd.EPISODE_LENGTH) and trainer.labels.max() < cfg.num_codes
    else:                                                  # labels are the goal embeddings themselves
        assert trainer.labels.shape == (n_ep, cd.EPISODE_LENGTH, cfg.code_dim)
        assert trainer.labels.dtype == torch.float32 and not (tmp_path / "skills.json").exists()
    trainer.state.phase = "done"
    trainer.save()
    reloaded = goskill.Trainer(cfg, tmp_path, torch.device("cpu"))
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    reloaded.load(ckpt)
    if cfg.quantize:
        assert torch.equal(reloaded.labels, trainer.labels)
    else:                                                  # not stored: a resumed run recomputes the same values
        assert ckpt["labels"] is None
        assert torch.equal(goskill.label_all(reloaded.skills.eval(), trainer.data, cfg), trainer.labels)
    results = reloaded.evaluate(1)
    assert set(results["per_task"]) == set(TASKS)
    assert all(("skill_usage" in r) == cfg.quantize for r in results["per_task"].values())


def test_prompt_dt_baseline_end_to_end(tiny_data, tmp_path):
    common = ["--tasks", ",".join(TASKS), "--data-dir", str(tiny_data), "--device", "cpu", "--algo", "prompt-dt",
              *_tiny_flags()]
    r = _run_cli(*common, "--out", str(tmp_path / "x"), "--stop-after", "extract")
    assert r.returncode == 2 and "no extraction phase" in r.stderr
    run = tmp_path / "dt"
    r = _run_cli(*common, "--out", str(run), "--stop-after", "policy")
    assert r.returncode == 0, r.stderr
    ckpt = torch.load(run / "checkpoint.pt", weights_only=False)
    assert ckpt["skills"] is None and ckpt["labels"] is None and ckpt["state"]["phase"] == "done"
    assert ckpt["state"]["iteration"] == TINY["extract_iters"] + TINY["policy_iters"]     # GO-Skill's total budget
    assert ckpt["prompts"]["tokens"].shape == (len(TASKS) * TINY["prompt_trajectories"], TINY["prompt_skills"],
                                               cd.ACT_DIM)   # actions of the last P env steps of best episodes
    r = _run_cli("--eval-only", str(run / "checkpoint.pt"), "--eval-episodes", "1", "--device", "cpu")
    assert r.returncode == 0, r.stderr
    evaluated = json.loads((run / "eval.json").read_text())
    assert set(evaluated["per_task"]) == set(TASKS)
    assert all("skill_usage" not in v for v in evaluated["per_task"].values())
    # The oracle (of either diagnostic) executes GO-Skill's skills: a flat run is refused with the reason.
    for script, flags in (("oracle_skills", []), ("goal_precision", ["--oracle", "--tasks", ",".join(TASKS)])):
        r = subprocess.run([sys.executable, str(ROOT / "scripts" / f"{script}.py"), str(run / "checkpoint.pt"),
                            "--episodes", "1", *flags], capture_output=True, text=True, timeout=300)
        assert r.returncode == 2 and "prompt-dt run; the oracle needs" in r.stderr, (script, r.stderr)


def test_policy_batch_of_prompt_dt_is_env_steps_of_actions(tiny_data):
    cfg = goskill.Config(**{**TINY, "tasks": ",".join(TASKS)})
    data = goskill.OfflineData(TASKS, "near-optimal", str(tiny_data), torch.device("cpu"))
    prompts, _ = goskill.build_prompts(data, data.actions, lambda a: a, 1, cfg)
    batch = goskill.policy_batch(data, data.actions, lambda a: a, prompts, 1, cfg, np.random.default_rng(0))
    valid = batch["valid"]
    steps = batch["timesteps"]
    # consecutive env steps inside each sequence, actions as both the tokens and the targets
    assert ((steps[:, 1:] - steps[:, :-1])[valid[:, :-1]] == 1).all()
    torch.testing.assert_close(batch["tokens"][valid], batch["target"][valid])


def test_pictures_are_drawn_or_their_absence_explained(tiny_data, tmp_path, capsys):
    tables = {"share": [0.5, 0.5, 0.0], "task_skill_share": {"reach-v3": [1.0, 0.0, 0.0], "push-v3": [0.0, 1.0, 0.0]},
              "best_episode_skills": {"reach-v3": [0, 0, 1], "push-v3": [1, 1, 0]}}
    goskill.plot_skills(tables, 10, tmp_path)
    pngs = sorted(p.name for p in tmp_path.iterdir())
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert pngs == [] and "pip install matplotlib" in capsys.readouterr().out
    else:
        assert pngs == ["skill_trajectories.png", "skill_usage.png"]
        assert all((tmp_path / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    assert goskill.format_sequences(tables["best_episode_skills"], 10).splitlines()[1].endswith("001")


def test_checkpoint_configs_from_before_a_field_existed_resume_under_its_default():
    saved = dataclasses.asdict(goskill.Config())
    del saved["algo"], saved["quantize"]                   # fields added after such a checkpoint was written
    goskill.check_compatible(goskill.Config(), saved, "old.pt")
    with pytest.raises(ValueError, match="quantize"):
        goskill.check_compatible(goskill.Config(quantize=False), saved, "old.pt")
