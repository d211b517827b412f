"""The entities stage: the alias table, the FAISS index and the linker that reads them."""
