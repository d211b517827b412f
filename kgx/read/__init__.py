"""The read stage: every sentence through the model, its mentions linked, its facts decided
(asserted, kept as candidates or refused).
"""
