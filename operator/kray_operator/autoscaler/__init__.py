"""kray's autoscaler, run by the operator: a pure bin-packing policy (capacity, policy) and the loop that
feeds it the head's demand over HTTP and patches the RayCluster (headapi, loop)."""
