"""Reading a MediaWiki XML dump: its sources (plain, bz2, gz, pipes), its pages and revisions,
the multistream index, and repacking a dump into streams.
"""
