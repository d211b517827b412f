"""kgx's version and distribution name, in one place.

The import package and the command are ``kgx``; the distribution is ``kgx-wiki``, because the
name ``kgx`` on PyPI belongs to Biolink's Knowledge Graph Exchange, which also installs a
package ``kgx`` (the two cannot share an environment).
"""

__version__ = "0.2.0"
DISTRIBUTION = "kgx-wiki"
