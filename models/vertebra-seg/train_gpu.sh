#!/usr/bin/env bash
# Exact training command of the shipped vertebra model (run on the device machine: one H100).
# Usage: GEN_S=150 MIN=5.5 [INIT_DIR=dir with fold-a.pt fold-b.pt full.pt | INIT_SHIPPED=1] bash models/vertebra-seg/train_gpu.sh OUTDIR
# Needs .data/seg/real_*.npz (osteoai train-segmenter prepare-real), .data/seg/pseudo_*.npz
# (osteoai train-segmenter prepare-pseudo; classical labels on the unlabelled tcia-* CTs) and monai
# importable (.data/site holds a copy of monai 1.6.1, pure Python).
set -o pipefail
OUT=${1:-${OUT:-/tmp/out}}
mkdir -p "$OUT/logs"
export PYTHONPATH=$PWD/.data/site:$PWD/OsteoAI:$PWD/OsteoAISegment PYTHONUNBUFFERED=1
nvidia-smi -L
python3 -c "import torch, monai; print('torch', torch.__version__, 'monai', monai.__version__, 'cuda', torch.cuda.is_available())"
T=python3
if [ -n "$BENCH" ]; then  # speed of the weights already in models/ (before this run trains new ones)
  taskset -c 0,1 $T Testing/benchmarks/segmenter_speed.py --threads 2 --device cpu --repeats 2 2>&1 | tee "$OUT/logs/bench_cpu2.log"
  $T Testing/benchmarks/segmenter_speed.py --device cuda --repeats 3 2>&1 | tee "$OUT/logs/bench_gpu.log"
fi
CMD="-m OsteoAILib.segmenter_training.command"
# phantoms: as many seeds of 0-${NSEEDS:-239} as 15 processes make in GEN_S seconds (seeded: same seed, same phantom)
[ "${GEN_S:-150}" -gt 0 ] && timeout "${GEN_S:-150}" $T $CMD prepare-phantoms --seeds 0-${NSEEDS:-239} --workers 15 --out .data/seg > "$OUT/logs/gen.log" 2>&1
echo "phantoms: $(ls .data/seg/phantom_*.npz | wc -l)"
if [ -n "$INIT_SHIPPED" ]; then  # continue from the weights in models/ (the previous run)
  INIT_A=models/vertebra-seg/cv/fold-a/vertebra-seg/model.pt; INIT_B=models/vertebra-seg/cv/fold-b/vertebra-seg/model.pt
  INIT_F=models/vertebra-seg/model.pt
elif [ -n "$INIT_DIR" ]; then
  INIT_A=$INIT_DIR/fold-a.pt; INIT_B=$INIT_DIR/fold-b.pt; INIT_F=$INIT_DIR/full.pt
fi
M=${MIN:-5.5}
IT=${ITERS:-100000}
COMMON="--samples .data/seg --minutes $M --iters $IT --batch 4 --seed ${SEED:-0} --lr ${LR:-2e-3} --device cuda --p-real ${P_REAL:-0.35} --pseudo ${PSEUDO:-all} --p-pseudo ${P_PSEUDO:-0.3} --pseudo-weight ${PSEUDO_W:-0.5}"
# fold a: real training = all but ts-abdomen-3mm (held out); fold b: only ts-abdomen-3mm; full: all four.
# The pseudo-labelled tcia-* CTs are never evaluated, so every fold uses them.
$T $CMD train $COMMON --real tptbox-lumbar-1.5mm,ts-dicom-t11-t12,ts-thorax-cta-1.5mm ${INIT_A:+--init $INIT_A} --out "$OUT/fold-a.pt" > "$OUT/logs/fold-a.log" 2>&1 &
$T $CMD train $COMMON --real ts-abdomen-3mm ${INIT_B:+--init $INIT_B} --out "$OUT/fold-b.pt" > "$OUT/logs/fold-b.log" 2>&1 &
$T $CMD train $COMMON --real ts-abdomen-3mm,tptbox-lumbar-1.5mm,ts-dicom-t11-t12,ts-thorax-cta-1.5mm ${INIT_F:+--init $INIT_F} --out "$OUT/full.pt" > "$OUT/logs/full.log" 2>&1 &
wait
mv "$OUT"/*.train.json "$OUT/logs/" 2>/dev/null
tail -n 3 "$OUT"/logs/*.log
ls .data/seg/phantom_*.npz | xargs -n1 basename > "$OUT/logs/phantoms_used.txt"
tar -C "$OUT" -czf "$OUT/logs.tgz" logs && rm -rf "$OUT/logs"
