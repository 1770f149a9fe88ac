"""The raylet: one per node. Grants worker leases against the node's resource ledger, runs the
worker pool, hosts the node's object store ledger and forwards worker output to drivers."""
