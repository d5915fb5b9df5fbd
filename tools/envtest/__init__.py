"""The local control plane (controlplane.py) and the polling helper every tool and test uses."""
