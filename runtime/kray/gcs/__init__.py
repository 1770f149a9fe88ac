"""The GCS (global control service): the cluster's directory of nodes, jobs and a small KV store.
Runs on the head node only."""
