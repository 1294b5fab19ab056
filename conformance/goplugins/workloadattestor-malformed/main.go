// malformed: a plugin for spire-rs's bad-input tests. It completes go-plugin's handshake and
// the SDK's init like any plugin, claims the WorkloadAttestor service, and answers Attest
// with a message of another type (an Int32Value: field 1 as a varint where AttestResponse
// has repeated strings), which a host must refuse as undecodable.
package main

import (
	"context"

	"github.com/spiffe/spire-plugin-sdk/pluginmain"
	workloadattestorv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/agent/workloadattestor/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

const serviceName = "spire.plugin.agent.workloadattestor.v1.WorkloadAttestor"

type malformed struct{}

func (malformed) Type() string            { return "WorkloadAttestor" }
func (malformed) GRPCServiceName() string { return serviceName }

func (m malformed) RegisterServer(s *grpc.Server) interface{} {
	s.RegisterService(&grpc.ServiceDesc{
		ServiceName: serviceName,
		HandlerType: (*interface{})(nil),
		Methods: []grpc.MethodDesc{{
			MethodName: "Attest",
			Handler: func(_ interface{}, ctx context.Context, dec func(interface{}) error, _ grpc.UnaryServerInterceptor) (interface{}, error) {
				in := new(workloadattestorv1.AttestRequest)
				if err := dec(in); err != nil {
					return nil, err
				}
				return wrapperspb.Int32(in.Pid), nil
			},
		}},
	}, m)
	return m
}

func main() {
	pluginmain.Serve(malformed{})
}
