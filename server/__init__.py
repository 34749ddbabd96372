"""pod-identity-dns: authoritative DNS for Kubernetes pod identities."""

__version__ = "0.1.0"
