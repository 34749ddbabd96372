"""Serving: the UDP and TCP transports, their sockets, and --workers."""
