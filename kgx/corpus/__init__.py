"""The corpus stage: a silver NER and relation corpus the dump labels itself, and the gold
datasets (CoNLL, DocRED) read beside it.
"""
