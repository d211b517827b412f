"""The structure stage: pages -> facts of the wiki's structure -> graph.nq, aliases.sqlite,
documents.jsonl.
"""
