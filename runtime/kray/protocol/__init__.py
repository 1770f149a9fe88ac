"""The wire protocol: frame layout, typed messages, pack/unpack and socket helpers. No policy."""
