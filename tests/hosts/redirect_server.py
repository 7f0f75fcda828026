"""A tiny LFS batch API whose action href is its own ``/redir/<oid>``, answered 302 (GET) or 307
(PUT) to ``target``, and a recording server that logs every request's headers (127.0.0.1,
plain or TLS)."""

from __future__ import annotations

import json
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Optional, Union


class Srv:
    def __init__(self, tls_ctx: Optional[ssl.SSLContext] = None) -> None:
        self.target: Union[None, str, Callable[[str], str]] = None  # Location for /redir/<oid>
        self.action_header: dict[str, str] = {}  # header of the action
        self.seen: list[tuple[str, str, dict[str, str]]] = []  # (method, path, headers)
        self.content: dict[str, bytes] = {}  # path -> bytes for GET
        outer = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a: Any) -> None:
                pass

            def _send(self, status: int, body: bytes, extra: Optional[dict[str, str]] = None) -> None:
                self.send_response(status)
                for k, v in {"Content-Length": str(len(body)), **(extra or {})}.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def _location(self) -> str:
                t = outer.target
                return t(self.path[7:]) if callable(t) else str(t)

            def do_POST(self) -> None:
                data = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                outer.seen.append(("POST", self.path, dict(self.headers)))
                req = json.loads(data)
                obj = req["objects"][0]
                act = {"href": outer.base + "/redir/" + obj["oid"], "header": outer.action_header}
                op = "download" if req["operation"] == "download" else "upload"
                body = json.dumps({"objects": [{"oid": obj["oid"], "size": obj["size"], "actions": {op: act}}]})
                self._send(200, body.encode(), {"Content-Type": "application/vnd.git-lfs+json"})

            def do_GET(self) -> None:
                outer.seen.append(("GET", self.path, dict(self.headers)))
                if self.path.startswith("/redir/"):
                    self._send(302, b"", {"Location": self._location()})
                elif self.path in outer.content:
                    self._send(200, outer.content[self.path])
                else:
                    self._send(404, b"")

            def do_PUT(self) -> None:
                outer.seen.append(("PUT", self.path, dict(self.headers)))
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.path.startswith("/redir/"):
                    self._send(307, b"", {"Location": self._location()})
                else:
                    self._send(200, b"")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        scheme = "http"
        if tls_ctx is not None:
            self.server.socket = tls_ctx.wrap_socket(self.server.socket, server_side=True)
            scheme = "https"
        self.port = self.server.server_address[1]
        self.base = f"{scheme}://127.0.0.1:{self.port}"
        self.t = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.t.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.t.join(5)


def self_signed(dir_: Any) -> tuple[str, str]:
    """A certificate for 127.0.0.1 and its key, written to ``dir_``: (cert path, key path)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    c, k = f"{dir_}/cert.pem", f"{dir_}/key.pem"
    with open(c, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(k, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    return c, k
