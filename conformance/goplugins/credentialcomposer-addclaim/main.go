// addclaim: a server CredentialComposer built on SPIRE's plugin SDK for spire-rs's tests, to
// check that a host applies what a composer returns (and keeps its defaults when told to).
//
// Configuration: `claim_name` (required), `claim_value` (required), `dns_name` (optional).
// Unknown keys are refused.
//
// Behaviour:
//   - ComposeWorkloadJWTSVID: sets the claim `claim_name` to the string `claim_value` in the
//     attributes' claims (creating the struct when absent; other claims are kept, a claim of
//     the same name is replaced).
//   - ComposeWorkloadX509SVID: appends `dns_name` to the attributes' DNS SANs when it is
//     set; otherwise returns the attributes unchanged.
//   - ComposeAgentX509SVID: appends the organizational unit "addclaim-agent" to the
//     attributes' subject (existing values are kept).
//   - ComposeServerX509CA, ComposeServerX509SVID: status Unimplemented, which SPIRE's
//     credentialcomposer client (pkg/server/plugin/credentialcomposer/v1.go, handle*Response)
//     treats as "apply the default attributes unchanged".
//
// Every RPC fails with FailedPrecondition "not configured" before Configure.
package main

import (
	"context"
	"sync"

	"github.com/spiffe/spire-plugin-sdk/pluginmain"
	credentialcomposerv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/server/credentialcomposer/v1"
	configv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/service/common/config/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"spire-rs/conformance/goplugins/internal/pluginconf"
)

// agentOU is the organizational unit ComposeAgentX509SVID adds.
const agentOU = "addclaim-agent"

type Config struct {
	ClaimName  string `hcl:"claim_name"`
	ClaimValue string `hcl:"claim_value"`
	DNSName    string `hcl:"dns_name"`
}

type Plugin struct {
	credentialcomposerv1.UnimplementedCredentialComposerServer
	configv1.UnimplementedConfigServer

	mtx    sync.RWMutex
	config *Config
}

func (p *Plugin) getConfig() (*Config, error) {
	p.mtx.RLock()
	defer p.mtx.RUnlock()
	if p.config == nil {
		return nil, status.Error(codes.FailedPrecondition, "not configured")
	}
	return p.config, nil
}

func (p *Plugin) ComposeServerX509CA(context.Context, *credentialcomposerv1.ComposeServerX509CARequest) (*credentialcomposerv1.ComposeServerX509CAResponse, error) {
	if _, err := p.getConfig(); err != nil {
		return nil, err
	}
	return nil, status.Error(codes.Unimplemented, "addclaim does not compose the server X509 CA")
}

func (p *Plugin) ComposeServerX509SVID(context.Context, *credentialcomposerv1.ComposeServerX509SVIDRequest) (*credentialcomposerv1.ComposeServerX509SVIDResponse, error) {
	if _, err := p.getConfig(); err != nil {
		return nil, err
	}
	return nil, status.Error(codes.Unimplemented, "addclaim does not compose the server X509-SVID")
}

func (p *Plugin) ComposeAgentX509SVID(ctx context.Context, req *credentialcomposerv1.ComposeAgentX509SVIDRequest) (*credentialcomposerv1.ComposeAgentX509SVIDResponse, error) {
	if _, err := p.getConfig(); err != nil {
		return nil, err
	}
	attributes := req.GetAttributes()
	if attributes == nil {
		attributes = &credentialcomposerv1.X509SVIDAttributes{}
	}
	if attributes.Subject == nil {
		attributes.Subject = &credentialcomposerv1.DistinguishedName{}
	}
	attributes.Subject.OrganizationalUnit = append(attributes.Subject.OrganizationalUnit, agentOU)
	return &credentialcomposerv1.ComposeAgentX509SVIDResponse{Attributes: attributes}, nil
}

func (p *Plugin) ComposeWorkloadX509SVID(ctx context.Context, req *credentialcomposerv1.ComposeWorkloadX509SVIDRequest) (*credentialcomposerv1.ComposeWorkloadX509SVIDResponse, error) {
	config, err := p.getConfig()
	if err != nil {
		return nil, err
	}
	attributes := req.GetAttributes()
	if config.DNSName != "" {
		if attributes == nil {
			attributes = &credentialcomposerv1.X509SVIDAttributes{Subject: &credentialcomposerv1.DistinguishedName{}}
		}
		attributes.DnsSans = append(attributes.DnsSans, config.DNSName)
	}
	return &credentialcomposerv1.ComposeWorkloadX509SVIDResponse{Attributes: attributes}, nil
}

func (p *Plugin) ComposeWorkloadJWTSVID(ctx context.Context, req *credentialcomposerv1.ComposeWorkloadJWTSVIDRequest) (*credentialcomposerv1.ComposeWorkloadJWTSVIDResponse, error) {
	config, err := p.getConfig()
	if err != nil {
		return nil, err
	}
	attributes := req.GetAttributes()
	if attributes == nil {
		attributes = &credentialcomposerv1.JWTSVIDAttributes{}
	}
	if attributes.Claims == nil {
		attributes.Claims = &structpb.Struct{}
	}
	if attributes.Claims.Fields == nil {
		attributes.Claims.Fields = make(map[string]*structpb.Value)
	}
	attributes.Claims.Fields[config.ClaimName] = structpb.NewStringValue(config.ClaimValue)
	return &credentialcomposerv1.ComposeWorkloadJWTSVIDResponse{Attributes: attributes}, nil
}

func (p *Plugin) Configure(ctx context.Context, req *configv1.ConfigureRequest) (*configv1.ConfigureResponse, error) {
	config := new(Config)
	if err := pluginconf.Decode(req.HclConfiguration, config); err != nil {
		return nil, err
	}
	if config.ClaimName == "" {
		return nil, status.Error(codes.InvalidArgument, "claim_name is required")
	}
	if config.ClaimValue == "" {
		return nil, status.Error(codes.InvalidArgument, "claim_value is required")
	}
	p.mtx.Lock()
	p.config = config
	p.mtx.Unlock()
	return &configv1.ConfigureResponse{}, nil
}

func main() {
	plugin := new(Plugin)
	pluginmain.Serve(
		credentialcomposerv1.CredentialComposerPluginServer(plugin),
		configv1.ConfigServiceServer(plugin),
	)
}
