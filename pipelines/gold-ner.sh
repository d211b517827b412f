#!/usr/bin/env bash
# Gold NER data instead of (or after) the silver corpus. Usage:
#   pipelines/gold-ner.sh TRAIN.conll DEV.conll TEST.conll DUMP OUT
set -euo pipefail
TRAIN=${1:?}; DEV=${2:?}; TEST=${3:?}; DUMP=${4:?}; OUT=${5:?}
kgx train "$TRAIN" --dev "$DEV" -o "$OUT/gold-model" --epochs 5
kgx evaluate "$OUT/gold-model" "$TEST"
kgx extract "$DUMP" -o "$OUT" --model "$OUT/gold-model"
