"""The k8s test tier's control plane: build.sh builds the binaries, launcher starts them, pki signs.

Test support only; imported by tests/k8s/conftest.py.
"""
