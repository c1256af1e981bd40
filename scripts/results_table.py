"""Markdown tables for the README from the raw run outputs under results/ (written by scripts/run_results.sh).

    python scripts/results_table.py            # all tables
Rows that differ only in the seed are merged into mean +- std (population std over seeds)."""

import json
import re
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import goskill  # noqa: E402


def load(group: str) -> dict[str, list[dict]]:
    """results/<group>/<name>-seed<k>[.eval-only].json -> {name: [result of each seed]}. An .eval-only file is the
    eval.json of `goskill.py --eval-only` on a run's final checkpoint (no timings in it)."""
    by_row = {}
    for path in sorted((ROOT / "results" / group).glob("*.json")):
        row = path.stem.removesuffix(".eval-only")
        if row not in by_row or not path.stem.endswith(".eval-only"):   # a full results.json wins
            by_row[row] = json.loads(path.read_text())
    runs = defaultdict(list)
    for row, result in by_row.items():
        runs[re.sub(r"-seed\d+$", "", row)].append(result)
    return runs


def pm(values: list[float], scale: float = 1.0, digits: int = 1) -> str:
    v = np.asarray(values) * scale
    return f"{v.mean():.{digits}f}" if len(v) == 1 else f"{v.mean():.{digits}f} ± {v.std():.{digits}f}"


def mean_cells(rs: list[dict]) -> str:
    """The 'success rate (%) | return' cells of a row: task-averaged figures, mean +- std over the runs."""
    return f"{pm([r['mean']['success_rate'] for r in rs], 100)} | {pm([r['mean']['return'] for r in rs], 1, 0)}"


def minutes(rs: list[dict]) -> str:
    if any("phase_seconds" not in r for r in rs):
        return "n/a"
    return pm([(r["data_seconds"] + sum(r["phase_seconds"].values()) + r["eval_seconds"]) / 60 for r in rs])


def main_table(runs: dict[str, list[dict]]) -> str:
    lines = ["| dataset | method | seeds | success rate (%) | return | wall time per run (min) | device |",
             "|---|---|---|---|---|---|---|"]
    for name, rs in runs.items():
        dataset, algo = re.match(r"(.*-optimal)-(.*)", name).groups()
        lines.append(f"| {dataset} | {algo} | {len(rs)} | {mean_cells(rs)} | {minutes(rs)} | "
                     f"{rs[0].get('device', rs[0]['config']['device'])} |")   # resolved (cpu, cuda), not 'auto'
    return "\n".join(lines)


def per_task_table(runs: dict[str, list[dict]], dataset: str) -> str:
    names = [n for n in runs if n.startswith(dataset)]
    tasks = list(runs[names[0]][0]["per_task"])
    head = "| task | " + " | ".join(f"{n.removeprefix(dataset + '-')} success (%) | return" for n in names) + " |"
    lines = [head, "|---|" + "---|---|" * len(names)]
    for task in tasks:
        cells = []
        for n in names:
            cells += [pm([r["per_task"][task]["success_rate"] for r in runs[n]], 100, 0),
                      pm([r["per_task"][task]["return_mean"] for r in runs[n]], 1, 0)]
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def ablation_table(runs: dict[str, list[dict]], full: list[dict] | None) -> str:
    lines = ["| variant | success rate (%) | return |", "|---|---|---|"]
    if full:
        lines.append(f"| full method (H 10, 16 codes; seed 0 of the main table) | {mean_cells(full[:1])} |")
    for name, rs in runs.items():
        lines.append(f"| {name} | {mean_cells(rs)} |")
    return "\n".join(lines)


