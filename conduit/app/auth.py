"""Auth: who may publish to and subscribe to which topics, by bearer token.

    from conduit import App, Auth

    auth = Auth(
        tokens={"s3cret-publisher": {"publish": ["*"]}},     # static tokens and their grants
        jwt_secret=os.environ["CONDUIT_JWT_SECRET"],        # and/or HS256 JWTs (PyJWT)
    )
    app = App(auth=auth)
    news = app.channel("news", private=True)              # subscribing needs a grant

    @app.post("/publish/{topic}", auth="publish")        # a valid token with publish grants
    def publish(request, topic):
        request.require("publish", topic)                 # 403 unless granted for this topic
        return {"id": app.channel(topic).publish(request.json())}

Theory of operation
1. A token is looked for in this order, and the first place that has one is the only one
   used: the ``Authorization: Bearer <token>`` header, the cookie ``cookie`` (default
   ``conduit_token``), the query parameter ``query_param`` (default ``access_token``).
   EventSource cannot send headers, so browsers use the cookie (``withCredentials: true``
   sends it cross-origin when CORS allows credentials) or the query parameter.
2. A token equal to one of the static ``tokens`` (compared in constant time against every
   one of them) has that token's grants. Otherwise, with ``jwt_secret`` set, it must be a
   JWT signed with one of ``jwt_algorithms`` (HMAC only: HS256, HS384, HS512; ``none`` is
   never accepted); ``exp`` and ``nbf`` are checked when present. Its grants are in the
   claim ``claim`` (default ``conduit``), Mercure's shape:
   ``{"conduit": {"publish": [selectors], "subscribe": [selectors]}}``. A valid JWT without
   that claim has no grants.
3. Selectors: ``*`` matches any run of characters (``/`` included), every other character
   matches itself. ``"*"`` alone is every topic; ``"doc/*"`` is ``doc/1`` and
   ``doc/1/comments`` but not ``doc``; ``"news"`` is only ``news``.
4. No token, or one that is not valid (unknown, bad signature, expired, not yet valid,
   malformed, wrong algorithm): 401 with ``WWW-Authenticate: Bearer realm="conduit"``
   (plus ``error="invalid_token"`` when a token was given, RFC 6750). A valid token
   without the grant: 403 (``error="insufficient_scope"``). Messages say what is wrong and
   never contain the token; conduit never logs it (the access log shows
   ``access_token=[redacted]``).
5. A request is checked once: its grants are kept on the request for later checks.

Static tokens and the JWT secret can come from the environment, see ``Auth.from_env``:
``CONDUIT_AUTH_TOKEN`` (one static token with every grant) and ``CONDUIT_JWT_SECRET``.
"""

from __future__ import annotations

import hmac
import os
import re
from typing import Any

from conduit.errors import HTTPError

ACTIONS = ("publish", "subscribe")
# RFC 7518 3.2: an HMAC key must be at least as long as the hash output.
_HMAC_KEY_BYTES = {"HS256": 32, "HS384": 48, "HS512": 64}
_REALM = 'Bearer realm="conduit"'


class Grants:
    """What one token may do: topic selectors per action (see rule 3)."""

    __slots__ = ("publish", "subscribe", "_patterns")

    def __init__(self, publish=(), subscribe=()) -> None:
        self.publish = tuple(publish)
        self.subscribe = tuple(subscribe)
        self._patterns = {
            "publish": [_compile(selector) for selector in self.publish],
            "subscribe": [_compile(selector) for selector in self.subscribe],
        }

    def allows(self, action: str, topic: str) -> bool:
        return any(match(topic) for match in self._patterns[action])

    def __repr__(self) -> str:
        return f"Grants(publish={list(self.publish)!r}, subscribe={list(self.subscribe)!r})"


def _compile(selector: str):
    """A predicate for one selector: exact, "*" (everything), or with * wildcards."""
    if selector == "*":
        return lambda topic: True
    if "*" not in selector:
        return selector.__eq__
    regex = re.compile(".*".join(re.escape(part) for part in selector.split("*")), re.S)
    return lambda topic: regex.fullmatch(topic) is not None


