"""Mint development tokens: a user token for billing's public API, or a service token.

    python scripts/mint_token.py --user 6f1c...            (sub=user id, aud=AUTH_JWT_AUDIENCE)
    python scripts/mint_token.py --service movies          (iss=movies, aud=billing)

Settings come from the environment, then .env, then .env.example, like `make up`. RS256 user
tokens need the private key: AUTH_JWT_PRIVATE_KEY_FILE.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from pathlib import Path

import jwt

sys.path.insert(0, str(Path(__file__).resolve().parent))
from settings import load_settings  # noqa: E402


def user_token(settings: dict[str, str], user_id: str, ttl: int) -> str:
    """A user token exactly as the cinema's auth service would issue it."""
    now = int(time.time())
    claims = {"sub": user_id, "aud": settings["AUTH_JWT_AUDIENCE"], "iat": now, "exp": now + ttl}
    algorithm = settings["AUTH_JWT_ALGORITHM"]
    if algorithm == "RS256":
        key = Path(settings["AUTH_JWT_PRIVATE_KEY_FILE"]).read_text()
    else:
        key = settings["AUTH_JWT_SECRET"]
    return jwt.encode(claims, key, algorithm=algorithm)


def service_token(settings: dict[str, str], issuer: str, audience: str, ttl: int) -> str:
    """A service token: iss = the calling service, aud = the called one."""
    now = int(time.time())
    claims = {"iss": issuer, "sub": issuer, "aud": audience, "iat": now, "exp": now + ttl}
    return jwt.encode(claims, settings["SERVICE_JWT_SECRET"], algorithm="HS256")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    kind = parser.add_mutually_exclusive_group(required=True)
    kind.add_argument("--user", help="user id (UUID)")
    kind.add_argument("--service", help="calling service name, e.g. movies")
    parser.add_argument("--audience", default="billing", help="called service (service tokens)")
    parser.add_argument("--ttl", type=int, default=3600 * 12, help="lifetime in seconds")
    args = parser.parse_args()
    settings = load_settings()
    if args.service:
        print(service_token(settings, args.service, args.audience, args.ttl))
        return 0
    try:
        user_id = str(uuid.UUID(args.user))
    except ValueError:
        print(f"not a user id: {args.user!r}; use: make token USER=<uuid>", file=sys.stderr)
        return 2
    print(user_token(settings, user_id, args.ttl))
    return 0


if __name__ == "__main__":
    sys.exit(main())
