"""Where a stage's chunks run and how each is made durable: the journal of committed chunks, the
local process pool, the pool of the engine in force, and the Ray engine. Imports only
kgx.runtime.
"""
