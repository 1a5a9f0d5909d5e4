"""Corpora: demo generator, sources in hub schemas, chat formatting and sequence packing."""
