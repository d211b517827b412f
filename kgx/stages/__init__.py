"""The stages of ``kgx extract``, one module each, all run by :mod:`kgx.stages.runner`.

======== ================================================== ===================================
module   does                                               leaves in OUT
======== ================================================== ===================================
structure reads the dump: infoboxes, categories, redirects,   ``graph.nq``, ``store/``,
         links, labels, abstracts (:mod:`kgx.extract`)      ``aliases.sqlite``, documents
corpus   the silver corpus (:mod:`kgx.corpus`)              ``corpus/``
model    fine-tunes the reader (:mod:`kgx.train`)           ``model/``
entities entity table + FAISS index (:mod:`kgx.linking`)    ``entities.faiss``
read     predicts, links and aggregates over every sentence ``model.nq``, ``mentions.nq``
merge    folds model facts, mentions and RDFS/OWL-RL        ``graph.nq``, ``store/``
         entailments into the graph and the store
======== ================================================== ===================================

This package imports nothing on purpose: the stage modules import the libraries they drive,
and those libraries may use :mod:`kgx.stages.runner`.
"""
