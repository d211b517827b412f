"""Wikitext to plain text with offsets: templates, the page renderer, titles and namespaces of a
wiki, sentences.
"""
