// Command delegatedclient drives the SPIRE agent's Delegated Identity API
// (spire.api.agent.delegatedidentity.v1) over the admin socket with the stubs of
// github.com/spiffe/spire-api-sdk at the version SPIRE 1.13.3 is built with, and
// prints one JSON object per line: each stream message (up to -n), or the call's
// result, or {"error":{"code":...,"message":...}} when the call fails.
//
// Subcommands:
//
//	x509svids  -socket S (-selector type:value ... | -pid N) [-n N] [-timeout D]
//	x509bundles -socket S [-n N] [-timeout D]
//	jwtsvids   -socket S -audience A ... (-selector ... | -pid N) [-verify]
//	jwtbundles -socket S [-n N] [-timeout D]
//
// X509-SVIDs are checked with go-spiffe (chain verified against the X.509 bundles
// the same API sends, key matching the leaf); JWT-SVIDs with -verify are validated
// with go-spiffe against the JWT bundles the same API sends.
package main

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	delegated "github.com/spiffe/spire-api-sdk/proto/spire/api/agent/delegatedidentity/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(v string) error { *m = append(*m, v); return nil }

var out = json.NewEncoder(os.Stdout)

func emit(v any) {
	if err := out.Encode(v); err != nil {
		fmt.Fprintln(os.Stderr, "encode:", err)
		os.Exit(1)
	}
}

// fail prints a gRPC status (or any error) as a JSON line and exits with 2.
func fail(err error) {
	s, _ := status.FromError(err)
	emit(map[string]any{"error": map[string]string{"code": s.Code().String(), "message": s.Message()}})
	os.Exit(2)
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: delegatedclient x509svids|x509bundles|jwtsvids|jwtbundles -socket PATH ...")
		os.Exit(1)
	}
	cmd := os.Args[1]
	fs := flag.NewFlagSet(cmd, flag.ExitOnError)
	socket := fs.String("socket", "", "admin socket path")
	n := fs.Int("n", 1, "stream messages to print before exiting")
	timeout := fs.Duration("timeout", 30*time.Second, "overall deadline")
	pid := fs.Int("pid", 0, "PID of the workload")
	verify := fs.Bool("verify", false, "jwtsvids: validate the tokens against the API's JWT bundles")
	var selectors, audiences multi
	fs.Var(&selectors, "selector", "workload selector type:value (repeatable)")
	fs.Var(&audiences, "audience", "JWT audience (repeatable)")
	_ = fs.Parse(os.Args[2:])
	if *socket == "" {
		fmt.Fprintln(os.Stderr, "-socket is required")
		os.Exit(1)
	}

	var sels []*types.Selector
	for _, s := range selectors {
		t, v, _ := strings.Cut(s, ":")
		sels = append(sels, &types.Selector{Type: t, Value: v})
	}

	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	conn, err := grpc.NewClient("unix://"+*socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fail(err)
	}
	defer conn.Close()
	c := delegated.NewDelegatedIdentityClient(conn)

	switch cmd {
	case "x509svids":
		x509Svids(ctx, c, sels, int32(*pid), *n)
	case "x509bundles":
		x509Bundles(ctx, c, *n)
	case "jwtsvids":
		jwtSvids(ctx, c, sels, int32(*pid), audiences, *verify)
	case "jwtbundles":
		jwtBundles(ctx, c, *n)
	default:
		fmt.Fprintln(os.Stderr, "unknown subcommand", cmd)
		os.Exit(1)
	}
}

// recvN calls recv up to n times, handing each message to f; a stream error is
// printed and ends the program.
func recvN[T any](n int, recv func() (T, error), f func(T)) {
	for i := 0; i < n; i++ {
		m, err := recv()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			fail(err)
		}
		f(m)
	}
}

