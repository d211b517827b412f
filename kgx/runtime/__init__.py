"""What every part of kgx runs on, standard library only: cores, logs, progress, processes.

Nothing here imports another kgx package, so any module may import it.
"""
