"""UPDATE: a newer dump of the same wiki applied to a graph (``kgx update``).

:mod:`kgx.update.scan` reads the newer dump and tells unchanged pages from changed, added and
older ones; :mod:`kgx.update.apply` plans what the changed pages touch (the redirects they
give or take away, the pages whose links resolve through them), brings the alias table, the
graph's files and the store up to date, and :mod:`kgx.update.run` drives both as a resumable
job. The stages after the structure pass run again from :mod:`kgx.stages.update`.
"""
