#!/usr/bin/env bash
# A full Wikipedia dump on a GPU server. Usage: pipelines/full-dump.sh DUMP OUT
#   DUMP: e.g. enwiki-YYYYMMDD-pages-articles-multistream.xml.bz2, with its
#         ...-multistream-index.txt.bz2 next to it (then every core decompresses streams).
set -euo pipefail
DUMP=${1:?usage: full-dump.sh DUMP OUT}
OUT=${2:?usage: full-dump.sh DUMP OUT}
# Train on far more of the silver corpus than the 2-core default, read every sentence, on the
# GPU (bf16/fp16 is automatic). Re-running after an interruption reuses finished stages.
kgx extract "$DUMP" -o "$OUT" \
  --workers "$(nproc)" \
  --train-sentences 200000 --train-epochs 3 \
  --device cuda \
  --page-timeout 120 --page-memory-mb 4096
kgx report "$OUT" | head -60
kgx serve "$OUT" --workers "$(( $(nproc) / 2 ))" --timeout 30
