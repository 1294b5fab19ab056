// file: an agent SVIDStore built on SPIRE's plugin SDK for spire-rs's tests. It stores each
// X509-SVID the agent pushes as a JSON file, so a test can see what a host stores.
//
// Configuration: `dir` (required: an existing directory). Unknown keys are refused.
//
// The metadata are the values of the entry's selectors whose type is the plugin's name, each
// "key:value" (an item without a colon is refused with InvalidArgument, as SPIRE's
// svidstore.ParseMetadata does). The item "name:<n>" is required, once, and <n> must match
// ^[A-Za-z0-9._-]+$; otherwise InvalidArgument.
//
// PutX509SVID (InvalidArgument "missing SVID" without one) replaces dir/<n>.json atomically
// (a temporary file in dir, renamed over it; mode 0600) with the JSON object (keys in this
// order)
//
//	{"spiffe_id":"...","cert_chain":["<base64 DER>",...],"private_key":"<base64 PKCS#8 DER>",
//	 "bundle":["<base64 DER>",...],"expires_at":n,
//	 "federated_bundles":{"<trust domain>":["<base64 DER>",...],...},"metadata":["...",...]}
//
// federated_bundles: the request carries each trust domain's certificates as one byte
// string of concatenated DER certificates (SPIRE's x509util.DERFromCertificates); the plugin
// splits it into the certificates (InvalidArgument when it is not a sequence of DER values).
// Keys are the request's map keys, sorted.
//
// DeleteX509SVID removes dir/<n>.json, or fails with NotFound "no stored SVID named <n>"
// when there is none. Every RPC fails with FailedPrecondition "not configured" before
// Configure.
package main

import (
	"context"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"

	"github.com/spiffe/spire-plugin-sdk/pluginmain"
	svidstorev1 "github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/agent/svidstore/v1"
	configv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/service/common/config/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"spire-rs/conformance/goplugins/internal/atomicfile"
	"spire-rs/conformance/goplugins/internal/pluginconf"
)

var namePattern = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)

type Config struct {
	Dir string `hcl:"dir"`
}

// stored is a file's content; the field order is the JSON key order.
type stored struct {
	SpiffeID         string              `json:"spiffe_id"`
	CertChain        []string            `json:"cert_chain"`
	PrivateKey       string              `json:"private_key"`
	Bundle           []string            `json:"bundle"`
	ExpiresAt        int64               `json:"expires_at"`
	FederatedBundles map[string][]string `json:"federated_bundles"`
	Metadata         []string            `json:"metadata"`
}

type Plugin struct {
	svidstorev1.UnimplementedSVIDStoreServer
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

// storeName finds the "name:<n>" item of the metadata and checks <n>.
func storeName(metadata []string) (string, error) {
	var names []string
	for _, item := range metadata {
		key, value, ok := strings.Cut(item, ":")
		if !ok {
			return "", status.Errorf(codes.InvalidArgument, "metadata does not contain a colon: %q", item)
		}
		if key == "name" {
			names = append(names, value)
		}
	}
	switch {
	case len(names) == 0:
		return "", status.Error(codes.InvalidArgument, `metadata has no "name:<n>" item`)
	case len(names) > 1:
		return "", status.Errorf(codes.InvalidArgument, `metadata has %d "name:<n>" items; it must have one`, len(names))
	case !namePattern.MatchString(names[0]):
		return "", status.Errorf(codes.InvalidArgument, "name %q must match ^[A-Za-z0-9._-]+$", names[0])
	}
	return names[0], nil
}

func encodeAll(ders [][]byte) []string {
	out := make([]string, 0, len(ders))
	for _, der := range ders {
		out = append(out, base64.StdEncoding.EncodeToString(der))
	}
	return out
}

// splitDER splits concatenated DER values (certificates) without interpreting them.
func splitDER(data []byte) ([][]byte, error) {
	var out [][]byte
	for len(data) > 0 {
		var value asn1.RawValue
		rest, err := asn1.Unmarshal(data, &value)
		if err != nil {
			return nil, err
		}
		out = append(out, value.FullBytes)
		data = rest
	}
	return out, nil
}

func (p *Plugin) PutX509SVID(ctx context.Context, req *svidstorev1.PutX509SVIDRequest) (*svidstorev1.PutX509SVIDResponse, error) {
	config, err := p.getConfig()
	if err != nil {
		return nil, err
	}
	name, err := storeName(req.Metadata)
	if err != nil {
		return nil, err
	}
	svid := req.GetSvid()
	if svid == nil {
		return nil, status.Error(codes.InvalidArgument, "missing SVID")
	}
	out := stored{
		SpiffeID:         svid.SpiffeID,
		CertChain:        encodeAll(svid.CertChain),
		PrivateKey:       base64.StdEncoding.EncodeToString(svid.PrivateKey),
		Bundle:           encodeAll(svid.Bundle),
		ExpiresAt:        svid.ExpiresAt,
		FederatedBundles: make(map[string][]string, len(req.FederatedBundles)),
		Metadata:         append(make([]string, 0, len(req.Metadata)), req.Metadata...),
	}
	for td, data := range req.FederatedBundles {
		certs, err := splitDER(data)
		if err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "federated bundle %q is not a sequence of DER certificates: %v", td, err)
		}
		out.FederatedBundles[td] = encodeAll(certs)
	}
	data, err := json.Marshal(out)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "unable to encode the SVID: %v", err)
	}
	path := filepath.Join(config.Dir, name+".json")
	if err := atomicfile.Write(path, append(data, '\n'), 0o600); err != nil {
		return nil, status.Errorf(codes.Internal, "unable to write %s: %v", path, err)
	}
	return &svidstorev1.PutX509SVIDResponse{}, nil
}

func (p *Plugin) DeleteX509SVID(ctx context.Context, req *svidstorev1.DeleteX509SVIDRequest) (*svidstorev1.DeleteX509SVIDResponse, error) {
	config, err := p.getConfig()
	if err != nil {
		return nil, err
	}
	name, err := storeName(req.Metadata)
	if err != nil {
		return nil, err
	}
	path := filepath.Join(config.Dir, name+".json")
	switch err := os.Remove(path); {
	case errors.Is(err, fs.ErrNotExist):
		return nil, status.Errorf(codes.NotFound, "no stored SVID named %s", name)
	case err != nil:
		return nil, status.Errorf(codes.Internal, "unable to remove %s: %v", path, err)
	}
	return &svidstorev1.DeleteX509SVIDResponse{}, nil
}

func (p *Plugin) Configure(ctx context.Context, req *configv1.ConfigureRequest) (*configv1.ConfigureResponse, error) {
	config := new(Config)
	if err := pluginconf.Decode(req.HclConfiguration, config); err != nil {
		return nil, err
	}
	if config.Dir == "" {
		return nil, status.Error(codes.InvalidArgument, "dir is required")
	}
	info, err := os.Stat(config.Dir)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, fmt.Sprintf("dir %s must be an existing directory: %v", config.Dir, err))
	}
	if !info.IsDir() {
		return nil, status.Errorf(codes.InvalidArgument, "dir %s is not a directory", config.Dir)
	}
	p.mtx.Lock()
	p.config = config
	p.mtx.Unlock()
	return &configv1.ConfigureResponse{}, nil
}

func main() {
	plugin := new(Plugin)
	pluginmain.Serve(
		svidstorev1.SVIDStorePluginServer(plugin),
		configv1.ConfigServiceServer(plugin),
	)
}
