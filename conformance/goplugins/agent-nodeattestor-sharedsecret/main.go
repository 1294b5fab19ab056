// sharedsecret (agent side): a NodeAttestor built on SPIRE's plugin SDK for spire-rs's tests.
// It sends {"node": <node_name>} as its payload and answers the server's challenge (a
// nonce) with hex(HMAC-SHA256(shared_secret, nonce)).
//
// Configuration: node_name = "...", shared_secret = "..." (both required).
package main

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"sync"

	"github.com/hashicorp/hcl"
	"github.com/spiffe/spire-plugin-sdk/pluginmain"
	nodeattestorv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/agent/nodeattestor/v1"
	configv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/service/common/config/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

type Config struct {
	NodeName     string `hcl:"node_name"`
	SharedSecret string `hcl:"shared_secret"`
}

type Plugin struct {
	nodeattestorv1.UnimplementedNodeAttestorServer
	configv1.UnimplementedConfigServer

	mtx    sync.RWMutex
	config *Config
}

func (p *Plugin) AidAttestation(stream nodeattestorv1.NodeAttestor_AidAttestationServer) error {
	p.mtx.RLock()
	config := p.config
	p.mtx.RUnlock()
	if config == nil {
		return status.Error(codes.FailedPrecondition, "not configured")
	}
	payload, err := json.Marshal(map[string]string{"node": config.NodeName})
	if err != nil {
		return status.Errorf(codes.Internal, "unable to marshal payload: %v", err)
	}
	if err := stream.Send(&nodeattestorv1.PayloadOrChallengeResponse{
		Data: &nodeattestorv1.PayloadOrChallengeResponse_Payload{Payload: payload},
	}); err != nil {
		return err
	}
	for {
		challenge, err := stream.Recv()
		if err != nil {
			// The host closes the stream once the server has finished.
			return nil
		}
		mac := hmac.New(sha256.New, []byte(config.SharedSecret))
		mac.Write(challenge.Challenge)
		if err := stream.Send(&nodeattestorv1.PayloadOrChallengeResponse{
			Data: &nodeattestorv1.PayloadOrChallengeResponse_ChallengeResponse{
				ChallengeResponse: []byte(hex.EncodeToString(mac.Sum(nil))),
			},
		}); err != nil {
			return err
		}
	}
}

func (p *Plugin) Configure(ctx context.Context, req *configv1.ConfigureRequest) (*configv1.ConfigureResponse, error) {
	config := new(Config)
	if err := hcl.Decode(config, req.HclConfiguration); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "failed to decode configuration: %v", err)
	}
	if config.NodeName == "" || config.SharedSecret == "" {
		return nil, status.Error(codes.InvalidArgument, "node_name and shared_secret are required")
	}
	p.mtx.Lock()
	p.config = config
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
