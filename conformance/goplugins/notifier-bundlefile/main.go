// bundlefile: a server Notifier built on SPIRE's plugin SDK for spire-rs's tests. It appends
// one line of JSON to a file for each bundle event, so a test can see which events a host
// sends, in which order, with which bundle.
//
// Configuration: `path` (required: the file lines are appended to, created 0600 if absent),
// `fail_loaded` (optional bool: NotifyAndAdvise(BundleLoaded) fails with Internal "bundle
// loaded is refused by configuration" and writes nothing), `record_identity` (optional
// bool: on each event the plugin asks the server's IdentityProvider host service for the
// server's X509 identity). Unknown keys are refused.
//
// Each line (one write call, keys in this order):
//
//	{"event":"loaded"|"updated","trust_domain":"...","x509_authorities":["<base64 DER>",...],
//	 "jwt_key_ids":["...",...],"refresh_hint":n,"sequence_number":n,"identity":"..."}
//
// "loaded" is NotifyAndAdvise with BundleLoaded, "updated" is Notify with BundleUpdated.
// "identity" is "" unless record_identity is set; then it is the URI SAN (SPIFFE ID) of the
// first certificate of the identity's chain, or "error: <error>" when the host service is
// missing or the call (or the parsing of its answer) fails. An event without a bundle fails
// with InvalidArgument "missing bundle"; an event type the plugin does not know gets an
// empty response. Every RPC fails with FailedPrecondition "not configured" before Configure.
package main

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/spiffe/spire-plugin-sdk/pluginmain"
	"github.com/spiffe/spire-plugin-sdk/pluginsdk"
	identityproviderv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/hostservice/server/identityprovider/v1"
	notifierv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/server/notifier/v1"
	"github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/types"
	configv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/service/common/config/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"spire-rs/conformance/goplugins/internal/pluginconf"
)

var _ pluginsdk.NeedsHostServices = (*Plugin)(nil)

type Config struct {
	Path           string `hcl:"path"`
	FailLoaded     bool   `hcl:"fail_loaded"`
	RecordIdentity bool   `hcl:"record_identity"`
}

// line is one line of the file; the field order is the JSON key order.
type line struct {
	Event           string   `json:"event"`
	TrustDomain     string   `json:"trust_domain"`
	X509Authorities []string `json:"x509_authorities"`
	JWTKeyIDs       []string `json:"jwt_key_ids"`
	RefreshHint     int64    `json:"refresh_hint"`
	SequenceNumber  uint64   `json:"sequence_number"`
	Identity        string   `json:"identity"`
}

type Plugin struct {
	notifierv1.UnimplementedNotifierServer
	configv1.UnimplementedConfigServer

	mtx    sync.RWMutex
	config *Config

	// writeMtx keeps the lines of concurrent events whole and in call order.
	writeMtx sync.Mutex

	identity identityproviderv1.IdentityProviderServiceClient
}

// BrokerHostServices asks for the IdentityProvider host service; only record_identity uses
// it, and a host without it only makes "identity" an error text.
func (p *Plugin) BrokerHostServices(broker pluginsdk.ServiceBroker) error {
	broker.BrokerClient(&p.identity)
	return nil
}

func (p *Plugin) getConfig() (*Config, error) {
	p.mtx.RLock()
	defer p.mtx.RUnlock()
	if p.config == nil {
		return nil, status.Error(codes.FailedPrecondition, "not configured")
	}
	return p.config, nil
}

func (p *Plugin) Notify(ctx context.Context, req *notifierv1.NotifyRequest) (*notifierv1.NotifyResponse, error) {
	config, err := p.getConfig()
	if err != nil {
		return nil, err
	}
	switch event := req.GetEvent().(type) {
	case *notifierv1.NotifyRequest_BundleUpdated:
		if err := p.record(ctx, config, "updated", event.BundleUpdated.GetBundle()); err != nil {
			return nil, err
		}
	}
	return &notifierv1.NotifyResponse{}, nil
}

