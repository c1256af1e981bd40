#!/usr/bin/env bash
# Reruns the README "Results" tables, one `python goskill.py` run per row. A row whose results/<row>.json exists is
# skipped; an interrupted row continues from its checkpoint (--resume). Each finished run's results.json is copied
# to results/<row>.json, the raw file the README's tables are made from (python scripts/results_table.py).
#
#   bash scripts/run_results.sh [ROWS]        ROWS: an extended regex over row names (default: all rows)
#   JOBS=10 EXTRA="--device cuda --no-amp" bash scripts/run_results.sh '^mt10(/|-ablations/)'   # the README's GPU rows
#   bash scripts/run_results.sh '^mt10/sub-optimal-prompt-dt-seed0$'             # one row, on this machine
#
# env: JOBS   runs at a time (default 1; one 2-core CPU runs one at a time)
#      EXTRA  flags added to every row (the device; they are recorded in each results.json). Keep them the same
#             when resuming an interrupted row: --no-amp is a method setting, a checkpoint made without it is
#             refused. Data flags (--data-dir, --data-expert-aim, --data-episodes) do not belong here: each row
#             names its data folder, made once, up front.
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=${JOBS:-1}
EXTRA=${EXTRA:-}
PATTERN=${1:-.}
if [[ $PATTERN == -h || $PATTERN == --help ]]; then   # the usage above (as a regex it would collect, then run nothing)
  sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0
fi
TOOL_CENTRE_DATA="--data-dir runs/data-tool-centre --data-expert-aim tool-centre"   # the rows that name this data
TOOL_CENTRE_DATA_400="--data-dir runs/data-tool-centre-ep400 --data-expert-aim tool-centre --data-episodes 400"

rows() {   # <row name> <goskill.py flags>
  # The `default` preset since 2026-12-07 (default-v3 with 8 segments per task), MT10, GO-Skill, on
  # the 2-core CPU, one thread per run, two at a time, on data whose reach expert aims the tool centre (the data
  # default since 2026-12-01; runs/data-tool-centre holds the same arrays as data/). Seeds 0-3 were run as
  # default-v3 with --segments-per-task 8 (the same Config), which gave the rows their name. Sub-optimal data below.
  # (Prompt-DT does not use segments_per_task: its default-v3 rows further down train as under this preset.)
  for seed in 0 1 2 3 4 5 6 7 8 9 10; do
    echo "mt10-default-cpu/near-optimal-tool-centre-dropout0-seg8-seed$seed --tasks mt10 --seed $seed $TOOL_CENTRE_DATA"
  done
  for seed in 0 1 2; do
    echo "mt10-default-cpu/sub-optimal-tool-centre-dropout0-seg8-seed$seed --tasks mt10 --dataset sub-optimal --seed $seed $TOOL_CENTRE_DATA"
  done
  # Every row below was made with the preset that was `default` before then, now `default-v3`.
  rows_v3 | sed '/--preset/!s/ / --preset default-v3 /'
  # Every row below was made with the preset that was `default` before 2026-12-01, now `default-v2` (dropout 0.1).
  rows_v2 | sed '/--preset/!s/ / --preset default-v2 /' | hand_data     # after the row name, which has no space
  # Every row below was made with the preset that was `default` before 2026-11-30, now `default-v1`.
  rows_v1 | sed '/--preset/!s/ / --preset default-v1 /' | hand_data
}

