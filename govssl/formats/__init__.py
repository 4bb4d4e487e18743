"""Exports of a run to standard formats, and documents that follow a regulation's structure."""
