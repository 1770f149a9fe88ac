"""Integration tier: tests that start real local kray clusters with `kray.init()`.

A package (not loose modules) so its module names cannot clash with the unit tier's; conftest.py
makes everything defined here travel to workers by value.
"""