def three_seed_table(full: list[dict], ablations: dict[str, list[dict]], more_seeds: dict[str, list[dict]]) -> str:
    """Ablations with seeds 1-2 (results/mt10-ablations-cpu/) merged with their seed 0 (results/mt10-ablations/),
    against the full method's three seeds of the main table; with the four tasks where the variants differ most."""
    tasks = ["push-v3", "pick-place-v3", "peg-insert-side-v3", "reach-v3"]
    lines = ["| MT10 sub-optimal | seeds | success rate (%) | return | " + " | ".join(t.removesuffix("-v3") for t in tasks)
             + " |", "|---|---|---|---|" + "---|" * len(tasks)]
    for name, rs in [("full method", full)] + [(n, ablations.get(n, []) + rs) for n, rs in more_seeds.items()]:
        cells = [pm([r["per_task"][t]["success_rate"] for r in rs], 100, 0) for t in tasks]
        lines.append(f"| {name} | {len(rs)} | {mean_cells(rs)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def trained_result(oracle: dict) -> dict | None:
    """The evaluation of the oracle's checkpoint by its own skill policy: the results.json copy under results/ made
    by the same run (same run folder, same method config)."""
    def method(cfg: dict) -> dict:                                    # the run folder tells one method's runs apart
        return {**goskill.method_config(cfg), "out": cfg.get("out")}
    for path in sorted((ROOT / "results").glob("*/*.json")):
        result = json.loads(path.read_text())
        # goskill.py's evaluations (results.json, eval.json) time themselves; the diagnostics' outputs do not.
        if "eval_seconds" in result and "config" in result and method(result["config"]) == method(oracle["config"]):
            return result
    return None


def oracle_table() -> str:
    """scripts/oracle_skills.py outputs (results/mt10-oracle-cpu/<name>.json), each beside the evaluation of the same
    checkpoint with its own skill policy where that run's results.json is under results/."""
    tasks = ["reach-v3", "push-v3", "pick-place-v3", "peg-insert-side-v3"]
    lines = ["| checkpoint | skills chosen by | success rate (%) | return | policy = oracle (%) | "
             + " | ".join(t.removesuffix("-v3") for t in tasks) + " |", "|---|---|---|---|---|" + "---|" * len(tasks)]
    for path in sorted((ROOT / "results" / "mt10-oracle-cpu").glob("*.json")):
        oracle = json.loads(path.read_text())
        agreement = oracle["mean"]["policy_agreement"]
        for who, r in [("trained policy", trained_result(oracle)), ("oracle", oracle)]:
            if r is None:
                continue
            cells = [pm([r["per_task"][t]["success_rate"]], 100, 0) if t in r["per_task"] else "" for t in tasks]
            agree = f"{100 * agreement:.1f}" if who == "oracle" and agreement is not None else ""
            lines.append(f"| {path.stem} | {who} ({r['episodes_per_task']} episodes/task) | {mean_cells([r])} "
                         f"| {agree} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def library_table() -> str:
    """scripts/oracle_skills.py --library-only outputs (results/mt10-library-cpu/<name>.json): what a skill library
    (horizon H, number of codes), right after extraction, delivers under the oracle."""
    tasks = ["reach-v3", "push-v3", "pick-place-v3", "peg-insert-side-v3", "door-open-v3", "drawer-open-v3"]
    lines = ["| library | dataset | H | codes | extraction iterations | width | success rate (%) | return | "
             + " | ".join(t.removesuffix("-v3") for t in tasks) + " |",
             "|---|---|---:|---:|---:|---:|---|---|" + "---:|" * len(tasks)]
    results = [(p, json.loads(p.read_text())) for p in (ROOT / "results" / "mt10-library-cpu").glob("*.json")]
    for path, r in sorted(results, key=lambda pr: (pr[1]["config"]["dataset"], -pr[1]["config"]["skill_horizon"],
                                                  pr[1]["config"]["num_codes"], pr[1]["config"]["extract_iters"],
                                                  pr[1]["config"]["n_embd"])):
        cfg = r["config"]
        cells = [pm([r["per_task"][t]["success_rate"]], 100, 0) if t in r["per_task"] else "" for t in tasks]
        lines.append(f"| {path.stem} | {cfg['dataset']} | {cfg['skill_horizon']} | "
                     f"{cfg['num_codes'] if cfg['quantize'] else 'w/o VQ'} | {cfg['extract_iters']} | {cfg['n_embd']} | "
                     f"{mean_cells([r])} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines)


def bc_table() -> str:
    """scripts/bc_reference.py outputs (results/bc-reference-cpu/<name>.json): one behaviour-cloning MLP per task,
    on all of the task's episodes or only those above a behaviour quality."""
    results = [json.loads(p.read_text()) for p in sorted((ROOT / "results" / "bc-reference-cpu").glob("*.json"))]
    tasks = list(dict.fromkeys(t for r in results for t in r["per_task"]))
    lines = ["| data | episodes per task | " + " | ".join(t.removesuffix("-v3") for t in tasks) + " | mean |",
             "|---|---:|" + "---:|" * (len(tasks) + 1)]
    for r in sorted(results, key=lambda r: (r["args"]["dataset"], r["args"]["min_quality"])):
        args, first = r["args"], next(iter(r["per_task"].values()))
        cells = [f"{100 * r['per_task'][t]['success_rate']:.0f} / {r['per_task'][t]['return_mean']:.0f}"
                 if t in r["per_task"] else "" for t in tasks]
        lines.append(f"| {args['dataset']}, quality >= {args['min_quality']} | {first['episodes_trained']} | "
                     + " | ".join(cells) + f" | {100 * r['mean']['success_rate']:.1f} / {r['mean']['return']:.0f} |")
    return "\n".join(lines)


def precision_table() -> str:
    """scripts/goal_precision.py outputs (results/goal-precision-cpu/<run>[-seed<k>]-<chooser>.json), seeds merged
    (means over seeds): per task success (%) / closest approach (cm, the median over a run's episodes); on reach
    also the goal gain."""
    rows = defaultdict(list)
    for path in sorted((ROOT / "results" / "goal-precision-cpu").glob("*.json")):     # <run>-seed<k>-<chooser>
        rows[re.sub(r"-seed\d+", "", path.stem)].append(json.loads(path.read_text()))
    tasks = list(dict.fromkeys(t for rs in rows.values() for r in rs for t in r["per_task"]))
    lines = ["| run | skills chosen by | seeds | " + " | ".join(t.removesuffix("-v3") for t in tasks)
             + " | reach: goal gain x / y / z |", "|---|---|---|" + "---:|" * (len(tasks) + 1)]
    for name, rs in rows.items():
        chooser = rs[0]["skills_chosen_by"]
        seeds = ", ".join(str(r["config"]["seed"]) for r in rs) if chooser != "expert" else "-"
        cells = [f"{np.mean([100 * r['per_task'][t]['success_rate'] for r in rs]):.0f} / "
                 f"{np.mean([r['per_task'][t]['closest_approach_cm'] for r in rs]):.1f}"
                 if all(t in r["per_task"] for r in rs) else "" for t in tasks]
        gain = ""
        if all("reach-v3" in r["per_task"] for r in rs):
            gains = [[r["per_task"]["reach-v3"]["goal_gain_xyz"][axis] for r in rs] for axis in range(3)]
            gain = " / ".join("-" if None in g else f"{np.mean([x['gain'] for x in g]):.2f}" for g in gains)
        aim = rs[0].get("expert_aim", "hand")                          # files before --expert-aim: the hand's
        run = (f"MetaWorld's scripted expert{', aimed at the tool centre' if aim == 'tool-centre' else ''}"
               if chooser == "expert" else name.removesuffix(f"-{chooser}"))
        lines.append(f"| {run} | {chooser} | {seeds} | " + " | ".join(cells) + f" | {gain} |")
    return "\n".join(lines)


def seeds_table(runs: dict[str, list[dict]]) -> str:
    """Rows of one group, seeds merged: success rate and return (mean +- std over seeds), the seeds, minutes."""
    lines = ["| row | seeds | success rate (%) | return | wall time per run (min) |", "|---|---|---|---|---|"]
    for name, rs in sorted(runs.items()):
        seeds = ", ".join(str(r["config"]["seed"]) for r in rs)
        lines.append(f"| {name} | {seeds} | {mean_cells(rs)} | {minutes(rs)} |")
    return "\n".join(lines)


def print_comparison(runs: dict[str, list[dict]], label: str) -> None:
    """GO-Skill against Prompt-DT on the 2-core CPU (runs named <dataset>-<algo>): the table of means, then one
    per-task table for each dataset present; nothing if `runs` is empty."""
    if not runs:
        return
    print(f"MT10, {label}, 2-core CPU\n\n" + main_table(runs) + "\n")
    for dataset in ("near-optimal", "sub-optimal"):
        if any(n.startswith(dataset) for n in runs):
            print(f"Per task, MT10 {dataset}, {label}\n\n" + per_task_table(runs, dataset) + "\n")


def main() -> int:
    main_runs, ablations, mt50 = load("mt10"), load("mt10-ablations"), load("mt50")
    mt50_paper8k = load("mt50-paper8k")
    default_cpu = load("mt10-default-cpu")
    if not (main_runs or ablations or mt50 or mt50_paper8k or default_cpu):
        print("no results under results/mt10*/ or results/mt50*/ yet: run bash scripts/run_results.sh", file=sys.stderr)
        return 1
    if main_runs:
        print("MT10, default-v1 preset\n\n" + main_table(main_runs) + "\n")
        for dataset in ("sub-optimal", "near-optimal"):
            if any(n.startswith(dataset) for n in main_runs):
                print(f"Per task, MT10 {dataset}\n\n" + per_task_table(main_runs, dataset) + "\n")
    if mt50:
        print("MT50, default-v1 preset, 10 evaluation episodes per task\n\n" + main_table(mt50) + "\n")
    if mt50_paper8k:
        print("MT50, paper networks for 2k + 6k iterations, 10 evaluation episodes per task\n\n"
              + main_table(mt50_paper8k) + "\n")
    if ablations:
        full = [r for r in main_runs.get("sub-optimal-goskill", []) if r["config"]["seed"] == 0]
        print("Ablations, MT10 sub-optimal, seed 0\n\n" + ablation_table(ablations, full) + "\n")
    more_seeds = load("mt10-ablations-cpu")
    if more_seeds and main_runs.get("sub-optimal-goskill"):
        print("Ablations with more seeds (seed 0 above, seeds 1-2 on the CPU)\n\n"
              + three_seed_table(main_runs["sub-optimal-goskill"], ablations, more_seeds) + "\n")
    if default_cpu:
        # GO-Skill against Prompt-DT under the default-v3 preset (the default from 2026-12-01 to 2026-12-07), on
        # the tool-centre data (the data default since 2026-12-01): rows <dataset>-tool-centre[-prompt-dt]-dropout0.
        v3 = {f"{m[1]}-{m[2] or 'goskill'}": rs for n, rs in default_cpu.items()
              if (m := re.fullmatch(r"(near-optimal|sub-optimal)-tool-centre-(?:(prompt-dt)-)?dropout0", n))}
        print_comparison(v3, "default-v3 preset, tool-centre data")
        # ... and GO-Skill under today's default (default-v3 with 8 segments per task: rows named *-dropout0-seg8),
        # against the same Prompt-DT rows: segments_per_task is unused by Prompt-DT, which trains the same there.
        current = {f"{m[1]}-goskill": rs for n, rs in default_cpu.items()
                   if (m := re.fullmatch(r"(near-optimal|sub-optimal)-tool-centre-dropout0-seg8", n))}
        if current:
            prompt_dt = {n: rs for n, rs in v3.items() if n.endswith("prompt-dt")}
            print_comparison({**current, **prompt_dt}, "default preset, tool-centre data")
        # GO-Skill against Prompt-DT under the default-v2 preset: the rows named <dataset>-<algo>-seed<k>.
        print_comparison({n: rs for n, rs in default_cpu.items()
                          if re.fullmatch(r"(near|sub)-optimal-(goskill|prompt-dt)", n)}, "default-v2 preset")
        print("MT10, default-v2 preset and the probes beside it (rows named *dropout0*: default-v3; *dropout0-seg8*: the "
              "default preset), 2-core CPU\n\n"
              + seeds_table(default_cpu) + "\n")
    if (ROOT / "results" / "mt10-oracle-cpu").is_dir():
        print("Skill policy vs an expert-lookahead oracle choosing the skills (scripts/oracle_skills.py)\n\n"
              + oracle_table() + "\n")
    if (ROOT / "results" / "mt10-library-cpu").is_dir():
        print("Skill libraries right after extraction, under the oracle (scripts/oracle_skills.py --library-only)\n\n"
              + library_table() + "\n")
    if (ROOT / "results" / "bc-reference-cpu").is_dir():
        print("One behaviour-cloning MLP per task, success (%) / return (scripts/bc_reference.py)\n\n" + bc_table()
              + "\n")
    if (ROOT / "results" / "goal-precision-cpu").is_dir():
        print("Positional tasks: success (%) / closest approach (cm), and reach's goal gain "
              "(scripts/goal_precision.py)\n\n" + precision_table() + "\n")
    reach = load("reach-probes-cpu")
    if reach:
        print("Prompt-DT on reach-v3 alone, quality >= 0.75 subset\n\n" + seeds_table(reach))
    return 0


if __name__ == "__main__":
    sys.exit(main())
