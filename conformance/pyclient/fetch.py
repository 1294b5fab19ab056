"""py-spiffe conformance client: fetches an X509-SVID and a JWT-SVID from the Workload API
named by SPIFFE_ENDPOINT_SOCKET and prints what it got, one key=value per line.

Usage: SPIFFE_ENDPOINT_SOCKET=unix:///path/api.sock python3 fetch.py [audience]
"""

import sys

from spiffe import WorkloadApiClient


def main() -> int:
    audience = sys.argv[1] if len(sys.argv) > 1 else "conformance"
    with WorkloadApiClient() as client:
        svid = client.fetch_x509_svid()
        print(f"x509_spiffe_id={svid.spiffe_id}")
        print(f"x509_chain_len={len(svid.cert_chain)}")
        bundles = client.fetch_x509_bundles()
        bundle = bundles.get_bundle_for_trust_domain(svid.spiffe_id.trust_domain)
        print(f"x509_bundle_authorities={len(bundle.x509_authorities) if bundle else 0}")
        jwt = client.fetch_jwt_svid(audience={audience})
        print(f"jwt_spiffe_id={jwt.spiffe_id}")
        validated = client.validate_jwt_svid(jwt.token, audience)
        print(f"jwt_validated_spiffe_id={validated.spiffe_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
