// Command goclient is an independent SPIFFE Workload API client for the conformance suite,
// built on go-spiffe v2. It talks to the agent under test only through the Workload API
// socket named by -socket (or SPIFFE_ENDPOINT_SOCKET).
//
//	goclient x509                      prints "spiffe_id=<id>" and "bundle_authorities=<n>"
//	goclient jwt -audience A           prints "spiffe_id=<id>" after fetching a JWT-SVID with a
//	                                   JWTSource and validating it against the JWT bundle
//	goclient mtls-server -addr H:P -peer ID
//	                                   accepts one spiffetls connection from peer ID, echoes
//	                                   one line; prints "listening" first and "served <id>"
//	goclient mtls-client -addr H:P -peer ID
//	                                   dials the server, authorizing peer ID, sends one line,
//	                                   prints "reply=<line>" and "peer=<id>"
//	goclient verify -svid FILE         verifies the PEM X509-SVID chain in FILE against the
//	                                   bundles of the X509Source (own and federated); prints
//	                                   "verified=<id>"
//	goclient bundles                   FetchX509Bundles and FetchJWTBundles; prints
//	                                   "x509_bundle=<td> <n authorities>" and
//	                                   "jwt_bundle=<td> <n authorities>" per trust domain
package main

import (
	"bufio"
	"context"
	"crypto/x509"
	"encoding/pem"
	"flag"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

func main() {
	if len(os.Args) < 2 {
		fail("usage: goclient x509|jwt|mtls-server|mtls-client [flags]")
	}
	mode := os.Args[1]
	fs := flag.NewFlagSet(mode, flag.ExitOnError)
	socket := fs.String("socket", os.Getenv("SPIFFE_ENDPOINT_SOCKET"), "Workload API address (unix:///path)")
	audience := fs.String("audience", "conformance", "JWT audience")
	addr := fs.String("addr", "127.0.0.1:0", "mTLS address")
	peer := fs.String("peer", "", "expected peer SPIFFE ID")
	svidFile := fs.String("svid", "", "PEM chain to verify")
	timeout := fs.Duration("timeout", 30*time.Second, "overall timeout")
	_ = fs.Parse(os.Args[2:])

	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	clientOpt := workloadapi.WithClientOptions(workloadapi.WithAddr(*socket))

	switch mode {
	case "x509":
		src, err := workloadapi.NewX509Source(ctx, clientOpt)
		check(err, "x509 source")
		defer src.Close()
		svid, err := src.GetX509SVID()
		check(err, "x509 svid")
		bundle, err := src.GetX509BundleForTrustDomain(svid.ID.TrustDomain())
		check(err, "x509 bundle")
		fmt.Printf("spiffe_id=%s\n", svid.ID)
		fmt.Printf("bundle_authorities=%d\n", len(bundle.X509Authorities()))
	case "jwt":
		src, err := workloadapi.NewJWTSource(ctx, clientOpt)
		check(err, "jwt source")
		defer src.Close()
		svid, err := src.FetchJWTSVID(ctx, jwtsvid.Params{Audience: *audience})
		check(err, "jwt svid")
		parsed, err := jwtsvid.ParseAndValidate(svid.Marshal(), src, []string{*audience})
		check(err, "jwt validation")
		fmt.Printf("spiffe_id=%s\n", parsed.ID)
	case "verify":
		src, err := workloadapi.NewX509Source(ctx, clientOpt)
		check(err, "x509 source")
		defer src.Close()
		data, err := os.ReadFile(*svidFile)
		check(err, "read svid")
		var certs []*x509.Certificate
		for {
			var block *pem.Block
			block, data = pem.Decode(data)
			if block == nil {
				break
			}
			cert, err := x509.ParseCertificate(block.Bytes)
			check(err, "parse svid")
			certs = append(certs, cert)
		}
		id, _, err := x509svid.Verify(certs, src)
		check(err, "verify")
		fmt.Printf("verified=%s\n", id)
	case "bundles":
		client, err := workloadapi.New(ctx, workloadapi.WithAddr(*socket))
		check(err, "client")
		defer client.Close()
		x509s, err := client.FetchX509Bundles(ctx)
		check(err, "x509 bundles")
		for _, b := range x509s.Bundles() {
			fmt.Printf("x509_bundle=%s %d\n", b.TrustDomain(), len(b.X509Authorities()))
		}
		jwts, err := client.FetchJWTBundles(ctx)
		check(err, "jwt bundles")
		for _, b := range jwts.Bundles() {
			fmt.Printf("jwt_bundle=%s %d\n", b.TrustDomain(), len(b.JWTAuthorities()))
		}
	case "mtls-server":
		id := mustID(*peer)
		l, err := spiffetls.ListenWithMode(ctx, "tcp", *addr,
			spiffetls.MTLSServerWithSourceOptions(tlsconfig.AuthorizeID(id), clientOpt))
		check(err, "listen")
		defer l.Close()
		fmt.Printf("listening %s\n", l.Addr())
		conn, err := l.Accept()
		check(err, "accept")
		defer conn.Close()
		line, err := bufio.NewReader(conn).ReadString('\n')
		check(err, "read")
		_, err = fmt.Fprintf(conn, "echo %s", line)
		check(err, "write")
		got, err := spiffetls.PeerIDFromConn(conn)
		check(err, "peer id")
		fmt.Printf("served %s\n", got)
	case "mtls-client":
		id := mustID(*peer)
		var conn net.Conn
		var err error
		for {
			conn, err = spiffetls.DialWithMode(ctx, "tcp", *addr,
				spiffetls.MTLSClientWithSourceOptions(tlsconfig.AuthorizeID(id), clientOpt))
			if err == nil || ctx.Err() != nil {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		check(err, "dial")
		defer conn.Close()
		_, err = fmt.Fprintf(conn, "hello\n")
		check(err, "write")
		line, err := bufio.NewReader(conn).ReadString('\n')
		check(err, "read")
		got, err := spiffetls.PeerIDFromConn(conn)
		check(err, "peer id")
		fmt.Printf("reply=%s", line)
		fmt.Printf("peer=%s\n", got)
	default:
		fail("unknown mode " + mode)
	}
}

func mustID(s string) spiffeid.ID {
	id, err := spiffeid.FromString(s)
	check(err, "peer id")
	return id
}

func check(err error, what string) {
	if err != nil {
		fail(fmt.Sprintf("%s: %v", what, err))
	}
}

func fail(msg string) {
	fmt.Fprintln(os.Stderr, "goclient:", msg)
	os.Exit(1)
}