rows_v3() {   # default-v3 preset (unless a row names another): default-v2 without dropout, 4 segments per task
  # MT10 near-optimal, GO-Skill, on the 2-core CPU: on data whose reach expert aims the tool centre, seeds 0-4,
  # and on the hand-aimed data of every earlier row, seed 0.
  for seed in 0 1 2 3 4; do
    echo "mt10-default-cpu/near-optimal-tool-centre-dropout0-seed$seed --tasks mt10 --seed $seed $TOOL_CENTRE_DATA"
  done
  echo "mt10-default-cpu/near-optimal-dropout0-seed0 --tasks mt10 --seed 0 --data-expert-aim hand --data-dir runs/data-hand"
  # Sub-optimal data, and the flat Prompt-DT baseline (18k iterations: GO-Skill's 2k + 16k) on both datasets, on
  # the tool-centre data (issue 4's comparison under this preset).
  for seed in 0 1 2; do
    echo "mt10-default-cpu/sub-optimal-tool-centre-dropout0-seed$seed --tasks mt10 --dataset sub-optimal --seed $seed $TOOL_CENTRE_DATA"
  done
  for dataset in near-optimal sub-optimal; do
    for seed in 0 1 2; do
      echo "mt10-default-cpu/$dataset-tool-centre-prompt-dt-dropout0-seed$seed --tasks mt10 --dataset $dataset --algo prompt-dt --seed $seed $TOOL_CENTRE_DATA"
    done
  done
  # A longer policy phase under the default (after fused AdamW, 2026-12-06): 20k iterations instead of 16k.
  for seed in 0 1 2 3; do
    echo "mt10-default-cpu/near-optimal-tool-centre-dropout0-policy20k-seed$seed --tasks mt10 --seed $seed $TOOL_CENTRE_DATA --policy-iters 20000"
  done
  # Candidates for the 90% bar (2026-12-07), one flag each, one thread per run, two runs at a time; each stopped
  # once its seeds left no room for a 90% mean: a 32-code library (the ablations' best code count), 2 sequences
  # per task in each policy batch (paper 8, the preset 1), twice the data (400 episodes per task; the authors'
  # buffers: 2000), twice the extraction iterations, and 8 segments per task in each extraction and enhancement
  # batch (paper 16, the preset 4; the lead, made the default).
  for seed in 0 1; do
    echo "mt10-default-cpu/near-optimal-tool-centre-dropout0-codes32-seed$seed --tasks mt10 --seed $seed $TOOL_CENTRE_DATA --num-codes 32"
  done
  for seed in 0 1 2 3 4 5; do
    echo "mt10-default-cpu/near-optimal-tool-centre-dropout0-seq2-seed$seed --tasks mt10 --seed $seed $TOOL_CENTRE_DATA --sequences-per-task 2"
  done
  for seed in 0 1; do
    echo "mt10-default-cpu/near-optimal-tool-centre-ep400-dropout0-seed$seed --tasks mt10 --seed $seed $TOOL_CENTRE_DATA_400"
  done
  for seed in 0 1; do
    echo "mt10-default-cpu/near-optimal-tool-centre-dropout0-extract4k-seed$seed --tasks mt10 --seed $seed $TOOL_CENTRE_DATA --extract-iters 4000"
  done
  # The 8-segment rows are the `default` rows at the top.
}

hand_data() {   # rows that name no data aim were made on the hand-aimed data, the default before 2026-12-01
  sed '/--data-expert-aim/!{s/$/ --data-expert-aim hand/; /--data-dir/!s|$| --data-dir runs/data-hand|}'
}

