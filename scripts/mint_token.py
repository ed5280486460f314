"""Mint development tokens: a user token for billing's public API, or a service token.

    python scripts/mint_token.py --user 6f1c...       (sub=user id, aud=AUTH_JWT_AUDIENCE)
    python scripts/mint_token.py --service movies     (iss=movies, aud=billing)

Settings come from the environment, then .env, then .env.example, like `make up`. RS256 user
tokens need the private key: AUTH_JWT_PRIVATE_KEY_FILE.
"""

from __future__ import annotations

import argparse
import sys
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from integration_tests.clients import StackSettings, service_token, user_token  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    kind = parser.add_mutually_exclusive_group(required=True)
    kind.add_argument("--user", help="user id (UUID)")
    kind.add_argument("--service", help="calling service name, e.g. movies")
    parser.add_argument("--audience", default="billing", help="called service (service tokens)")
    parser.add_argument("--ttl", type=int, default=3600 * 12, help="lifetime in seconds")
    args = parser.parse_args()
    settings = StackSettings.load()
    if args.service:
        print(service_token(settings, args.service, args.audience, args.ttl))
        return 0
    try:
        user_id = str(uuid.UUID(args.user))
    except ValueError:
        print(
            f"not a user id: {args.user!r}; use make token USER=<user id> (a user token)"
            " or make token SERVICE=<name> (a service token, e.g. movies)",
            file=sys.stderr,
        )
        return 2
    print(user_token(settings, user_id, args.ttl))
    return 0


if __name__ == "__main__":
    sys.exit(main())
