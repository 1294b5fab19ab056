// pidinfo: a WorkloadAttestor built on SPIRE's plugin SDK, used by spire-rs's tests to check
// that the same external plugin gives the same selectors in reference SPIRE and in spire-rs.
//
// Selectors (values; the type is the plugin's name in the config): "uid:<real uid>",
// "gid:<real gid>" and "comm:<name>" from /proc/<pid>/status, plus "tag:<tag>" when the
// configuration sets `tag`. Configuration: `tag = "..."` (optional), `fail_pid = <pid>`
// (optional: attesting that pid fails with PermissionDenied, for error-path tests).
package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strings"
	"sync"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/hcl"
	"github.com/spiffe/spire-plugin-sdk/pluginmain"
	"github.com/spiffe/spire-plugin-sdk/pluginsdk"
	workloadattestorv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/agent/workloadattestor/v1"
	configv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/service/common/config/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

var (
	_ pluginsdk.NeedsLogger       = (*Plugin)(nil)
	_ pluginsdk.NeedsHostServices = (*Plugin)(nil)
)

type Config struct {
	Tag     string `hcl:"tag"`
	FailPid int32  `hcl:"fail_pid"`
}

type Plugin struct {
	workloadattestorv1.UnimplementedWorkloadAttestorServer
	configv1.UnimplementedConfigServer

	mtx         sync.RWMutex
	config      *Config
	trustDomain string
	logger      hclog.Logger
}

func (p *Plugin) SetLogger(logger hclog.Logger) { p.logger = logger }

// BrokerHostServices makes the SDK dial the host's broker during Init, as the SDK's
// templates do, so the host's broker is exercised even though no host service is used.
func (p *Plugin) BrokerHostServices(pluginsdk.ServiceBroker) error { return nil }

func (p *Plugin) Attest(ctx context.Context, req *workloadattestorv1.AttestRequest) (*workloadattestorv1.AttestResponse, error) {
	p.mtx.RLock()
	config := p.config
	p.mtx.RUnlock()
	if config == nil {
		return nil, status.Error(codes.FailedPrecondition, "not configured")
	}
	if config.FailPid != 0 && req.Pid == config.FailPid {
		return nil, status.Errorf(codes.PermissionDenied, "pid %d is refused by configuration", req.Pid)
	}
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", req.Pid))
	if err != nil {
		return nil, status.Errorf(codes.Internal, "unable to read process status: %v", err)
	}
	defer f.Close()
	var values []string
	scanner := bufio.NewScanner(f)
	for scanner.Scan() {
		key, rest, ok := strings.Cut(scanner.Text(), ":")
		if !ok {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			continue
		}
		switch key {
		case "Name":
			values = append(values, "comm:"+fields[0])
		case "Uid":
			values = append(values, "uid:"+fields[0])
		case "Gid":
			values = append(values, "gid:"+fields[0])
		}
	}
	if config.Tag != "" {
		values = append(values, "tag:"+config.Tag)
	}
	if p.logger != nil {
		p.logger.Debug("Attested workload", "pid", req.Pid, "selectors", len(values))
	}
	return &workloadattestorv1.AttestResponse{SelectorValues: values}, nil
}

func (p *Plugin) Configure(ctx context.Context, req *configv1.ConfigureRequest) (*configv1.ConfigureResponse, error) {
	config := new(Config)
	if err := hcl.Decode(config, req.HclConfiguration); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "failed to decode configuration: %v", err)
	}
	if strings.ContainsAny(config.Tag, " \t\n") {
		return nil, status.Error(codes.InvalidArgument, "tag must not contain white space")
	}
	p.mtx.Lock()
	p.config = config
	p.trustDomain = req.CoreConfiguration.GetTrustDomain()
	p.mtx.Unlock()
	if p.logger != nil {
		p.logger.Info("Configured", "trust_domain", req.CoreConfiguration.GetTrustDomain(), "tag", config.Tag)
	}
	return &configv1.ConfigureResponse{}, nil
}

func main() {
	plugin := new(Plugin)
	pluginmain.Serve(
		workloadattestorv1.WorkloadAttestorPluginServer(plugin),
		configv1.ConfigServiceServer(plugin),
	)
}
