"""Reading the graph: KnowledgeGraph, the SPARQL checks, result writers."""
