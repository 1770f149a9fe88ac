"""The client side of every process (driver or worker): ownership and reference counting, the task
submitter with its leases, and object fetch. No user-facing names live here."""
