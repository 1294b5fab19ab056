// Command protodump prints the wire facts (messages, fields, enums, RPCs) of the
// reference protobuf packages that spire-rs re-implements, in the line format
// pinned by crates/spire-proto/tests/golden/wire.txt.
//
// It reads the descriptors that the upstream Go modules register at init time,
// so the golden file is produced independently of our hand-written .proto files.
package main

import (
	"bufio"
	"fmt"
	"os"
	"sort"
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"

	// SPIFFE Workload API (no package).
	_ "github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"

	// SPIRE API SDK.
	_ "github.com/spiffe/spire-api-sdk/proto/spire/api/agent/debug/v1"
	_ "github.com/spiffe/spire-api-sdk/proto/spire/api/agent/delegatedidentity/v1"
	_ "github.com/spiffe/spire-api-sdk/proto/spire/api/agent/logger/v1"
	_ "github.com/spiffe/spire-api-sdk/proto/spire/api/server/agent/v1"
	_ "github.com/spiffe/spire-api-sdk/proto/spire/api/server/bundle/v1"
	_ "github.com/spiffe/spire-api-sdk/proto/spire/api/server/debug/v1"
	_ "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
	_ "github.com/spiffe/spire-api-sdk/proto/spire/api/server/localauthority/v1"
	_ "github.com/spiffe/spire-api-sdk/proto/spire/api/server/logger/v1"
	_ "github.com/spiffe/spire-api-sdk/proto/spire/api/server/svid/v1"
	_ "github.com/spiffe/spire-api-sdk/proto/spire/api/server/trustdomain/v1"
	_ "github.com/spiffe/spire-api-sdk/proto/spire/api/types"

	// SPIRE private protos stored in the datastore.
	_ "github.com/spiffe/spire/proto/private/server/journal"
	_ "github.com/spiffe/spire/proto/spire/common"

	// SPIRE plugin SDK: plugins, host services, common services.
	_ "github.com/spiffe/spire-plugin-sdk/private" // registers spire.service.private.init.v1
	_ "github.com/spiffe/spire-plugin-sdk/proto/spire/hostservice/common/metrics/v1"
	_ "github.com/spiffe/spire-plugin-sdk/proto/spire/hostservice/server/agentstore/v1"
	_ "github.com/spiffe/spire-plugin-sdk/proto/spire/hostservice/server/identityprovider/v1"
	_ "github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/agent/keymanager/v1"
	_ "github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/agent/nodeattestor/v1"
	_ "github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/agent/svidstore/v1"
	_ "github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/agent/workloadattestor/v1"
	_ "github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/server/bundlepublisher/v1"
	_ "github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/server/credentialcomposer/v1"
	_ "github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/server/keymanager/v1"
	_ "github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/server/nodeattestor/v1"
	_ "github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/server/notifier/v1"
	_ "github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/server/upstreamauthority/v1"
	_ "github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/types"
	_ "github.com/spiffe/spire-plugin-sdk/proto/spire/service/common/config/v1"

	// gRPC health and the go-plugin broker/controller/stdio services.
	_ "github.com/hashicorp/go-plugin"
	_ "google.golang.org/grpc/health/grpc_health_v1"
)

// wanted reports whether a registered file belongs to the set spire-rs implements.
func wanted(fd protoreflect.FileDescriptor) bool {
	switch fd.Path() {
	case "workload.proto", "private/server/journal/journal.proto":
		return true
	}
	pkg := string(fd.Package())
	switch {
	case pkg == "grpc.health.v1", pkg == "plugin", pkg == "spire.common":
		return true
	case strings.HasPrefix(pkg, "spire.api."), strings.HasPrefix(pkg, "spire.agent."):
		return true
	case strings.HasPrefix(pkg, "spire.plugin."), strings.HasPrefix(pkg, "spire.hostservice."):
		return true
	case strings.HasPrefix(pkg, "spire.service."):
		return true
	}
	return false
}

