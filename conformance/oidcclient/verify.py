"""Verifies a JWT-SVID as an OIDC relying party does, with PyJWT: read the provider's
discovery document, fetch the keys from its jwks_uri with PyJWKClient, pick the key named
by the token's kid and check signature, audience and expiry.

Usage: verify.py DISCOVERY_URL AUDIENCE EXPECTED_SUBJECT < token
Prints the verified claims as JSON; exits non-zero when verification fails.
"""
import json
import sys
import urllib.request

import jwt


def main() -> int:
    discovery_url, audience, subject = sys.argv[1:4]
    token = sys.stdin.read().strip()
    with urllib.request.urlopen(discovery_url, timeout=10) as resp:
        doc = json.load(resp)
    jwks = jwt.PyJWKClient(doc["jwks_uri"], cache_keys=False, timeout=10)
    key = jwks.get_signing_key_from_jwt(token)
    claims = jwt.decode(
        token,
        key.key,
        algorithms=doc["id_token_signing_alg_values_supported"],
        audience=audience,
        options={"require": ["exp", "sub", "aud"]},
    )
    if claims["sub"] != subject:
        print(f"subject {claims['sub']!r}, expected {subject!r}", file=sys.stderr)
        return 1
    print(json.dumps({"claims": claims, "issuer": doc["issuer"], "kid": key.key_id}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
