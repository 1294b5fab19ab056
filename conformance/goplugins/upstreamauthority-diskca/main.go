// diskca: a server UpstreamAuthority built on SPIRE's plugin SDK for spire-rs's tests. It
// signs the server's intermediate CA with a CA certificate and key read from disk (the tests
// generate them), and optionally keeps the JWT keys the server publishes.
//
// Configuration: `cert_file_path` (required: PEM file with exactly one CERTIFICATE, a CA:
// basic constraints with CA true, and certificate signing allowed when it has a key usage),
// `key_file_path` (required: PEM private key, PKCS#8 "PRIVATE KEY", "EC PRIVATE KEY" or
// "RSA PRIVATE KEY", matching the certificate), `publish_jwt_key` (optional bool). Configure
// loads and checks both files and fails with InvalidArgument saying what is wrong. Unknown
// keys are refused.
//
// MintX509CAAndSubscribe: parses the CSR (DER PKCS#10) and checks its signature; its URI
// SANs must be exactly one SPIFFE trust domain ID (spiffe://<td>, the configured trust
// domain when the host gave one), else InvalidArgument. It signs a CA certificate: the
// CSR's subject and URI SAN, basic constraints CA true, key usage CertSign|CRLSign|
// DigitalSignature, a random 128-bit serial, valid from now-10s to now+preferred_ttl
// seconds (1h when 0) but not past the upstream certificate, subject key ID the SHA-1 of
// the subjectPublicKey bits (RFC 5280 method 1, as SPIRE; set explicitly because newer Go
// defaults to truncated SHA-256), authority key ID the upstream certificate's subject key
// ID. It sends one response (X509CaChain = [the new certificate], UpstreamX509Roots = [the
// upstream certificate]) and keeps the stream open until the host closes it.
//
// PublishJWTKeyAndSubscribe: Unimplemented "publishing JWT keys is not supported" unless
// publish_jwt_key is set; then the key is added to an in-memory list (a key with the same
// key ID replaces the earlier one), the whole list is sent once, and the stream stays open
// until the host closes it.
//
// With `later_root_file_path` (a PEM certificate), MintX509CAAndSubscribe sends a second
// answer `later_after_seconds` (default 1) after the first, on the same stream: the upstream
// roots are then the upstream certificate and that one (an upstream root rotation, as a
// host sees it).
//
// SubscribeToLocalBundle: Unimplemented (as SPIRE's disk plugin; SPIRE then stops asking),
// unless `local_bundle_root_file_path` (a PEM certificate) is set: then one answer with the
// upstream roots (the upstream certificate and that one) and the JWT keys published so
// far, and the stream stays open until the host closes it.
// Every RPC fails with FailedPrecondition "not configured" before Configure.
package main

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"sync"
	"time"

	"github.com/spiffe/spire-plugin-sdk/pluginmain"
	upstreamauthorityv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/server/upstreamauthority/v1"
	"github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/types"
	configv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/service/common/config/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"spire-rs/conformance/goplugins/internal/pluginconf"
)

const (
	backdate   = 10 * time.Second
	defaultTTL = time.Hour
)

type Config struct {
	CertFilePath      string `hcl:"cert_file_path"`
	KeyFilePath       string `hcl:"key_file_path"`
	PublishJWTKey     bool   `hcl:"publish_jwt_key"`
	LaterRootFilePath string `hcl:"later_root_file_path"`
	LaterAfterSeconds int    `hcl:"later_after_seconds"`

	LocalBundleRootFilePath string `hcl:"local_bundle_root_file_path"`
}

// state is what Configure loaded; it is replaced whole on reconfiguration.
type state struct {
	config      *Config
	trustDomain string
	cert        *x509.Certificate
	signer      crypto.Signer
	laterRoot   *x509.Certificate
	localRoot   *x509.Certificate
}

type Plugin struct {
	upstreamauthorityv1.UnimplementedUpstreamAuthorityServer
	configv1.UnimplementedConfigServer

	mtx   sync.RWMutex
	state *state

	jwtMtx  sync.Mutex
	jwtKeys []*types.JWTKey
}

func (p *Plugin) getState() (*state, error) {
	p.mtx.RLock()
	defer p.mtx.RUnlock()
	if p.state == nil {
		return nil, status.Error(codes.FailedPrecondition, "not configured")
	}
	return p.state, nil
}

