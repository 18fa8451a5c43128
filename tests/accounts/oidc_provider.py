"""A local OpenID Connect provider on a real HTTP port, standing in for Google (with its
``hd`` claim) or Keycloak in tests: discovery, token (RS256-signed ID token), userinfo
and JWKS, as the OpenID Connect Core and Discovery specifications describe them.

``claims`` is what the next sign-in returns; the test sets it before following the
authorization redirect (the provider's consent page is not needed: the test plays the
browser and comes back with a code).
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlparse

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

KID = "test-key-1"


def _b64(number: int) -> str:
    raw = number.to_bytes((number.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class Provider:
    def __init__(self, url: str, client_id: str) -> None:
        self.url = url
        self.client_id = client_id
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.claims: dict = {}
        self.codes: dict[str, dict] = {}
        self.token_requests: list[dict] = []

    def jwks(self) -> dict:
        numbers = self.key.public_key().public_numbers()
        return {
            "keys": [
                {"kty": "RSA", "kid": KID, "alg": "RS256", "use": "sig"}
                | {"n": _b64(numbers.n), "e": _b64(numbers.e)}
            ]
        }

    def id_token(self, claims: dict) -> str:
        now = int(time.time())
        body = {"iss": self.url, "aud": self.client_id, "iat": now, "exp": now + 600}
        body |= claims
        return jwt.encode(body, self.key, algorithm="RS256", headers={"kid": KID})

    def authorize(self, location: str) -> str:
        """Play the consent page: where the provider sends the browser back to."""
        query = parse_qs(urlparse(location).query)
        code = uuid.uuid4().hex
        self.codes[code] = {"sub": self.claims.get("email", "someone")} | self.claims
        back = {"code": code, "state": query["state"][0]}
        return f"{query['redirect_uri'][0]}?{urlencode(back)}"


def _handler(provider: Provider):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _json(self, body: dict, status: int = 200) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            path = urlparse(self.path).path
            if path == "/.well-known/openid-configuration":
                base = provider.url
                return self._json(
                    {
                        "issuer": base,
                        "authorization_endpoint": f"{base}/authorize",
                        "token_endpoint": f"{base}/token",
                        "userinfo_endpoint": f"{base}/userinfo",
                        "jwks_uri": f"{base}/jwks",
                        "token_endpoint_auth_methods_supported": ["client_secret_post"],
                    }
                )
            if path == "/jwks":
                return self._json(provider.jwks())
            if path == "/userinfo":
                token = self.headers.get("Authorization", "").removeprefix("Bearer ")
                claims = provider.codes.get(token)
                return self._json(claims) if claims else self._json({}, 401)
            return self._json({"error": "not_found"}, 404)

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
            provider.token_requests.append(form)
            claims = provider.codes.get(form.get("code", ""))
            if urlparse(self.path).path != "/token" or claims is None:
                return self._json({"error": "invalid_grant"}, 400)
            access = uuid.uuid4().hex
            provider.codes[access] = claims
            return self._json(
                {
                    "access_token": access,
                    "token_type": "Bearer",
                    "expires_in": 3600,
                    "id_token": provider.id_token(claims),
                }
            )

    return Handler


@contextmanager
def running_provider(client_id: str = "nanoweb-test"):
    server = ThreadingHTTPServer(("127.0.0.1", 0), None)
    provider = Provider(f"http://127.0.0.1:{server.server_address[1]}", client_id)
    server.RequestHandlerClass = _handler(provider)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield provider
    finally:
        server.shutdown()
        server.server_close()
