"""The stages of ``kgx extract``: one short shell each, naming the package that does its work,
all run by :mod:`kgx.stages.runner` in the order :mod:`kgx.stages.pipeline` gives.

========= ================================================= ==================================
stage     does (package)                                    leaves in OUT
========= ================================================= ==================================
structure reads the dump: infoboxes, categories, redirects,  ``graph.nq``, ``store/``,
          links, labels, abstracts (:mod:`kgx.structure`)   ``aliases.sqlite``, documents
corpus    the silver corpus (:mod:`kgx.corpus`)             ``corpus/``
model     fine-tunes the reader (:mod:`kgx.model`)          ``model/``
entities  entity table, FAISS index, linker (:mod:`kgx.linking`) ``entities.faiss``
read      every sentence read, linked, facts decided        ``model.nq``, ``mentions.nq``
          (:mod:`kgx.read`)
merge     model facts, mentions and RDFS/OWL-RL             ``graph.nq``, ``store/``
          entailments into the graph and store (:mod:`kgx.rdf`)
========= ================================================= ==================================

This package imports nothing on purpose, and no library imports it: the shells import the
libraries they drive, never the other way round.
"""