// x509Set reads the API's first X.509 bundle message into a go-spiffe bundle set.
func x509Set(ctx context.Context, c delegated.DelegatedIdentityClient) *x509bundle.Set {
	s, err := c.SubscribeToX509Bundles(ctx, &delegated.SubscribeToX509BundlesRequest{})
	if err != nil {
		fail(err)
	}
	m, err := s.Recv()
	if err != nil {
		fail(err)
	}
	set := x509bundle.NewSet()
	for id, der := range m.CaCertificates {
		td, err := spiffeid.TrustDomainFromString(id)
		if err != nil {
			fail(fmt.Errorf("bundle key %q: %w", id, err))
		}
		certs, err := x509.ParseCertificates(der)
		if err != nil {
			fail(fmt.Errorf("bundle %q: %w", id, err))
		}
		set.Add(x509bundle.FromX509Authorities(td, certs))
	}
	return set
}

type x509Out struct {
	SpiffeID    string `json:"spiffe_id"`
	Hint        string `json:"hint"`
	ExpiresAt   int64  `json:"expires_at"`
	ChainLen    int    `json:"chain_len"`
	LeafID      string `json:"leaf_id"`
	LeafExpires int64  `json:"leaf_not_after"`
	KeyMatches  bool   `json:"key_matches"`
	Verified    string `json:"verified"`
}

func x509Svids(ctx context.Context, c delegated.DelegatedIdentityClient, sels []*types.Selector, pid int32, n int) {
	stream, err := c.SubscribeToX509SVIDs(ctx, &delegated.SubscribeToX509SVIDsRequest{Selectors: sels, Pid: pid})
	if err != nil {
		fail(err)
	}
	var bundles *x509bundle.Set
	recvN(n, stream.Recv, func(m *delegated.SubscribeToX509SVIDsResponse) {
		svids := []x509Out{}
		for _, s := range m.X509Svids {
			o := x509Out{Hint: s.X509Svid.GetHint(), ExpiresAt: s.X509Svid.GetExpiresAt(), ChainLen: len(s.X509Svid.GetCertChain())}
			if id := s.X509Svid.GetId(); id != nil {
				o.SpiffeID = "spiffe://" + id.TrustDomain + id.Path
			}
			var chain []*x509.Certificate
			for _, der := range s.X509Svid.GetCertChain() {
				cert, err := x509.ParseCertificate(der)
				if err != nil {
					fail(fmt.Errorf("certificate of %s: %w", o.SpiffeID, err))
				}
				chain = append(chain, cert)
			}
			if len(chain) > 0 {
				if id, err := x509svid.IDFromCert(chain[0]); err == nil {
					o.LeafID = id.String()
				}
				o.LeafExpires = chain[0].NotAfter.Unix()
				key, err := x509.ParsePKCS8PrivateKey(s.X509SvidKey)
				if err != nil {
					fail(fmt.Errorf("key of %s: %w", o.SpiffeID, err))
				}
				if signer, ok := key.(crypto.Signer); ok {
					if pub, ok := signer.Public().(interface{ Equal(crypto.PublicKey) bool }); ok {
						o.KeyMatches = pub.Equal(chain[0].PublicKey)
					}
				}
				if bundles == nil {
					bundles = x509Set(ctx, c)
				}
				if _, _, err := x509svid.Verify(chain, bundles); err != nil {
					o.Verified = err.Error()
				} else {
					o.Verified = "ok"
				}
			}
			svids = append(svids, o)
		}
		fw := m.FederatesWith
		if fw == nil {
			fw = []string{}
		}
		emit(map[string]any{"svids": svids, "federates_with": fw})
	})
}

type bundleOut struct {
	Certs    int      `json:"certs"`
	Subjects []string `json:"subjects"`
}

func x509Bundles(ctx context.Context, c delegated.DelegatedIdentityClient, n int) {
	stream, err := c.SubscribeToX509Bundles(ctx, &delegated.SubscribeToX509BundlesRequest{})
	if err != nil {
		fail(err)
	}
	recvN(n, stream.Recv, func(m *delegated.SubscribeToX509BundlesResponse) {
		res := map[string]bundleOut{}
		for id, der := range m.CaCertificates {
			certs, err := x509.ParseCertificates(der)
			if err != nil {
				fail(fmt.Errorf("bundle %q: %w", id, err))
			}
			b := bundleOut{Certs: len(certs), Subjects: []string{}}
			for _, c := range certs {
				b.Subjects = append(b.Subjects, c.Subject.String())
			}
			sort.Strings(b.Subjects)
			res[id] = b
		}
		emit(map[string]any{"bundles": res})
	})
}

