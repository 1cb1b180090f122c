"""Helpers shared by the bench/ scripts."""
import socket
import subprocess
import time


def free_port():
    """A loopback port free for both TCP and UDP right now."""
    while True:
        with socket.socket() as t:
            t.bind(("127.0.0.1", 0))
            port = t.getsockname()[1]
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                u.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue


def wait_listening(port, udp=False, timeout=10):
    """Polls the socket table until something listens on `port`."""
    flag = "-Hlun" if udp else "-Hltn"
    deadline = time.time() + timeout
    while time.time() < deadline:
        if subprocess.run(["ss", flag, f"sport = :{port}"], capture_output=True, text=True).stdout.strip():
            return
        time.sleep(0.01)
    raise RuntimeError(f"nothing listens on port {port}")
