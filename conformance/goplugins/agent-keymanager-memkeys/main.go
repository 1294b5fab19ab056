// memkeys (agent): an agent KeyManager built on SPIRE's plugin SDK for spire-rs's tests,
// the same key store as the server one (internal/memkeys) behind the agent's service.
// Configuration: none.
package main

import (
	"context"

	"github.com/spiffe/spire-plugin-sdk/pluginmain"
	agentkm "github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/agent/keymanager/v1"
	serverkm "github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/server/keymanager/v1"
	configv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/service/common/config/v1"
	"google.golang.org/protobuf/proto"

	"spire-rs/conformance/goplugins/internal/memkeys"
)

type Plugin struct {
	agentkm.UnimplementedKeyManagerServer
	configv1.UnimplementedConfigServer
	store memkeys.Plugin
}

// convert re-reads a message as another with the same fields (the agent and server
// KeyManager messages are identical on the wire).
func convert(from, to proto.Message) error {
	b, err := proto.Marshal(from)
	if err != nil {
		return err
	}
	return proto.Unmarshal(b, to)
}

func call[Req, SReq, SResp, Resp proto.Message](req Req, sreq SReq, f func(SReq) (SResp, error), resp Resp) (Resp, error) {
	var zero Resp
	if err := convert(req, sreq); err != nil {
		return zero, err
	}
	out, err := f(sreq)
	if err != nil {
		return zero, err
	}
	if err := convert(out, resp); err != nil {
		return zero, err
	}
	return resp, nil
}

func (p *Plugin) GenerateKey(ctx context.Context, req *agentkm.GenerateKeyRequest) (*agentkm.GenerateKeyResponse, error) {
	return call(req, new(serverkm.GenerateKeyRequest), func(r *serverkm.GenerateKeyRequest) (*serverkm.GenerateKeyResponse, error) {
		return p.store.GenerateKey(ctx, r)
	}, new(agentkm.GenerateKeyResponse))
}

func (p *Plugin) GetPublicKey(ctx context.Context, req *agentkm.GetPublicKeyRequest) (*agentkm.GetPublicKeyResponse, error) {
	return call(req, new(serverkm.GetPublicKeyRequest), func(r *serverkm.GetPublicKeyRequest) (*serverkm.GetPublicKeyResponse, error) {
		return p.store.GetPublicKey(ctx, r)
	}, new(agentkm.GetPublicKeyResponse))
}

func (p *Plugin) GetPublicKeys(ctx context.Context, req *agentkm.GetPublicKeysRequest) (*agentkm.GetPublicKeysResponse, error) {
	return call(req, new(serverkm.GetPublicKeysRequest), func(r *serverkm.GetPublicKeysRequest) (*serverkm.GetPublicKeysResponse, error) {
		return p.store.GetPublicKeys(ctx, r)
	}, new(agentkm.GetPublicKeysResponse))
}

func (p *Plugin) SignData(ctx context.Context, req *agentkm.SignDataRequest) (*agentkm.SignDataResponse, error) {
	return call(req, new(serverkm.SignDataRequest), func(r *serverkm.SignDataRequest) (*serverkm.SignDataResponse, error) {
		return p.store.SignData(ctx, r)
	}, new(agentkm.SignDataResponse))
}

func (p *Plugin) Configure(ctx context.Context, req *configv1.ConfigureRequest) (*configv1.ConfigureResponse, error) {
	return &configv1.ConfigureResponse{}, nil
}

func main() {
	plugin := new(Plugin)
	pluginmain.Serve(
		agentkm.KeyManagerPluginServer(plugin),
		configv1.ConfigServiceServer(plugin),
	)
}
