"""Networking, the engine's side: named networks, IP leases and ports, /etc files."""
