"""The kray command line."""
