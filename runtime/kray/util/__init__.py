"""kray.util: ActorPool, Queue, placement groups, scheduling strategies and the state API (filled in by later issues)."""
