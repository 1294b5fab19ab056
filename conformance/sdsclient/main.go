// Command sdsclient is an independent Envoy SDS v3 client for the conformance suite, built
// on go-control-plane's generated Envoy API. It talks to a SPIRE agent's Workload API
// socket and prints every response it gets as one JSON line: the secrets decoded (names,
// types, certificate subjects and URI SANs, validation contexts, the SPIFFE validator's
// trust domains), or the gRPC status of a failed call.
//
//	sdsclient stream|fetch|delta -socket PATH [-names a,b] [flags]
//
// stream sends a request, ACKs each response, optionally changes its resource names
// (-then-names) and keeps reading until a response names -wait-for (a pushed update).
// Exit status: 0 when the calls were made (a gRPC error is printed as {"error":…}), 1 on
// a local failure or timeout.
package main

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tls "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	secret "github.com/envoyproxy/go-control-plane/envoy/service/secret/v3"
	envoytype "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"
)

const secretType = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"

type certJSON struct {
	Subject string   `json:"subject"`
	URIs    []string `json:"uris"`
	IsCA    bool     `json:"is_ca"`
}

type trustDomainJSON struct {
	Name  string     `json:"name"`
	Certs []certJSON `json:"certs"`
}

type validatorJSON struct {
	Name         string            `json:"name"`
	TypeURL      string            `json:"type_url"`
	TrustDomains []trustDomainJSON `json:"trust_domains"`
}

type resourceJSON struct {
	Name             string         `json:"name"`
	Type             string         `json:"type"`
	CertificateChain []certJSON     `json:"certificate_chain,omitempty"`
	PrivateKeyPEM    string         `json:"private_key_pem_type,omitempty"`
	KeyMatchesLeaf   bool           `json:"key_matches_leaf,omitempty"`
	TrustedCA        []certJSON     `json:"trusted_ca,omitempty"`
	CustomValidator  *validatorJSON `json:"custom_validator,omitempty"`
}

type responseJSON struct {
	VersionInfo string         `json:"version_info"`
	NonceLen    int            `json:"nonce_len"`
	TypeURL     string         `json:"type_url"`
	Resources   []resourceJSON `json:"resources"`
}

type errorJSON struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: sdsclient stream|fetch|delta -socket PATH [flags]")
		os.Exit(2)
	}
	mode := os.Args[1]
	fs := flag.NewFlagSet(mode, flag.ExitOnError)
	socket := fs.String("socket", "", "agent Workload API socket path")
	names := fs.String("names", "", "comma-separated resource names (empty: all)")
	thenNames := fs.String("then-names", "", "stream: after the first ACK, ask for these names instead (\"-\" for none)")
	waitFor := fs.String("wait-for", "", "stream: keep reading until a response holds this resource name")
	disable := fs.String("disable-validation", "", "node metadata disable_spiffe_cert_validation (true/false, empty: not sent)")
	envoyVersion := fs.String("envoy-version", "", "node user_agent_build_version as MAJOR.MINOR (empty: not sent)")
	timeout := fs.Duration("timeout", 30*time.Second, "overall deadline")
	retry := fs.Duration("retry", 0, "retry a first call refused with \"not authorized for the requested identities\" for this long")
	_ = fs.Parse(os.Args[2:])
	if *socket == "" {
		fail("-socket is required")
	}

	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	conn, err := grpc.NewClient("unix://"+*socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fail("dial: %v", err)
	}
	defer conn.Close()
	client := secret.NewSecretDiscoveryServiceClient(conn)

	node, err := buildNode(*disable, *envoyVersion)
	if err != nil {
		fail("%v", err)
	}
	req := &discovery.DiscoveryRequest{
		Node:          node,
		TypeUrl:       secretType,
		ResourceNames: splitNames(*names),
	}

	retryUntil := time.Now().Add(*retry)
	for {
		var err error
		switch mode {
		case "fetch":
			err = fetch(ctx, client, req)
		case "stream":
			err = stream(ctx, client, req, *thenNames, *waitFor)
		case "delta":
			err = delta(ctx, client, req)
		default:
			fail("unknown mode %q", mode)
		}
		if err == nil {
			return
		}
		st, ok := status.FromError(err)
		if ok && st.Code() == codes.InvalidArgument && strings.Contains(st.Message(), "not authorized for the requested identities") && time.Now().Before(retryUntil) {
			// SPIRE answers this while the SVIDs of a new caller are still being minted.
			time.Sleep(250 * time.Millisecond)
			continue
		}
		if !ok || st.Code() == codes.DeadlineExceeded {
			fail("%v", err)
		}
		emit(map[string]errorJSON{"error": {Code: st.Code().String(), Message: st.Message()}})
		return
	}
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "sdsclient: "+format+"\n", args...)
	os.Exit(1)
}

