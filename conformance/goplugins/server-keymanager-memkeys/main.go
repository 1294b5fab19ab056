// memkeys (server): a server KeyManager built on SPIRE's plugin SDK for spire-rs's tests;
// see internal/memkeys. Configuration: none.
package main

import (
	"context"

	"github.com/spiffe/spire-plugin-sdk/pluginmain"
	keymanagerv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/server/keymanager/v1"
	configv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/service/common/config/v1"

	"spire-rs/conformance/goplugins/internal/memkeys"
)

type Plugin struct {
	memkeys.Plugin
	configv1.UnimplementedConfigServer
}

func (p *Plugin) Configure(ctx context.Context, req *configv1.ConfigureRequest) (*configv1.ConfigureResponse, error) {
	return &configv1.ConfigureResponse{}, nil
}

func main() {
	plugin := new(Plugin)
	pluginmain.Serve(
		keymanagerv1.KeyManagerPluginServer(plugin),
		configv1.ConfigServiceServer(plugin),
	)
}
