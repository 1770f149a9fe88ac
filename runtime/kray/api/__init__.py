"""What the driver calls: init/shutdown, remote functions, get/put/wait/cancel, runtime context.
Thin layers over kray.core."""
