"""The head's HTTP server: Ray's job API, package uploads and cluster state, in a process of its own
(`python -m kray.dashboard`). Uses aiohttp; reads the GCS over its socket, never its memory."""