func (p *Plugin) MintX509CAAndSubscribe(req *upstreamauthorityv1.MintX509CARequest, stream upstreamauthorityv1.UpstreamAuthority_MintX509CAAndSubscribeServer) error {
	s, err := p.getState()
	if err != nil {
		return err
	}
	csr, err := x509.ParseCertificateRequest(req.Csr)
	if err != nil {
		return status.Errorf(codes.InvalidArgument, "unable to parse CSR: %v", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return status.Errorf(codes.InvalidArgument, "CSR signature check failed: %v", err)
	}
	if len(csr.URIs) != 1 {
		return status.Errorf(codes.InvalidArgument, "CSR must have exactly one URI SAN, has %d", len(csr.URIs))
	}
	id := csr.URIs[0]
	if id.Scheme != "spiffe" || !validTrustDomain(id.Host) || id.String() != "spiffe://"+id.Host {
		return status.Errorf(codes.InvalidArgument, "CSR URI SAN %q is not a SPIFFE trust domain ID", id)
	}
	if s.trustDomain != "" && id.Host != s.trustDomain {
		return status.Errorf(codes.InvalidArgument, "CSR URI SAN %q is not the ID of trust domain %q", id, s.trustDomain)
	}
	skid, err := subjectKeyID(csr.RawSubjectPublicKeyInfo)
	if err != nil {
		return status.Errorf(codes.InvalidArgument, "CSR has a malformed public key: %v", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return status.Errorf(codes.Internal, "unable to generate a serial number: %v", err)
	}
	ttl := defaultTTL
	if req.PreferredTtl > 0 {
		ttl = time.Duration(req.PreferredTtl) * time.Second
	}
	now := time.Now()
	notBefore, notAfter := now.Add(-backdate), now.Add(ttl)
	if notAfter.After(s.cert.NotAfter) {
		notAfter = s.cert.NotAfter
	}
	if !notAfter.After(now) {
		return status.Errorf(codes.FailedPrecondition, "the upstream CA certificate expired at %s", s.cert.NotAfter.UTC().Format(time.RFC3339))
	}
	template := &x509.Certificate{
		SerialNumber:          serial,
		RawSubject:            csr.RawSubject,
		URIs:                  csr.URIs,
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		SubjectKeyId:          skid,
		AuthorityKeyId:        s.cert.SubjectKeyId,
	}
	der, err := x509.CreateCertificate(rand.Reader, template, s.cert, csr.PublicKey, s.signer)
	if err != nil {
		return status.Errorf(codes.Internal, "unable to sign the CA certificate: %v", err)
	}
	if err := stream.Send(&upstreamauthorityv1.MintX509CAResponse{
		X509CaChain:       []*types.X509Certificate{{Asn1: der}},
		UpstreamX509Roots: []*types.X509Certificate{{Asn1: s.cert.Raw}},
	}); err != nil {
		return err
	}
	if s.laterRoot != nil {
		wait := time.Duration(s.config.LaterAfterSeconds) * time.Second
		if wait <= 0 {
			wait = time.Second
		}
		select {
		case <-time.After(wait):
			if err := stream.Send(&upstreamauthorityv1.MintX509CAResponse{
				UpstreamX509Roots: []*types.X509Certificate{{Asn1: s.cert.Raw}, {Asn1: s.laterRoot.Raw}},
			}); err != nil {
				return err
			}
		case <-stream.Context().Done():
			return nil
		}
	}
	<-stream.Context().Done()
	return nil
}

func (p *Plugin) PublishJWTKeyAndSubscribe(req *upstreamauthorityv1.PublishJWTKeyRequest, stream upstreamauthorityv1.UpstreamAuthority_PublishJWTKeyAndSubscribeServer) error {
	s, err := p.getState()
	if err != nil {
		return err
	}
	if !s.config.PublishJWTKey {
		return status.Error(codes.Unimplemented, "publishing JWT keys is not supported")
	}
	key := req.GetJwtKey()
	if key == nil {
		return status.Error(codes.InvalidArgument, "missing JWT key")
	}
	p.jwtMtx.Lock()
	replaced := false
	for i, known := range p.jwtKeys {
		if known.KeyId == key.KeyId {
			p.jwtKeys[i], replaced = key, true
		}
	}
	if !replaced {
		p.jwtKeys = append(p.jwtKeys, key)
	}
	keys := append([]*types.JWTKey(nil), p.jwtKeys...)
	p.jwtMtx.Unlock()
	if err := stream.Send(&upstreamauthorityv1.PublishJWTKeyResponse{UpstreamJwtKeys: keys}); err != nil {
		return err
	}
	<-stream.Context().Done()
	return nil
}

func (p *Plugin) SubscribeToLocalBundle(req *upstreamauthorityv1.SubscribeToLocalBundleRequest, stream upstreamauthorityv1.UpstreamAuthority_SubscribeToLocalBundleServer) error {
	s, err := p.getState()
	if err != nil {
		return err
	}
	if s.localRoot == nil {
		return status.Error(codes.Unimplemented, "fetching the upstream bundle is not supported")
	}
	p.jwtMtx.Lock()
	keys := append([]*types.JWTKey(nil), p.jwtKeys...)
	p.jwtMtx.Unlock()
	if err := stream.Send(&upstreamauthorityv1.SubscribeToLocalBundleResponse{
		UpstreamX509Roots: []*types.X509Certificate{{Asn1: s.cert.Raw}, {Asn1: s.localRoot.Raw}},
		UpstreamJwtKeys:   keys,
	}); err != nil {
		return err
	}
	<-stream.Context().Done()
	return nil
}

// validTrustDomain says whether name is a SPIFFE trust domain name: lower-case letters,
// digits, dots, dashes and underscores.
func validTrustDomain(name string) bool {
	if name == "" {
		return false
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// subjectKeyID is the SHA-1 of the subjectPublicKey BIT STRING of a SubjectPublicKeyInfo.
func subjectKeyID(spki []byte) ([]byte, error) {
	var info struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	rest, err := asn1.Unmarshal(spki, &info)
	if err != nil {
		return nil, err
	}
	if len(rest) != 0 {
		return nil, errors.New("trailing data after the public key")
	}
	sum := sha1.Sum(info.PublicKey.Bytes)
	return sum[:], nil
}

// randomSerial is a random positive 128-bit integer.
func randomSerial() (*big.Int, error) {
	buf := make([]byte, 16)
	for {
		if _, err := rand.Read(buf); err != nil {
			return nil, err
		}
		if serial := new(big.Int).SetBytes(buf); serial.Sign() > 0 {
			return serial, nil
		}
	}
}

func loadCert(path string) (*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("unable to read cert_file_path: %w", err)
	}
	var certs []*x509.Certificate
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("unable to parse the certificate in cert_file_path %s: %w", path, err)
		}
		certs = append(certs, cert)
	}
	switch {
	case len(certs) == 0:
		return nil, fmt.Errorf("cert_file_path %s has no PEM CERTIFICATE block", path)
	case len(certs) > 1:
		return nil, fmt.Errorf("cert_file_path %s has %d certificates; it must have exactly one", path, len(certs))
	}
	cert := certs[0]
	if !cert.BasicConstraintsValid || !cert.IsCA {
		return nil, fmt.Errorf("the certificate in cert_file_path %s is not a CA (basic constraints CA is not true)", path)
	}
	if cert.KeyUsage != 0 && cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("the certificate in cert_file_path %s does not allow certificate signing (key usage)", path)
	}
	if time.Now().After(cert.NotAfter) {
		return nil, fmt.Errorf("the certificate in cert_file_path %s expired at %s", path, cert.NotAfter.UTC().Format(time.RFC3339))
	}
	return cert, nil
}

