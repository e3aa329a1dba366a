"""Real registries for tests: Debian's ``docker-registry`` in a subprocess, and a small
registry written here on ``http.server`` that can misbehave on purpose (bad digests,
truncated bodies, redirects to another host, bearer tokens).

Both are context managers that stop what they started, even when a test fails.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import attrs
import httpx

__all__ = [
    "DOCKER_REGISTRY",
    "FakeRegistry",
    "Request",
    "docker_registry",
    "fake_registry",
    "free_port",
    "skopeo_copy",
]

#: The registry binary of Debian's ``docker-registry`` package, or None.
DOCKER_REGISTRY = shutil.which("docker-registry") or shutil.which("registry")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def _wait_for(url: str, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{url}: the server exited with {process.returncode}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer within 20 s")


@contextmanager
def docker_registry(root: Path) -> Iterator[str]:
    """Run ``docker-registry serve`` on 127.0.0.1 with its storage in ``root``; yields its
    ``host:port``. The process is killed at the end, however the block ends."""
    assert DOCKER_REGISTRY is not None
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = root / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: warn\n  accesslog:\n    disabled: true\n"
        f"storage:\n  filesystem:\n    rootdirectory: {root / 'storage'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    with (root / "registry.log").open("wb") as log:
        process = subprocess.Popen(
            [DOCKER_REGISTRY, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT
        )
        try:
            _wait_for(f"http://127.0.0.1:{port}/v2/", process)
            yield f"127.0.0.1:{port}"
        finally:
            process.kill()
            process.wait()


def skopeo_copy(source: str, destination: str, *extra: str) -> None:
    """``skopeo copy`` to a plain-http registry, failing with skopeo's message."""
    result = subprocess.run(
        ["skopeo", "copy", "--quiet", "--dest-tls-verify=false", *extra, source, destination],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"skopeo copy {source} {destination}: {result.stderr}")


@attrs.frozen
class Request:
    """One request a :class:`FakeRegistry` received."""

    method: str
    path: str
    headers: dict[str, str]


@attrs.define
class FakeRegistry:
    """What the fake registry serves and how it misbehaves; edit it before pulling.

    Attributes:
        url: ``http://host:port``.
        manifests: by tag or digest, the media type and bytes.
        blobs: by digest, the bytes served (which need not match the digest).
        truncated: digests whose body is cut in half, with the full Content-Length.
        redirect_blobs_to: a base URL that blob GETs are redirected to (307).
        token: if set, every /v2/ request needs ``Authorization: Bearer <token>``; the
            token is handed out at ``/token``.
        basic: if set, every /v2/ request needs this ``Authorization: Basic ...`` value.
        unavailable: how many more requests get a 503 before the server answers.
        requests: every request received.
    """

    url: str = ""
    manifests: dict[str, tuple[str, bytes]] = attrs.Factory(dict)
    blobs: dict[str, bytes] = attrs.Factory(dict)
    truncated: set[str] = attrs.Factory(set)
    redirect_blobs_to: str | None = None
    token: str | None = None
    basic: str | None = None
    unavailable: int = 0
    requests: list[Request] = attrs.Factory(list)

    def add_blob(self, data: bytes) -> str:
        """Serve ``data`` under its digest; return the digest."""
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        self.blobs[digest] = data
        return digest

    def add_manifest(self, tag: str, document: dict[str, Any], media_type: str) -> str:
        """Serve a manifest by ``tag`` and by digest; return the digest."""
        data = json.dumps(document).encode()
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        self.manifests[tag] = self.manifests[digest] = (media_type, data)
        return digest


def _handler(state: FakeRegistry) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send(self, status: int, body: bytes = b"", **headers: str) -> None:
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            for key, value in headers.items():
                self.send_header(key.replace("_", "-"), value)
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            state.requests.append(Request("GET", self.path, dict(self.headers.items())))
            path = self.path.partition("?")[0]
            if path == "/token":
                self._send(200, json.dumps({"token": state.token}).encode())
                return
            if state.unavailable > 0:
                state.unavailable -= 1
                self._send(503, b"busy", Retry_After="0")
                return
            if state.basic is not None and self.headers.get("Authorization") != state.basic:
                self._send(401, b"", WWW_Authenticate='Basic realm="fake"')
                return
            if state.token is not None and self.headers.get("Authorization") != (
                f"Bearer {state.token}"
            ):
                challenge = (
                    f'Bearer realm="{state.url}/token",service="fake",'
                    'scope="repository:test/app:pull"'
                )
                self._send(401, b'{"errors":[{"code":"UNAUTHORIZED"}]}', WWW_Authenticate=challenge)
                return
            parts = path.split("/")
            if path == "/v2/":
                self._send(200, b"{}")
            elif len(parts) >= 5 and parts[-2] == "manifests":
                found = state.manifests.get(parts[-1])
                if found is None:
                    body = b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}'
                    self._send(404, body, Content_Type="application/json")
                else:
                    self._send(200, found[1], Content_Type=found[0])
            elif len(parts) >= 3 and parts[-2] == "blobs":
                self._blob(parts[-1])
            else:
                self._send(404)

        def _blob(self, digest: str) -> None:
            if state.redirect_blobs_to is not None:
                self._send(307, Location=f"{state.redirect_blobs_to}/blobs/{digest}")
                return
            data = state.blobs.get(digest)
            if data is None:
                self._send(404, b'{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown"}]}')
            elif digest in state.truncated:
                self.close_connection = True
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data[: len(data) // 2])
                self.wfile.flush()
            else:
                self._send(200, data, Content_Type="application/octet-stream")

    return Handler


@contextmanager
def fake_registry(host: str = "127.0.0.1") -> Iterator[FakeRegistry]:
    """Serve a :class:`FakeRegistry` on ``host`` in a thread, stopped at the end."""
    state = FakeRegistry()
    server = ThreadingHTTPServer((host, 0), _handler(state))
    server.daemon_threads = True
    state.url = f"http://{host}:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
