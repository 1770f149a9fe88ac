"""The chaos tier: faults injected into a loaded multi-node cluster (issue 15)."""