rows_v2() {   # default-v2 preset (unless a row names another)
  # MT10 near- and sub-optimal, GO-Skill and Prompt-DT, on the 2-core CPU; the same with 20k policy iterations; and
  # an equal-CPU-time neighbour of default-v1 + cosine: half batches for 13k iterations.
  for seed in 0 1 2; do
    echo "mt10-default-cpu/near-optimal-goskill-seed$seed --tasks mt10 --seed $seed"
  done
  for seed in 0 1 2; do
    echo "mt10-default-cpu/sub-optimal-goskill-seed$seed --tasks mt10 --dataset sub-optimal --seed $seed"
  done
  # The flat Prompt-DT baseline under the same preset (18k iterations: GO-Skill's 2k + 16k), both datasets.
  for dataset in near-optimal sub-optimal; do
    for seed in 0 1 2; do
      echo "mt10-default-cpu/$dataset-prompt-dt-seed$seed --tasks mt10 --dataset $dataset --algo prompt-dt --seed $seed"
    done
  done
  # The same on data whose reach expert aims the tool centre, not the hand.
  for seed in 0 1 2; do
    echo "mt10-default-cpu/near-optimal-tool-centre-goskill-seed$seed --tasks mt10 --seed $seed $TOOL_CENTRE_DATA"
  done
  # Is the 90% bar a matter of compute? Twice the policy iterations on the tool-centre data (stopped half-way).
  echo "mt10-default-cpu/near-optimal-tool-centre-policy32k-seed0 --tasks mt10 --seed 0 $TOOL_CENTRE_DATA --policy-iters 32000"
  echo "mt10-default-cpu/near-optimal-policy20k-seed0 --tasks mt10 --seed 0 --policy-iters 20000"
  echo "mt10-default-cpu/near-optimal-half-batches-13k-seed0 --tasks mt10 --seed 0 --preset default-v1 --lr-schedule cosine --sequences-per-task 2 --segments-per-task 4 --policy-iters 13000"
}

