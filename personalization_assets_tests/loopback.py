"""Test servers listen on loopback only: a free ephemeral port on 127.0.0.1 for one."""

import socket


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
