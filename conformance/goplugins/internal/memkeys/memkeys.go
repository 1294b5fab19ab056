// Package memkeys holds the keys of the memkeys test KeyManagers (server and agent) in the
// plugin process's memory (lost when it exits, as with the built-in `memory` KeyManager).
// SignData follows crypto.Signer: the host sends the digest and the hash (or PSS options);
// ECDSA signatures are ASN.1 DER. SignData calls are counted and logged at debug level.
// The methods take the server service's messages; the agent's carry the same fields.
package memkeys

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"sort"
	"sync"

	"github.com/hashicorp/go-hclog"
	"github.com/spiffe/spire-plugin-sdk/pluginsdk"
	keymanagerv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/server/keymanager/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

var _ pluginsdk.NeedsLogger = (*Plugin)(nil)

type key struct {
	signer crypto.Signer
	public *keymanagerv1.PublicKey
}

// Plugin is the key store; it serves the server KeyManager service as it is.
type Plugin struct {
	keymanagerv1.UnimplementedKeyManagerServer

	mtx    sync.RWMutex
	keys   map[string]*key
	signs  int
	logger hclog.Logger
}

func (p *Plugin) SetLogger(logger hclog.Logger) { p.logger = logger }

func generate(keyType keymanagerv1.KeyType) (crypto.Signer, error) {
	switch keyType {
	case keymanagerv1.KeyType_EC_P256:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case keymanagerv1.KeyType_EC_P384:
		return ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case keymanagerv1.KeyType_RSA_2048:
		return rsa.GenerateKey(rand.Reader, 2048)
	case keymanagerv1.KeyType_RSA_4096:
		return rsa.GenerateKey(rand.Reader, 4096)
	default:
		return nil, status.Errorf(codes.InvalidArgument, "unable to generate key %q for unknown key type %q", "", keyType)
	}
}

func (p *Plugin) GenerateKey(ctx context.Context, req *keymanagerv1.GenerateKeyRequest) (*keymanagerv1.GenerateKeyResponse, error) {
	if req.KeyId == "" {
		return nil, status.Error(codes.InvalidArgument, "key id is required")
	}
	signer, err := generate(req.KeyType)
	if err != nil {
		return nil, err
	}
	pkix, err := x509.MarshalPKIXPublicKey(signer.Public())
	if err != nil {
		return nil, status.Errorf(codes.Internal, "unable to marshal public key: %v", err)
	}
	sum := sha256.Sum256(pkix)
	public := &keymanagerv1.PublicKey{
		Id:          req.KeyId,
		Type:        req.KeyType,
		PkixData:    pkix,
		Fingerprint: hex.EncodeToString(sum[:]),
	}
	p.mtx.Lock()
	if p.keys == nil {
		p.keys = make(map[string]*key)
	}
	p.keys[req.KeyId] = &key{signer: signer, public: public}
	p.mtx.Unlock()
	return &keymanagerv1.GenerateKeyResponse{PublicKey: public}, nil
}

func (p *Plugin) GetPublicKey(ctx context.Context, req *keymanagerv1.GetPublicKeyRequest) (*keymanagerv1.GetPublicKeyResponse, error) {
	if req.KeyId == "" {
		return nil, status.Error(codes.InvalidArgument, "key id is required")
	}
	p.mtx.RLock()
	defer p.mtx.RUnlock()
	resp := new(keymanagerv1.GetPublicKeyResponse)
	if k, ok := p.keys[req.KeyId]; ok {
		resp.PublicKey = k.public
	}
	return resp, nil
}

func (p *Plugin) GetPublicKeys(ctx context.Context, req *keymanagerv1.GetPublicKeysRequest) (*keymanagerv1.GetPublicKeysResponse, error) {
	p.mtx.RLock()
	defer p.mtx.RUnlock()
	resp := new(keymanagerv1.GetPublicKeysResponse)
	for _, k := range p.keys {
		resp.PublicKeys = append(resp.PublicKeys, k.public)
	}
	sort.Slice(resp.PublicKeys, func(i, j int) bool { return resp.PublicKeys[i].Id < resp.PublicKeys[j].Id })
	return resp, nil
}

func hashOf(h keymanagerv1.HashAlgorithm) (crypto.Hash, error) {
	switch h {
	case keymanagerv1.HashAlgorithm_SHA256:
		return crypto.SHA256, nil
	case keymanagerv1.HashAlgorithm_SHA384:
		return crypto.SHA384, nil
	case keymanagerv1.HashAlgorithm_SHA512:
		return crypto.SHA512, nil
	default:
		return 0, status.Errorf(codes.InvalidArgument, "unsupported hash algorithm %q", h)
	}
}

func (p *Plugin) SignData(ctx context.Context, req *keymanagerv1.SignDataRequest) (*keymanagerv1.SignDataResponse, error) {
	if req.KeyId == "" {
		return nil, status.Error(codes.InvalidArgument, "key id is required")
	}
	var opts crypto.SignerOpts
	switch o := req.SignerOpts.(type) {
	case *keymanagerv1.SignDataRequest_HashAlgorithm:
		h, err := hashOf(o.HashAlgorithm)
		if err != nil {
			return nil, err
		}
		opts = h
	case *keymanagerv1.SignDataRequest_PssOptions:
		h, err := hashOf(o.PssOptions.HashAlgorithm)
		if err != nil {
			return nil, err
		}
		opts = &rsa.PSSOptions{SaltLength: int(o.PssOptions.SaltLength), Hash: h}
	default:
		return nil, status.Error(codes.InvalidArgument, "signer opts is required")
	}
	p.mtx.Lock()
	k, ok := p.keys[req.KeyId]
	p.signs++
	count := p.signs
	p.mtx.Unlock()
	if !ok {
		return nil, status.Errorf(codes.NotFound, "key %q not found", req.KeyId)
	}
	signature, err := k.signer.Sign(rand.Reader, req.Data, opts)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "keypair %q signing operation failed: %v", req.KeyId, err)
	}
	if p.logger != nil {
		p.logger.Debug("Signed data", "key_id", req.KeyId, "count", count)
	}
	return &keymanagerv1.SignDataResponse{Signature: signature, KeyFingerprint: k.public.Fingerprint}, nil
}
