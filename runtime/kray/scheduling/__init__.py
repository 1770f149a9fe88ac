"""Pure scheduling policies: resource arithmetic and placement decisions. Data in, decision out; no I/O."""
