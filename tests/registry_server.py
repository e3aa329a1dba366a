"""Real registries for tests: Debian's ``docker-registry`` in a subprocess (optionally
behind htpasswd Basic auth), and a small registry written here on ``http.server`` that can
misbehave on purpose (bad digests, truncated or broken-off bodies, redirects to another
host, bearer tokens, errors on any request) and takes uploads.

Both are context managers that stop what they started, even when a test fails.
"""

from __future__ import annotations

import hashlib
import json
import re
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
from urllib.parse import parse_qs, urlsplit

import attrs
import httpx

__all__ = [
    "DOCKER_REGISTRY",
    "HTPASSWD",
    "FakeRegistry",
    "Request",
    "docker_registry",
    "fake_registry",
    "free_port",
    "skopeo_copy",
]

#: The registry binary of Debian's ``docker-registry`` package, or None.
DOCKER_REGISTRY = shutil.which("docker-registry") or shutil.which("registry")
#: Apache's ``htpasswd`` (Debian's apache2-utils), which makes the bcrypt entries
#: docker-registry's htpasswd auth needs, or None.
HTPASSWD = shutil.which("htpasswd")


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
def docker_registry(root: Path, *, users: dict[str, str] | None = None) -> Iterator[str]:
    """Run ``docker-registry serve`` on 127.0.0.1 with its storage in ``root``; yields its
    ``host:port``. The process is killed at the end, however the block ends.

    With ``users`` (name to password) the registry asks for HTTP Basic auth, checked
    against an htpasswd file made with :data:`HTPASSWD`.
    """
    assert DOCKER_REGISTRY is not None
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = root / "config.yml"
    auth = ""
    if users is not None:
        assert HTPASSWD is not None, "htpasswd is missing: apt-get install apache2-utils"
        lines = [
            subprocess.run(
                [HTPASSWD, "-Bbn", user, password], capture_output=True, text=True, check=True
            ).stdout.strip()
            for user, password in users.items()
        ]
        (root / "htpasswd").write_text("\n".join(lines) + "\n")
        auth = f"auth:\n  htpasswd:\n    realm: test-registry\n    path: {root / 'htpasswd'}\n"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: warn\n  accesslog:\n    disabled: true\n"
        f"storage:\n  filesystem:\n    rootdirectory: {root / 'storage'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n" + auth
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
    """One request a :class:`FakeRegistry` received, with its body."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes = b""


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
        unavailable: how many more GET requests get a 503 before the server answers.
        faults: by method (``"PUT"``), statuses to answer the next requests of that
            method with (but the token request), one each, in order, before answering
            for real.
        cut_once: by digest, after how many bytes the next GET of the blob breaks off
            (the connection closed mid-body); used once each.
        ranges: whether blob GETs honour ``Range`` (206); if not they answer 200, whole.
        mountable: whether a blob upload with ``?mount=`` of a known blob mounts it (201).
        chunk_min: if set, sent as ``OCI-Chunk-Min-Length`` when an upload starts.
        absolute_locations: upload ``Location`` headers are absolute URLs, not paths.
        gate: if set, every blob GET waits at this barrier (10 s at most) before it is
            answered, and gets a 500 if the barrier breaks: a pull that does not fetch
            that many blobs at once fails.
        uploads: open upload sessions, by id, with the bytes received.
        pushed: the manifests received, by repository and tag or digest: media type, bytes.
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
    faults: dict[str, list[int]] = attrs.Factory(dict)
    cut_once: dict[str, int] = attrs.Factory(dict)
    ranges: bool = True
    mountable: bool = True
    chunk_min: int | None = None
    absolute_locations: bool = False
    gate: threading.Barrier | None = None
    uploads: dict[str, bytearray] = attrs.Factory(dict)
    pushed: dict[tuple[str, str], tuple[str, bytes]] = attrs.Factory(dict)
    requests: list[Request] = attrs.Factory(list)
    lock: threading.Lock = attrs.field(factory=threading.Lock, repr=False)

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


_UPLOADS = re.compile(r"/v2/(?P<repo>.+)/blobs/uploads/(?P<id>[^/]*)")
_BLOBS = re.compile(r"/v2/(?P<repo>.+)/blobs/(?P<digest>[^/]+)")
_MANIFESTS = re.compile(r"/v2/(?P<repo>.+)/manifests/(?P<ref>[^/]+)")
_RANGE = re.compile(r"bytes=(\d+)-")
_CONTENT_RANGE = re.compile(r"(\d+)-(\d+)")


def _error(code: str, message: str) -> bytes:
    return json.dumps({"errors": [{"code": code, "message": message}]}).encode()


def _handler(state: FakeRegistry) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        request_body = b""

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send(self, status: int, body: bytes = b"", **headers: str) -> None:
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            for key, value in headers.items():
                self.send_header(key.replace("_", "-"), value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                data = bytearray()
                while True:
                    size = int(self.rfile.readline().split(b";")[0], 16)
                    if size == 0:
                        self.rfile.readline()
                        return bytes(data)
                    data += self.rfile.read(size)
                    self.rfile.readline()
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _admit(self) -> bool:
            """Record the request; answer it here (False) if it is to fail or lacks
            authorization."""
            body = self._body() if self.command in ("POST", "PUT", "PATCH") else b""
            state.requests.append(
                Request(self.command, self.path, dict(self.headers.items()), body)
            )
            self.request_body = body
            if self.path.partition("?")[0] == "/token":
                self._send(200, json.dumps({"token": state.token}).encode())
                return False
            with state.lock:
                pending = state.faults.get(self.command)
                fault = pending.pop(0) if pending else None
                busy = self.command == "GET" and state.unavailable > 0
                if busy:
                    state.unavailable -= 1
            if fault is not None:
                self._send(fault, _error("UNKNOWN", f"injected {fault}"), Retry_After="0")
                return False
            if busy:
                self._send(503, b"busy", Retry_After="0")
                return False
            if state.basic is not None and self.headers.get("Authorization") != state.basic:
                self._send(401, b"", WWW_Authenticate='Basic realm="fake"')
                return False
            if state.token is not None and self.headers.get("Authorization") != (
                f"Bearer {state.token}"
            ):
                challenge = (
                    f'Bearer realm="{state.url}/token",service="fake",'
                    'scope="repository:test/app:pull"'
                )
                self._send(401, b'{"errors":[{"code":"UNAUTHORIZED"}]}', WWW_Authenticate=challenge)
                return False
            return True

        def do_GET(self) -> None:
            if not self._admit():
                return
            path = self.path.partition("?")[0]
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

        def do_HEAD(self) -> None:
            if not self._admit():
                return
            found = _BLOBS.fullmatch(self.path.partition("?")[0])
            data = state.blobs.get(found["digest"]) if found else None
            if data is None:
                self._send(404)
            else:
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Docker-Content-Digest", found["digest"] if found else "")
                self.end_headers()

        def _blob(self, digest: str) -> None:
            if state.gate is not None:
                try:
                    state.gate.wait(timeout=10)
                except threading.BrokenBarrierError:
                    self._send(500, _error("UNKNOWN", "the gate broke"))
                    return
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
                start = 0
                wanted = _RANGE.fullmatch(self.headers.get("Range", ""))
                if state.ranges and wanted is not None and int(wanted[1]) < len(data):
                    start = int(wanted[1])
                with state.lock:
                    cut = state.cut_once.pop(digest, None)
                part = data[start:]
                self.send_response(206 if start else 200)
                self.send_header("Content-Length", str(len(part)))
                self.send_header("Content-Type", "application/octet-stream")
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.end_headers()
                if cut is not None:
                    self.close_connection = True
                    part = part[:cut]
                self.wfile.write(part)
                self.wfile.flush()

        def _location(self, repository: str, session: str) -> str:
            path = f"/v2/{repository}/blobs/uploads/{session}?_state=s{session}"
            return state.url + path if state.absolute_locations else path

        def _open_session(self, repository: str) -> None:
            with state.lock:
                session = f"u{len(state.uploads)}"
                state.uploads[session] = bytearray()
            headers = {"Location": self._location(repository, session)}
            if state.chunk_min is not None:
                headers["OCI-Chunk-Min-Length"] = str(state.chunk_min)
            self._send(202, b"", **headers)

        def do_POST(self) -> None:
            if not self._admit():
                return
            url = urlsplit(self.path)
            found = _UPLOADS.fullmatch(url.path)
            if found is None or found["id"]:
                self._send(404)
                return
            query = parse_qs(url.query)
            mount = query.get("mount", [""])[0]
            if state.mountable and mount in state.blobs and query.get("from"):
                self._send(201, Location=f"/v2/{found['repo']}/blobs/{mount}")
            else:
                self._open_session(found["repo"])

        def _session(self) -> tuple[re.Match[str], bytearray, dict[str, list[str]]] | None:
            url = urlsplit(self.path)
            found = _UPLOADS.fullmatch(url.path)
            query = parse_qs(url.query)
            session = state.uploads.get(found["id"]) if found else None
            if found is None or session is None or query.get("_state") != [f"s{found['id']}"]:
                self._send(404, _error("BLOB_UPLOAD_UNKNOWN", "blob upload unknown"))
                return None
            return found, session, query

        def do_PATCH(self) -> None:
            if not self._admit():
                return
            opened = self._session()
            if opened is None:
                return
            found, session, _ = opened
            span = _CONTENT_RANGE.fullmatch(self.headers.get("Content-Range", ""))
            if span is not None and int(span[1]) != len(session):
                self._send(416, _error("BLOB_UPLOAD_INVALID", "range out of order"))
                return
            session += self.request_body
            location = self._location(found["repo"], found["id"])
            self._send(202, b"", Location=location, Range=f"0-{len(session) - 1}")

        def do_PUT(self) -> None:
            if not self._admit():
                return
            path = urlsplit(self.path).path
            manifest = _MANIFESTS.fullmatch(path)
            if manifest is not None:
                digest = "sha256:" + hashlib.sha256(self.request_body).hexdigest()
                media_type = self.headers.get("Content-Type", "")
                state.pushed[(manifest["repo"], manifest["ref"])] = (media_type, self.request_body)
                state.manifests[digest] = (media_type, self.request_body)
                self._send(201, Docker_Content_Digest=digest)
                return
            opened = self._session()
            if opened is None:
                return
            found, session, query = opened
            data = bytes(session + self.request_body)
            digest = query.get("digest", [""])[0]
            if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
                self._send(400, _error("DIGEST_INVALID", "provided digest did not match"))
                return
            state.blobs[digest] = data
            del state.uploads[found["id"]]
            self._send(201, Location=f"/v2/{found['repo']}/blobs/{digest}")

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
