#!/usr/bin/env bash
# The bundled sample through the whole pipeline, then a look at what came out.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-out}
kgx extract data/enwiki-2016-excerpt.xml.bz2 -o "$OUT"
kgx query "$OUT" 'SELECT ?s ?p ?o ?confidence WHERE { GRAPH ?g { ?s ?p ?o } ?g kgx:extractor "model" ; kgx:confidence ?confidence } ORDER BY DESC(?confidence) LIMIT 10'
python3 -c "import kgx, sys; kg = kgx.KnowledgeGraph.open(sys.argv[1]); print([(c.title, c.score) for c in kg.lookup('Lincoln', k=3)])" "$OUT"
echo "serving $OUT on http://127.0.0.1:7878/sparql (Ctrl-C to stop)"
kgx serve "$OUT"
