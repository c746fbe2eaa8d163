"""Songbird policy: the YAML a user writes in a ConfigMap, as frozen, validated dataclasses.

The bottom layer: it imports only the standard library and PyYAML, and every other package may import it.
"""