rows_v1() {   # default-v1 preset (unless a row names another), so equal budgets for both methods
  for dataset in sub-optimal near-optimal; do
    for algo in goskill prompt-dt; do
      for seed in 0 1 2; do
        echo "mt10/$dataset-$algo-seed$seed --tasks mt10 --dataset $dataset --algo $algo --seed $seed"
      done
    done
  done
  # The paper's ablations on MT10 sub-optimal (seed 0); the full method is mt10/sub-optimal-goskill-seed0.
  local ab="--tasks mt10 --dataset sub-optimal --seed 0"
  echo "mt10-ablations/horizon5 $ab --skill-horizon 5"
  echo "mt10-ablations/horizon20 $ab --skill-horizon 20"
  echo "mt10-ablations/codes4 $ab --num-codes 4"
  echo "mt10-ablations/codes32 $ab --num-codes 32"
  echo "mt10-ablations/no-enhancement $ab --no-skill-enhancement"
  echo "mt10-ablations/cross-entropy $ab --focal-gamma 0"
  echo "mt10-ablations/no-vq $ab --no-quantize"
  # Seeds 1 and 2 of the ablations (2-core CPU).
  for seed in 1 2; do
    local ab_seed="--tasks mt10 --dataset sub-optimal --seed $seed"
    echo "mt10-ablations-cpu/no-vq-seed$seed $ab_seed --no-quantize"
    echo "mt10-ablations-cpu/no-enhancement-seed$seed $ab_seed --no-skill-enhancement"
    echo "mt10-ablations-cpu/horizon5-seed$seed $ab_seed --skill-horizon 5"
    echo "mt10-ablations-cpu/codes4-seed$seed $ab_seed --num-codes 4"
    echo "mt10-ablations-cpu/horizon20-seed$seed $ab_seed --skill-horizon 20"
    echo "mt10-ablations-cpu/codes32-seed$seed $ab_seed --num-codes 32"
    echo "mt10-ablations-cpu/cross-entropy-seed$seed $ab_seed --focal-gamma 0"
  done
  # Probes of MT10 near-optimal on the 2-core CPU (seed 0): the default-v1 run at a later commit, w/o VQ, and
  # Prompt-DT with a prompt as long as GO-Skill's in env steps.
  echo "mt10-probes-cpu/near-optimal-goskill-seed0 --tasks mt10 --seed 0"
  echo "mt10-probes-cpu/near-optimal-no-vq-seed0 --tasks mt10 --seed 0 --no-quantize"
  echo "mt10-probes-cpu/near-optimal-prompt-dt-prompt50-seed0 --tasks mt10 --seed 0 --algo prompt-dt --prompt-skills 50"
  # The library with the highest oracle figure in the README's library scan (64 codes, H = 10, 3x the extraction;
  # within noise of two others), trained to the end.
  echo "mt10-probes-cpu/near-optimal-codes64-extract6k-seed0 --tasks mt10 --seed 0 --num-codes 64 --extract-iters 6000"
  # The default-v1 run on the second half of the near-optimal stream only (episodes of behaviour quality >= 0.75,
  # made below by scripts/subset_data.py): what the stream's noisy episodes cost. Not one of the paper's datasets.
  echo "mt10-probes-cpu/near-optimal-q075-goskill-seed0 --tasks mt10 --seed 0 --data-dir runs/data-q075"
  echo "mt10-probes-cpu/near-optimal-q075-prompt-dt-seed0 --tasks mt10 --seed 0 --algo prompt-dt --data-dir runs/data-q075"
  # ... and Prompt-DT seeing only the current step (no history of its own actions)
  echo "mt10-probes-cpu/near-optimal-q075-prompt-dt-context1-seed0 --tasks mt10 --seed 0 --algo prompt-dt --context-skills 1 --data-dir runs/data-q075"
  # The default-v1 runs with the learning rate decayed to 0 by a cosine (--lr-schedule cosine) instead of constant,
  # and Prompt-DT's constant-rate seed 0 on the CPU to pair with its cosine row.
  for seed in 0 1 2; do
    echo "mt10-probes-cpu/near-optimal-goskill-cosine-seed$seed --tasks mt10 --seed $seed --lr-schedule cosine"
  done
  echo "mt10-probes-cpu/near-optimal-prompt-dt-seed0 --tasks mt10 --seed 0 --algo prompt-dt"
  for seed in 0 1 2; do
    echo "mt10-probes-cpu/near-optimal-prompt-dt-cosine-seed$seed --tasks mt10 --seed $seed --algo prompt-dt --lr-schedule cosine"
  done
  for seed in 0 1 2; do
    echo "mt10-probes-cpu/near-optimal-no-vq-cosine-seed$seed --tasks mt10 --seed $seed --no-quantize --lr-schedule cosine"
  done
  # ... and with 3x the policy iterations (24k), with and without VQ: is the skill policy's imprecision on reach
  # (scripts/goal_precision.py) under-training?
  # GO-Skill's seeds first: it is the paper's method.
  for seed in 0 1 2; do
    echo "mt10-probes-cpu/near-optimal-goskill-cosine-policy24k-seed$seed --tasks mt10 --seed $seed --lr-schedule cosine --policy-iters 24000"
  done
  for seed in 0 1 2; do
    echo "mt10-probes-cpu/near-optimal-no-vq-cosine-policy24k-seed$seed --tasks mt10 --seed $seed --no-quantize --lr-schedule cosine --policy-iters 24000"
  done
  # Prompt-DT on reach alone, on the quality >= 0.75 subset (minutes each): is it one task's precision that fails?
  local reach="--tasks reach-v3 --algo prompt-dt --data-dir runs/data-q075"
  for seed in 0 1 2; do
    echo "reach-probes-cpu/q075-prompt-dt-seed$seed $reach --seed $seed"
    echo "reach-probes-cpu/q075-prompt-dt-cosine-seed$seed $reach --seed $seed --lr-schedule cosine"
  done
  echo "reach-probes-cpu/q075-prompt-dt-dropout0-seed0 $reach --seed 0 --dropout 0"
  echo "reach-probes-cpu/q075-prompt-dt-embd256-seed0 $reach --seed 0 --n-embd 256"
  echo "reach-probes-cpu/q075-prompt-dt-context1-seed0 $reach --seed 0 --context-skills 1"
  echo "reach-probes-cpu/q075-prompt-dt-wd0-seed0 $reach --seed 0 --weight-decay 0"
  echo "reach-probes-cpu/q075-prompt-dt-iters3x-seed0 $reach --seed 0 --policy-iters 28000"
  # MT50, default-v1 preset, seed 0, 10 evaluation episodes per task (sized to one 10-minute GPU call).
  for dataset in sub-optimal near-optimal; do
    for algo in goskill prompt-dt; do
      echo "mt50/$dataset-$algo-seed0 --tasks mt50 --dataset $dataset --algo $algo --seed 0 --eval-episodes 10"
    done
  done
  # MT50 with the paper's networks, batches, context and prompt for 8k iterations (2k + 6k, 8% of its 100k; warm-up
  # scaled alike): what one session's 30 GPU minutes hold for four runs sharing one H200.
  local paper8k="--preset paper --extract-iters 2000 --policy-iters 6000 --warmup-iters 400 --eval-episodes 10"
  for dataset in sub-optimal near-optimal; do
    for algo in goskill prompt-dt; do
      echo "mt50-paper8k/$dataset-$algo-seed0 --tasks mt50 --dataset $dataset --algo $algo --seed 0 $paper8k"
    done
  done
}