func emit(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		fail("json: %v", err)
	}
	fmt.Println(string(b))
}

func splitNames(s string) []string {
	if s == "" || s == "-" {
		return nil
	}
	return strings.Split(s, ",")
}

func buildNode(disable, version string) (*core.Node, error) {
	node := &core.Node{Id: "sdsclient", Cluster: "conformance"}
	if disable != "" {
		m, err := structpb.NewStruct(map[string]any{"disable_spiffe_cert_validation": disable})
		if err != nil {
			return nil, err
		}
		node.Metadata = m
	}
	if version != "" {
		var major, minor uint32
		if _, err := fmt.Sscanf(version, "%d.%d", &major, &minor); err != nil {
			return nil, fmt.Errorf("-envoy-version %q: %v", version, err)
		}
		node.UserAgentName = "envoy"
		node.UserAgentVersionType = &core.Node_UserAgentBuildVersion{
			UserAgentBuildVersion: &core.BuildVersion{
				Version: &envoytype.SemanticVersion{MajorNumber: major, MinorNumber: minor},
			},
		}
	}
	return node, nil
}

func fetch(ctx context.Context, client secret.SecretDiscoveryServiceClient, req *discovery.DiscoveryRequest) error {
	resp, err := client.FetchSecrets(ctx, req)
	if err != nil {
		return err
	}
	out, err := decode(resp)
	if err != nil {
		fail("%v", err)
	}
	emit(out)
	return nil
}

func hasName(out *responseJSON, name string) bool {
	for _, r := range out.Resources {
		if r.Name == name {
			return true
		}
	}
	return false
}

func stream(ctx context.Context, client secret.SecretDiscoveryServiceClient, req *discovery.DiscoveryRequest, thenNames, waitFor string) error {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s, err := client.StreamSecrets(sctx)
	if err != nil {
		return err
	}
	if err := s.Send(req); err != nil {
		return err
	}
	names := req.ResourceNames
	recvAck := func() (*responseJSON, error) {
		resp, err := s.Recv()
		if err != nil {
			return nil, err
		}
		out, err := decode(resp)
		if err != nil {
			fail("%v", err)
		}
		emit(out)
		// ACK: the version and nonce just applied, the same names, no node.
		return out, s.Send(&discovery.DiscoveryRequest{
			VersionInfo:   resp.VersionInfo,
			ResponseNonce: resp.Nonce,
			TypeUrl:       secretType,
			ResourceNames: names,
		})
	}
	out, err := recvAck()
	if err != nil {
		return err
	}
	if thenNames != "" {
		// New names in a request answering the last response: SPIRE answers it at once.
		names = splitNames(thenNames)
		if err := s.Send(&discovery.DiscoveryRequest{
			VersionInfo:   lastVersion,
			ResponseNonce: lastNonce,
			TypeUrl:       secretType,
			ResourceNames: names,
		}); err != nil {
			return err
		}
		if out, err = recvAck(); err != nil {
			return err
		}
	}
	for waitFor != "" && !hasName(out, waitFor) {
		if out, err = recvAck(); err != nil {
			return err
		}
	}
	return nil
}

// lastNonce and lastVersion are those of the last response decoded.
var lastNonce, lastVersion string

func delta(ctx context.Context, client secret.SecretDiscoveryServiceClient, req *discovery.DiscoveryRequest) error {
	s, err := client.DeltaSecrets(ctx)
	if err != nil {
		return err
	}
	if err := s.Send(&discovery.DeltaDiscoveryRequest{
		Node:                   req.Node,
		TypeUrl:                req.TypeUrl,
		ResourceNamesSubscribe: req.ResourceNames,
	}); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	resp, err := s.Recv()
	if err != nil {
		return err
	}
	emit(map[string]any{"delta_resources": len(resp.Resources)})
	return nil
}

