"""The per-node object store: objects in shared memory, immutable once sealed, spilled to disk when full."""
