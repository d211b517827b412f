"""Writing the graph: N-Quads, the Oxigraph store, RDFS/OWL-RL entailments, and the merge stage
that adds the model's facts to them.
"""
