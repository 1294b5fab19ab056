// file: a server BundlePublisher built on SPIRE's plugin SDK for spire-rs's tests. It writes
// the bundle it is given to a file, so a test can see what a host publishes and how often.
//
// Configuration: `path` (required: the file written). Unknown keys are refused.
//
// PublishBundle fails with InvalidArgument "missing bundle" without a bundle; otherwise it
// replaces `path` atomically (a temporary file in the same directory, renamed over it;
// mode 0644) with the JSON object (keys in this order)
//
//	{"trust_domain":"...","x509_authorities":["<base64 DER>",...],"jwt_key_ids":["...",...],
//	 "sequence_number":n,"publish_count":k}
//
// publish_count counts the PublishBundle calls with a bundle since the plugin started (1 for
// the first; it survives reconfiguration). A bundle identical to the last one is written
// again and counted: the host decides when to publish. Every RPC fails with
// FailedPrecondition "not configured" before Configure.
package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"sync"

	"github.com/spiffe/spire-plugin-sdk/pluginmain"
	bundlepublisherv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/server/bundlepublisher/v1"
	configv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/service/common/config/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"spire-rs/conformance/goplugins/internal/atomicfile"
	"spire-rs/conformance/goplugins/internal/pluginconf"
)

type Config struct {
	Path string `hcl:"path"`
}

// published is the file's content; the field order is the JSON key order.
type published struct {
	TrustDomain     string   `json:"trust_domain"`
	X509Authorities []string `json:"x509_authorities"`
	JWTKeyIDs       []string `json:"jwt_key_ids"`
	SequenceNumber  uint64   `json:"sequence_number"`
	PublishCount    uint64   `json:"publish_count"`
}

type Plugin struct {
	bundlepublisherv1.UnimplementedBundlePublisherServer
	configv1.UnimplementedConfigServer

	mtx    sync.RWMutex
	config *Config

	// publishMtx orders the writes with the count.
	publishMtx sync.Mutex
	count      uint64
}

func (p *Plugin) PublishBundle(ctx context.Context, req *bundlepublisherv1.PublishBundleRequest) (*bundlepublisherv1.PublishBundleResponse, error) {
	p.mtx.RLock()
	config := p.config
	p.mtx.RUnlock()
	if config == nil {
		return nil, status.Error(codes.FailedPrecondition, "not configured")
	}
	bundle := req.GetBundle()
	if bundle == nil {
		return nil, status.Error(codes.InvalidArgument, "missing bundle")
	}
	out := published{
		TrustDomain:     bundle.TrustDomain,
		X509Authorities: make([]string, 0, len(bundle.X509Authorities)),
		JWTKeyIDs:       make([]string, 0, len(bundle.JwtAuthorities)),
		SequenceNumber:  bundle.SequenceNumber,
	}
	for _, authority := range bundle.X509Authorities {
		out.X509Authorities = append(out.X509Authorities, base64.StdEncoding.EncodeToString(authority.GetAsn1()))
	}
	for _, key := range bundle.JwtAuthorities {
		out.JWTKeyIDs = append(out.JWTKeyIDs, key.GetKeyId())
	}

	p.publishMtx.Lock()
	defer p.publishMtx.Unlock()
	p.count++
	out.PublishCount = p.count
	data, err := json.Marshal(out)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "unable to encode the bundle: %v", err)
	}
	if err := atomicfile.Write(config.Path, append(data, '\n'), 0o644); err != nil {
		return nil, status.Errorf(codes.Internal, "unable to write %s: %v", config.Path, err)
	}
	return &bundlepublisherv1.PublishBundleResponse{}, nil
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
		bundlepublisherv1.BundlePublisherPluginServer(plugin),
		configv1.ConfigServiceServer(plugin),
	)
}