run_row() {
  local name=$1; shift
  local json=results/$name.json out=runs/results/$name
  if [[ -f $json || -f ${json%.json}.eval-only.json ]]; then echo "skip   $name (its JSON exists)"; return 0; fi
  local resume=()
  [[ -f $out/checkpoint.pt ]] && resume=(--resume)
  mkdir -p "$out" "$(dirname "$json")"
  echo "start  $name: python goskill.py $* $EXTRA --out $out ${resume[*]}"
  # shellcheck disable=SC2086  # EXTRA is a list of flags
  if python goskill.py "$@" $EXTRA --out "$out" "${resume[@]}" >>"$out/log.txt" 2>&1; then
    cp "$out/results.json" "$json.tmp" && mv "$json.tmp" "$json" ||
      { rm -f "$json.tmp"; echo "FAILED $name: could not copy its results.json to $json"; return 1; }
    echo "done   $name: $(python -c "import json,sys; m=json.load(open(sys.argv[1]))['mean']; \
print(f\"success {100*m['success_rate']:.1f}%, return {m['return']:.0f}\")" "$json")"
  else
    echo "FAILED $name (log: $out/log.txt)"; return 1
  fi
}

SELECTED=$(rows | awk -v pattern="$PATTERN" '$1 ~ pattern')     # match the row name (first field) only
# Data first, once: parallel runs must not all generate the same files. MT10 is a subset of MT50. Every row names
# its folder: runs/data-tool-centre (the data default since 2026-12-01: the arrays a fresh data/ gets; -ep400: the
# same with 400 episodes per task), runs/data-hand (reach's expert aimed at the hand, the default before) or
# runs/data-q075 (a subset of runs/data-hand).
SET=mt10; grep -q -- "--tasks mt50" <<<"$SELECTED" && SET=mt50
python collect_data.py --tasks $SET --data-dir runs/data-tool-centre
if grep -q -- "--data-dir runs/data-tool-centre-ep400" <<<"$SELECTED"; then
  python collect_data.py --tasks mt10 --episodes 400 --data-dir runs/data-tool-centre-ep400
fi
if grep -q -- "--data-dir runs/data-\(hand\|q075\)" <<<"$SELECTED"; then
  # Only the reach tasks' files differ: copy the others, collect reach alone.
  mkdir -p runs/data-hand
  for f in runs/data-tool-centre/*-v3.npz; do
    case ${f##*/} in reach-v3.npz | reach-wall-v3.npz) ;; *) cp -n "$f" runs/data-hand/ ;; esac
  done
  python collect_data.py --tasks $SET --expert-aim hand --data-dir runs/data-hand
fi
if grep -q -- "--data-dir runs/data-q075" <<<"$SELECTED" && [[ ! -d runs/data-q075 ]]; then
  python scripts/subset_data.py --tasks mt10 --min-quality 0.75 --data-dir runs/data-hand --out-dir runs/data-q075
fi

export -f run_row
export EXTRA
xargs -P "$JOBS" -I{} bash -c 'run_row $1' _ {} <<<"$SELECTED"   # $1 unquoted: name + flags as words