type jwtOut struct {
	SpiffeID  string   `json:"spiffe_id"`
	Hint      string   `json:"hint"`
	ExpiresAt int64    `json:"expires_at"`
	IssuedAt  int64    `json:"issued_at"`
	Subject   string   `json:"subject"`
	Audience  []string `json:"audience"`
	Expiry    int64    `json:"token_expiry"`
	Verified  string   `json:"verified,omitempty"`
}

func jwtSet(ctx context.Context, c delegated.DelegatedIdentityClient) *jwtbundle.Set {
	s, err := c.SubscribeToJWTBundles(ctx, &delegated.SubscribeToJWTBundlesRequest{})
	if err != nil {
		fail(err)
	}
	m, err := s.Recv()
	if err != nil {
		fail(err)
	}
	set := jwtbundle.NewSet()
	for id, jwks := range m.Bundles {
		td, err := spiffeid.TrustDomainFromString(id)
		if err != nil {
			fail(fmt.Errorf("bundle key %q: %w", id, err))
		}
		b, err := jwtbundle.Parse(td, jwks)
		if err != nil {
			fail(fmt.Errorf("JWKS of %q: %w", id, err))
		}
		set.Add(b)
	}
	return set
}

func jwtSvids(ctx context.Context, c delegated.DelegatedIdentityClient, sels []*types.Selector, pid int32, audiences []string, verify bool) {
	resp, err := c.FetchJWTSVIDs(ctx, &delegated.FetchJWTSVIDsRequest{Selectors: sels, Pid: pid, Audience: audiences})
	if err != nil {
		fail(err)
	}
	var bundles *jwtbundle.Set
	if verify {
		bundles = jwtSet(ctx, c)
	}
	svids := []jwtOut{}
	for _, s := range resp.Svids {
		o := jwtOut{Hint: s.Hint, ExpiresAt: s.ExpiresAt, IssuedAt: s.IssuedAt}
		if s.Id != nil {
			o.SpiffeID = "spiffe://" + s.Id.TrustDomain + s.Id.Path
		}
		// Claims as the token states them (signature checked below with -verify).
		if t, err := jwtsvid.ParseInsecure(s.Token, audiences); err == nil {
			o.Subject, o.Audience, o.Expiry = t.ID.String(), t.Audience, t.Expiry.Unix()
		} else {
			o.Verified = "unparsable: " + err.Error()
		}
		if verify {
			if _, err := jwtsvid.ParseAndValidate(s.Token, bundles, audiences[:1]); err != nil {
				o.Verified = err.Error()
			} else {
				o.Verified = "ok"
			}
		}
		svids = append(svids, o)
	}
	emit(map[string]any{"svids": svids})
}

func jwtBundles(ctx context.Context, c delegated.DelegatedIdentityClient, n int) {
	stream, err := c.SubscribeToJWTBundles(ctx, &delegated.SubscribeToJWTBundlesRequest{})
	if err != nil {
		fail(err)
	}
	recvN(n, stream.Recv, func(m *delegated.SubscribeToJWTBundlesResponse) {
		res := map[string]any{}
		for id, jwks := range m.Bundles {
			var doc struct {
				Keys []struct {
					Kid string `json:"kid"`
					Kty string `json:"kty"`
					Use string `json:"use"`
				} `json:"keys"`
			}
			if err := json.Unmarshal(jwks, &doc); err != nil {
				fail(fmt.Errorf("JWKS of %q: %w", id, err))
			}
			td, err := spiffeid.TrustDomainFromString(id)
			if err != nil {
				fail(fmt.Errorf("bundle key %q: %w", id, err))
			}
			b, err := jwtbundle.Parse(td, jwks)
			if err != nil {
				fail(fmt.Errorf("JWKS of %q: %w", id, err))
			}
			kids := []string{}
			for _, k := range doc.Keys {
				kids = append(kids, k.Kid)
			}
			sort.Strings(kids)
			res[id] = map[string]any{"kids": kids, "parsed_keys": len(b.JWTAuthorities()), "raw": string(jwks)}
		}
		emit(map[string]any{"bundles": res})
	})
}