def _grants_from(value, where: str) -> Grants:
    """Grants from ``{"publish": [...], "subscribe": [...]}``; ValueError naming ``where``."""
    if not isinstance(value, dict):
        raise ValueError(f"{where} must be an object like "
                         '{"publish": [...], "subscribe": [...]}')
    unknown = set(value) - set(ACTIONS)
    if unknown:
        raise ValueError(f"{where} has unknown keys {sorted(map(str, unknown))}; "
                         "expected publish and/or subscribe")
    lists = {}
    for action in ACTIONS:
        selectors = value.get(action, [])
        if isinstance(selectors, str) or not isinstance(selectors, (list, tuple)) \
                or not all(isinstance(s, str) for s in selectors):
            raise ValueError(f"{where}: {action} must be a list of topic selectors (strings)")
        lists[action] = selectors
    return Grants(lists["publish"], lists["subscribe"])


class Auth:
    """Bearer-token checks for publishers and private channels (see the module docstring).

    ``tokens``: ``{token: {"publish": [selectors], "subscribe": [selectors]}}``.
    ``jwt_secret``: the HMAC key of JWTs (str or bytes, at least as long as the hash:
    32 bytes for HS256); needs PyJWT (``pip install 'conduit-sse[jwt]'``).
    ``jwt_algorithms``: accepted algorithms, among HS256, HS384 and HS512.
    ``cookie``, ``query_param``: where browsers may put the token. ``claim``: the JWT
    claim that holds the grants.
    """

    def __init__(self, tokens=None, jwt_secret=None, jwt_algorithms=("HS256",),
                 cookie: str = "conduit_token", query_param: str = "access_token",
                 claim: str = "conduit") -> None:
        if not tokens and not jwt_secret:
            raise ValueError("Auth needs static tokens, a jwt_secret, or both")
        self._tokens = []  # [(token as UTF-8 bytes, Grants)]
        for token, grants in (tokens or {}).items():
            if not isinstance(token, str) or not token:
                raise ValueError("a static token must be a non-empty str")
            # Not naming the token in the message: it is a secret.
            self._tokens.append((token.encode("utf-8"), _grants_from(grants, "a token's grants")))
        if isinstance(jwt_algorithms, str):
            jwt_algorithms = (jwt_algorithms,)
        self.jwt_algorithms = tuple(jwt_algorithms)
        self._jwt: Any = None  # the jwt module (PyJWT), imported only when used
        self._jwt_secret: bytes | None = None
        if jwt_secret:
            for algorithm in self.jwt_algorithms:
                if algorithm not in _HMAC_KEY_BYTES:
                    raise ValueError(f"JWT algorithm {algorithm!r} is not supported; use "
                                     "HS256, HS384 or HS512")
            if not self.jwt_algorithms:
                raise ValueError("jwt_algorithms must name at least one algorithm")
            secret = jwt_secret.encode("utf-8") if isinstance(jwt_secret, str) else jwt_secret
            if not isinstance(secret, bytes):
                raise ValueError("jwt_secret must be str or bytes")
            need = max(_HMAC_KEY_BYTES[a] for a in self.jwt_algorithms)
            if len(secret) < need:
                raise ValueError(f"jwt_secret is {len(secret)} bytes; "
                                 f"{'/'.join(self.jwt_algorithms)} needs at least {need} "
                                 "(RFC 7518 3.2)")
            try:
                import jwt
            except ImportError:
                raise ImportError("JWT support needs PyJWT: pip install 'conduit-sse[jwt]' "
                                  "(static tokens work without it)") from None
            self._jwt = jwt
            self._jwt_secret = secret
        for name, value in (("cookie", cookie), ("query_param", query_param),
                            ("claim", claim)):
            if not isinstance(value, str) or not value:
                raise ValueError(f"{name} must be a non-empty str")
        self.cookie = cookie
        self.query_param = query_param
        self.claim = claim

    @classmethod
    def from_env(cls, environ=None, **settings):
        """An Auth from ``CONDUIT_AUTH_TOKEN`` (a static token allowed everything) and/or
        ``CONDUIT_JWT_SECRET``; None when neither is set. ``settings``: other arguments.

        Secrets come from the environment, never from the command line (which other users
        of the machine can read in the process list).
        """
        environ = os.environ if environ is None else environ
        token = environ.get("CONDUIT_AUTH_TOKEN", "")
        secret = environ.get("CONDUIT_JWT_SECRET", "")
        if not token and not secret:
            return None
        tokens = {token: {"publish": ["*"], "subscribe": ["*"]}} if token else None
        return cls(tokens=tokens, jwt_secret=secret or None, **settings)

    # -- finding and checking the token --------------------------------------------------
    def token_of(self, request):
        """The request's token (rule 1), or None. A malformed Authorization header is 401."""
        header = request.headers.get("authorization")
        if header is not None:
            scheme, _, value = header.strip().partition(" ")
            if scheme.lower() == "bearer":
                value = value.strip()
                if not value:
                    raise _unauthorized("malformed Authorization header: no token after Bearer",
                                        given=True)
                return value
            # Another scheme (Basic, say) is not ours: look further.
        value = request.cookies.get(self.cookie)
        if value:
            return value
        value = request.query.get(self.query_param)
        return value or None

    def grants(self, request) -> Grants:
        """The grants of the request's token; HTTPError 401 if it has none that is valid."""
        grants = request._grants
        if grants is not None:
            return grants
        token = self.token_of(request)
        if token is None:
            raise _unauthorized("missing token: send Authorization: Bearer <token>, the "
                                f"{self.cookie} cookie or the {self.query_param} query "
                                "parameter", given=False)
        grants = self._check(token)
        request._grants = grants
        return grants

    def _check(self, token: str) -> Grants:
        candidate = token.encode("utf-8", "surrogateescape")
        found = None
        for value, grants in self._tokens:
            # Every token is compared (no early exit), each in constant time.
            if hmac.compare_digest(candidate, value) and found is None:
                found = grants
        if found is not None:
            return found
        if self._jwt is None or token.count(".") != 2:  # not a static token, nor a JWT
            raise _unauthorized("token not valid", given=True)
        return self._check_jwt(token)

    def _check_jwt(self, token: str) -> Grants:
        jwt = self._jwt
        try:
            payload = jwt.decode(token, self._jwt_secret, algorithms=list(self.jwt_algorithms))
        except jwt.ExpiredSignatureError:
            raise _unauthorized("token expired", given=True) from None
        except jwt.ImmatureSignatureError:
            raise _unauthorized("token not valid yet", given=True) from None
        except jwt.InvalidAlgorithmError:
            raise _unauthorized("token not valid: algorithm not allowed", given=True) from None
        except jwt.InvalidSignatureError:
            raise _unauthorized("token not valid: bad signature", given=True) from None
        except jwt.DecodeError:
            raise _unauthorized("token not valid: malformed", given=True) from None
        except jwt.InvalidTokenError as exc:
            # other claim checks (iat, aud, ...): the exception names the claim, not the token
            raise _unauthorized(f"token not valid: {exc}", given=True) from None
        claim = payload.get(self.claim) if isinstance(payload, dict) else None
        if claim is None:
            return Grants()
        try:
            return _grants_from(claim, f"the {self.claim!r} claim")
        except ValueError as exc:
            raise _unauthorized(f"token not valid: {exc}", given=True) from None

    def require(self, request, action: str | None = None, topic: str | None = None) -> Grants:
        """Check the request's token; return its grants or raise HTTPError 401/403.

        ``action`` None: any valid token. ``action`` without ``topic``: the token must
        grant ``action`` on at least one topic. Both: it must grant ``action`` on ``topic``.
        """
        if action is not None and action not in ACTIONS:
            raise ValueError(f"action must be 'publish' or 'subscribe', got {action!r}")
        grants = self.grants(request)
        if action is None:
            return grants
        if topic is None:
            if not getattr(grants, action):
                raise _forbidden(f"not allowed to {action}")
        elif not grants.allows(action, topic):
            raise _forbidden(f"not allowed to {action} to {_shown(topic)}")
        return grants

    def __repr__(self) -> str:  # never the tokens or the secret
        return (f"Auth({len(self._tokens)} static tokens, "
                f"jwt={'on' if self._jwt else 'off'}, algorithms={list(self.jwt_algorithms)})")


def _shown(topic: str) -> str:
    return repr(topic) if len(topic) <= 200 else repr(topic[:200] + "...")


def _unauthorized(message: str, given: bool) -> HTTPError:
    if given:
        # error_description is a quoted-string: our messages have no quotes or CR/LF
        value = f'{_REALM}, error="invalid_token", error_description="{_quotable(message)}"'
    else:
        value = _REALM
    return HTTPError(401, message, headers=[("WWW-Authenticate", value)])


def _forbidden(message: str) -> HTTPError:
    return HTTPError(403, message,
                     headers=[("WWW-Authenticate", f'{_REALM}, error="insufficient_scope"')])


def _quotable(text: str) -> str:
    # RFC 6750 3: error_description is %x20-21 / %x23-5B / %x5D-7E
    return "".join(c for c in text if 0x20 <= ord(c) <= 0x7E and c not in '"\\')
