// sharedsecret (server side): a NodeAttestor built on SPIRE's plugin SDK for spire-rs's
// tests. It reads {"node": ...} from the payload, challenges the agent with a random nonce,
// checks hex(HMAC-SHA256(shared_secret, nonce)), and attests the agent as
// spiffe://<trust domain>/spire/agent/sharedsecret/<node> with the selector "node:<node>".
//
// Configuration: shared_secret = "..." (required); single_use = true refuses a node whose
// agent ID is already attested, asking the host's AgentStore service (as SPIRE's own
// single-use attestors do).
package main

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"sync"

	"github.com/hashicorp/hcl"
	"github.com/spiffe/spire-plugin-sdk/pluginmain"
	"github.com/spiffe/spire-plugin-sdk/pluginsdk"
	agentstorev1 "github.com/spiffe/spire-plugin-sdk/proto/spire/hostservice/server/agentstore/v1"
	nodeattestorv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/server/nodeattestor/v1"
	configv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/service/common/config/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

type Config struct {
	SharedSecret string `hcl:"shared_secret"`
	SingleUse    bool   `hcl:"single_use"`
}

var _ pluginsdk.NeedsHostServices = (*Plugin)(nil)

type Plugin struct {
	nodeattestorv1.UnimplementedNodeAttestorServer
	configv1.UnimplementedConfigServer

	mtx         sync.RWMutex
	config      *Config
	trustDomain string
	store       agentstorev1.AgentStoreServiceClient
}

func (p *Plugin) BrokerHostServices(broker pluginsdk.ServiceBroker) error {
	// Optional: only single_use needs it.
	broker.BrokerClient(&p.store)
	return nil
}

func (p *Plugin) Attest(stream nodeattestorv1.NodeAttestor_AttestServer) error {
	p.mtx.RLock()
	config, trustDomain := p.config, p.trustDomain
	p.mtx.RUnlock()
	if config == nil {
		return status.Error(codes.FailedPrecondition, "not configured")
	}
	req, err := stream.Recv()
	if err != nil {
		return err
	}
	var payload struct {
		Node string `json:"node"`
	}
	if err := json.Unmarshal(req.GetPayload(), &payload); err != nil || payload.Node == "" {
		return status.Error(codes.InvalidArgument, "malformed payload")
	}
	nonce := make([]byte, 32)
	if _, err := rand.Read(nonce); err != nil {
		return status.Errorf(codes.Internal, "unable to generate challenge: %v", err)
	}
	if err := stream.Send(&nodeattestorv1.AttestResponse{
		Response: &nodeattestorv1.AttestResponse_Challenge{Challenge: nonce},
	}); err != nil {
		return err
	}
	resp, err := stream.Recv()
	if err != nil {
		return err
	}
	mac := hmac.New(sha256.New, []byte(config.SharedSecret))
	mac.Write(nonce)
	want := []byte(hex.EncodeToString(mac.Sum(nil)))
	if !hmac.Equal(want, resp.GetChallengeResponse()) {
		return status.Error(codes.PermissionDenied, "challenge response does not match the shared secret")
	}
	agentID := "spiffe://" + trustDomain + "/spire/agent/sharedsecret/" + payload.Node
	if config.SingleUse {
		if !p.store.IsInitialized() {
			return status.Error(codes.FailedPrecondition, "the AgentStore host service is not available")
		}
		_, err := p.store.GetAgentInfo(stream.Context(), &agentstorev1.GetAgentInfoRequest{AgentId: agentID})
		switch status.Code(err) {
		case codes.OK:
			return status.Error(codes.PermissionDenied, "attestation data has already been used to attest an agent")
		case codes.NotFound:
		default:
			return status.Errorf(status.Code(err), "unable to get agent info: %s", status.Convert(err).Message())
		}
	}
	return stream.Send(&nodeattestorv1.AttestResponse{
		Response: &nodeattestorv1.AttestResponse_AgentAttributes{
			AgentAttributes: &nodeattestorv1.AgentAttributes{
				SpiffeId:       agentID,
				SelectorValues: []string{"node:" + payload.Node},
				CanReattest:    true,
			},
		},
	})
}

func (p *Plugin) Configure(ctx context.Context, req *configv1.ConfigureRequest) (*configv1.ConfigureResponse, error) {
	config := new(Config)
	if err := hcl.Decode(config, req.HclConfiguration); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "failed to decode configuration: %v", err)
	}
	if config.SharedSecret == "" {
		return nil, status.Error(codes.InvalidArgument, "shared_secret is required")
	}
	p.mtx.Lock()
	p.config = config
	p.trustDomain = req.CoreConfiguration.GetTrustDomain()
	p.mtx.Unlock()
	return &configv1.ConfigureResponse{}, nil
}

func main() {
	plugin := new(Plugin)
	pluginmain.Serve(
		nodeattestorv1.NodeAttestorPluginServer(plugin),
		configv1.ConfigServiceServer(plugin),
	)
}