func typeName(fd protoreflect.FieldDescriptor) string {
	switch fd.Kind() {
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return string(fd.Message().FullName())
	case protoreflect.EnumKind:
		return string(fd.Enum().FullName())
	default:
		return fd.Kind().String()
	}
}

func fieldLine(msg protoreflect.MessageDescriptor, fd protoreflect.FieldDescriptor) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s %d %s", msg.FullName(), fd.Name(), fd.Number(), typeName(fd))
	switch {
	case fd.IsMap():
		fmt.Fprintf(&b, " map<%s,%s>", typeName(fd.MapKey()), typeName(fd.MapValue()))
	case fd.IsList():
		b.WriteString(" repeated")
	case fd.HasOptionalKeyword():
		b.WriteString(" optional")
	}
	if oo := fd.ContainingOneof(); oo != nil && !oo.IsSynthetic() {
		fmt.Fprintf(&b, " oneof=%s", oo.Name())
	}
	if opts, ok := fd.Options().(*descriptorpb.FieldOptions); ok && opts.GetDeprecated() {
		b.WriteString(" deprecated")
	}
	return b.String()
}

func walkEnum(ed protoreflect.EnumDescriptor, out *[]string) {
	vals := ed.Values()
	for i := 0; i < vals.Len(); i++ {
		v := vals.Get(i)
		*out = append(*out, fmt.Sprintf("enum %s %s %d", ed.FullName(), v.Name(), v.Number()))
	}
}

func walkMessage(md protoreflect.MessageDescriptor, out *[]string) {
	if md.IsMapEntry() {
		return
	}
	*out = append(*out, fmt.Sprintf("message %s", md.FullName()))
	fields := md.Fields()
	for i := 0; i < fields.Len(); i++ {
		*out = append(*out, fieldLine(md, fields.Get(i)))
	}
	for i := 0; i < md.Enums().Len(); i++ {
		walkEnum(md.Enums().Get(i), out)
	}
	for i := 0; i < md.Messages().Len(); i++ {
		walkMessage(md.Messages().Get(i), out)
	}
}

func main() {
	var lines []string
	var files []string
	protoregistry.GlobalFiles.RangeFiles(func(fd protoreflect.FileDescriptor) bool {
		if !wanted(fd) {
			return true
		}
		files = append(files, fd.Path())
		lines = append(lines, fmt.Sprintf("package %q %s", fd.Package(), fd.Syntax()))
		for i := 0; i < fd.Enums().Len(); i++ {
			walkEnum(fd.Enums().Get(i), &lines)
		}
		for i := 0; i < fd.Messages().Len(); i++ {
			walkMessage(fd.Messages().Get(i), &lines)
		}
		for i := 0; i < fd.Services().Len(); i++ {
			sd := fd.Services().Get(i)
			for j := 0; j < sd.Methods().Len(); j++ {
				m := sd.Methods().Get(j)
				line := fmt.Sprintf("rpc /%s/%s %s %s", sd.FullName(), m.Name(), m.Input().FullName(), m.Output().FullName())
				if m.IsStreamingClient() {
					line += " client_streaming"
				}
				if m.IsStreamingServer() {
					line += " server_streaming"
				}
				lines = append(lines, line)
			}
		}
		return true
	})

	sort.Strings(files)
	for _, f := range files {
		fmt.Fprintf(os.Stderr, "protodump: %s\n", f)
	}

	sort.Strings(lines)
	w := bufio.NewWriter(os.Stdout)
	fmt.Fprintln(w, "# Wire facts of the reference protos, one per line, sorted. Generated by")
	fmt.Fprintln(w, "# conformance/protodump (go run .); do not edit by hand. See check.sh.")
	prev := ""
	for _, l := range lines {
		if l == prev {
			continue // one "package" line per package
		}
		prev = l
		fmt.Fprintln(w, l)
	}
	if err := w.Flush(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
