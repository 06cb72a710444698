"""Foundations every stage uses: errors, atomic writes, strict YAML, the vocabulary, and the
layout of a run's files."""