func loadKey(path string) (crypto.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("unable to read key_file_path: %w", err)
	}
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, fmt.Errorf("key_file_path %s has no PEM \"PRIVATE KEY\", \"EC PRIVATE KEY\" or \"RSA PRIVATE KEY\" block", path)
		}
		var key any
		switch block.Type {
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(block.Bytes)
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		default:
			continue // e.g. the "EC PARAMETERS" block openssl writes first
		}
		if err != nil {
			return nil, fmt.Errorf("unable to parse the %s in key_file_path %s: %w", block.Type, path, err)
		}
		signer, ok := key.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("the key in key_file_path %s (%T) cannot sign", path, key)
		}
		return signer, nil
	}
}

func (p *Plugin) Configure(ctx context.Context, req *configv1.ConfigureRequest) (*configv1.ConfigureResponse, error) {
	config := new(Config)
	if err := pluginconf.Decode(req.HclConfiguration, config); err != nil {
		return nil, err
	}
	if config.CertFilePath == "" {
		return nil, status.Error(codes.InvalidArgument, "cert_file_path is required")
	}
	if config.KeyFilePath == "" {
		return nil, status.Error(codes.InvalidArgument, "key_file_path is required")
	}
	cert, err := loadCert(config.CertFilePath)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	signer, err := loadKey(config.KeyFilePath)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	pub, ok := signer.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(cert.PublicKey) {
		return nil, status.Errorf(codes.InvalidArgument, "the key in key_file_path %s does not match the certificate in cert_file_path %s", config.KeyFilePath, config.CertFilePath)
	}
	var laterRoot *x509.Certificate
	if config.LaterRootFilePath != "" {
		if laterRoot, err = loadCert(config.LaterRootFilePath); err != nil {
			return nil, status.Error(codes.InvalidArgument, err.Error())
		}
	}
	var localRoot *x509.Certificate
	if config.LocalBundleRootFilePath != "" {
		if localRoot, err = loadCert(config.LocalBundleRootFilePath); err != nil {
			return nil, status.Error(codes.InvalidArgument, err.Error())
		}
	}
	if config.LaterAfterSeconds < 0 {
		return nil, status.Error(codes.InvalidArgument, "later_after_seconds cannot be negative")
	}
	p.mtx.Lock()
	p.state = &state{
		config:      config,
		trustDomain: req.CoreConfiguration.GetTrustDomain(),
		cert:        cert,
		signer:      signer,
		laterRoot:   laterRoot,
		localRoot:   localRoot,
	}
	p.mtx.Unlock()
	return &configv1.ConfigureResponse{}, nil
}

func main() {
	plugin := new(Plugin)
	pluginmain.Serve(
		upstreamauthorityv1.UpstreamAuthorityPluginServer(plugin),
		configv1.ConfigServiceServer(plugin),
	)
}