func (p *Plugin) NotifyAndAdvise(ctx context.Context, req *notifierv1.NotifyAndAdviseRequest) (*notifierv1.NotifyAndAdviseResponse, error) {
	config, err := p.getConfig()
	if err != nil {
		return nil, err
	}
	switch event := req.GetEvent().(type) {
	case *notifierv1.NotifyAndAdviseRequest_BundleLoaded:
		if config.FailLoaded {
			return nil, status.Error(codes.Internal, "bundle loaded is refused by configuration")
		}
		if err := p.record(ctx, config, "loaded", event.BundleLoaded.GetBundle()); err != nil {
			return nil, err
		}
	}
	return &notifierv1.NotifyAndAdviseResponse{}, nil
}

// record appends the line for one event to the configured file.
func (p *Plugin) record(ctx context.Context, config *Config, event string, bundle *types.Bundle) error {
	if bundle == nil {
		return status.Error(codes.InvalidArgument, "missing bundle")
	}
	l := line{
		Event:           event,
		TrustDomain:     bundle.TrustDomain,
		X509Authorities: make([]string, 0, len(bundle.X509Authorities)),
		JWTKeyIDs:       make([]string, 0, len(bundle.JwtAuthorities)),
		RefreshHint:     bundle.RefreshHint,
		SequenceNumber:  bundle.SequenceNumber,
	}
	for _, authority := range bundle.X509Authorities {
		l.X509Authorities = append(l.X509Authorities, base64.StdEncoding.EncodeToString(authority.GetAsn1()))
	}
	for _, key := range bundle.JwtAuthorities {
		l.JWTKeyIDs = append(l.JWTKeyIDs, key.GetKeyId())
	}
	if config.RecordIdentity {
		id, err := p.serverID(ctx)
		if err != nil {
			l.Identity = "error: " + err.Error()
		} else {
			l.Identity = id
		}
	}
	data, err := json.Marshal(l)
	if err != nil {
		return status.Errorf(codes.Internal, "unable to encode the line: %v", err)
	}
	data = append(data, '\n')

	p.writeMtx.Lock()
	defer p.writeMtx.Unlock()
	f, err := os.OpenFile(config.Path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return status.Errorf(codes.Internal, "unable to open %s: %v", config.Path, err)
	}
	_, err = f.Write(data)
	if closeErr := f.Close(); err == nil {
		err = closeErr
	}
	if err != nil {
		return status.Errorf(codes.Internal, "unable to write to %s: %v", config.Path, err)
	}
	return nil
}

// serverID asks the host for the server's X509 identity and gives the URI SAN of its leaf.
func (p *Plugin) serverID(ctx context.Context) (string, error) {
	if !p.identity.IsInitialized() {
		return "", errors.New("the IdentityProvider host service is not available")
	}
	resp, err := p.identity.FetchX509Identity(ctx, &identityproviderv1.FetchX509IdentityRequest{})
	if err != nil {
		return "", err
	}
	chain := resp.GetIdentity().GetCertChain()
	if len(chain) == 0 {
		return "", errors.New("the identity has no certificate chain")
	}
	cert, err := x509.ParseCertificate(chain[0])
	if err != nil {
		return "", fmt.Errorf("unable to parse the identity's certificate: %w", err)
	}
	if len(cert.URIs) == 0 {
		return "", errors.New("the identity's certificate has no URI SAN")
	}
	return cert.URIs[0].String(), nil
}

func (p *Plugin) Configure(ctx context.Context, req *configv1.ConfigureRequest) (*configv1.ConfigureResponse, error) {
	config := new(Config)
	if err := pluginconf.Decode(req.HclConfiguration, config); err != nil {
		return nil, err
	}
	if config.Path == "" {
		return nil, status.Error(codes.InvalidArgument, "path is required")
	}
	p.mtx.Lock()
	p.config = config
	p.mtx.Unlock()
	return &configv1.ConfigureResponse{}, nil
}

func main() {
	plugin := new(Plugin)
	pluginmain.Serve(
		notifierv1.NotifierPluginServer(plugin),
		configv1.ConfigServiceServer(plugin),
	)
}