func decode(resp *discovery.DiscoveryResponse) (*responseJSON, error) {
	lastNonce, lastVersion = resp.Nonce, resp.VersionInfo
	out := &responseJSON{
		VersionInfo: resp.VersionInfo,
		NonceLen:    len(resp.Nonce),
		TypeURL:     resp.TypeUrl,
		Resources:   []resourceJSON{},
	}
	for _, a := range resp.Resources {
		if a.TypeUrl != secretType {
			return nil, fmt.Errorf("resource of type %q", a.TypeUrl)
		}
		var sec tls.Secret
		if err := a.UnmarshalTo(&sec); err != nil {
			return nil, fmt.Errorf("secret: %v", err)
		}
		r := resourceJSON{Name: sec.Name}
		switch t := sec.Type.(type) {
		case *tls.Secret_TlsCertificate:
			r.Type = "tls_certificate"
			chainPEM := t.TlsCertificate.GetCertificateChain().GetInlineBytes()
			chain, certs, err := certsOf(chainPEM)
			if err != nil {
				return nil, fmt.Errorf("%s: certificate_chain: %v", sec.Name, err)
			}
			r.CertificateChain = chain
			keyPEM := t.TlsCertificate.GetPrivateKey().GetInlineBytes()
			block, _ := pem.Decode(keyPEM)
			if block == nil {
				return nil, fmt.Errorf("%s: private_key is not PEM", sec.Name)
			}
			r.PrivateKeyPEM = block.Type
			key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("%s: private_key: %v", sec.Name, err)
			}
			if signer, ok := key.(crypto.Signer); ok && len(certs) > 0 {
				if pub, ok := signer.Public().(interface{ Equal(crypto.PublicKey) bool }); ok {
					r.KeyMatchesLeaf = pub.Equal(certs[0].PublicKey)
				}
			}
		case *tls.Secret_ValidationContext:
			r.Type = "validation_context"
			vc := t.ValidationContext
			if ca := vc.GetTrustedCa(); ca != nil {
				certs, _, err := certsOf(ca.GetInlineBytes())
				if err != nil {
					return nil, fmt.Errorf("%s: trusted_ca: %v", sec.Name, err)
				}
				r.TrustedCA = certs
			}
			if cv := vc.GetCustomValidatorConfig(); cv != nil {
				v := &validatorJSON{Name: cv.Name, TypeURL: cv.GetTypedConfig().GetTypeUrl(), TrustDomains: []trustDomainJSON{}}
				var conf tls.SPIFFECertValidatorConfig
				if err := cv.GetTypedConfig().UnmarshalTo(&conf); err != nil {
					return nil, fmt.Errorf("%s: validator config: %v", sec.Name, err)
				}
				for _, td := range conf.TrustDomains {
					certs, _, err := certsOf(td.GetTrustBundle().GetInlineBytes())
					if err != nil {
						return nil, fmt.Errorf("%s: %s: %v", sec.Name, td.Name, err)
					}
					v.TrustDomains = append(v.TrustDomains, trustDomainJSON{Name: td.Name, Certs: certs})
				}
				r.CustomValidator = v
			}
		default:
			r.Type = fmt.Sprintf("%T", t)
		}
		out.Resources = append(out.Resources, r)
	}
	return out, nil
}

func certsOf(pemBytes []byte) ([]certJSON, []*x509.Certificate, error) {
	out := []certJSON{}
	var parsed []*x509.Certificate
	for rest := pemBytes; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			if len(strings.TrimSpace(string(rest))) > 0 {
				return nil, nil, errors.New("trailing data after PEM blocks")
			}
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, nil, fmt.Errorf("PEM block %q", block.Type)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, nil, err
		}
		parsed = append(parsed, c)
		uris := []string{}
		for _, u := range c.URIs {
			uris = append(uris, u.String())
		}
		out = append(out, certJSON{Subject: c.Subject.String(), URIs: uris, IsCA: c.IsCA})
	}
	if len(out) == 0 {
		return nil, nil, errors.New("no certificate")
	}
	return out, parsed, nil
}
