"""kray.autoscaler: what a program tells the autoscaler (`sdk.request_resources`), as Ray's
`ray.autoscaler`. The autoscaler itself runs in the Kubernetes operator."""
