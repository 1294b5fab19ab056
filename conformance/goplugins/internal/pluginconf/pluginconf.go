// Package pluginconf decodes the HCL configuration of the test plugins. Decode refuses, with
// gRPC status InvalidArgument, configuration that does not parse, that has a value of the
// wrong type, or that sets a top-level key which no field of the configuration struct names
// (so a misspelt key fails Configure instead of being silently ignored). A string or bool
// field given a value of another kind is refused with a message naming the key and the kind
// expected (HCL's own message names neither clearly).
package pluginconf

import (
	"fmt"
	"reflect"
	"sort"
	"strings"

	"github.com/hashicorp/hcl"
	"github.com/hashicorp/hcl/hcl/ast"
	"github.com/hashicorp/hcl/hcl/token"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Decode decodes src into config, a pointer to a struct whose fields carry `hcl:"key"` tags.
func Decode(src string, config any) error {
	file, err := hcl.Parse(src)
	if err != nil {
		return status.Errorf(codes.InvalidArgument, "failed to decode configuration: %v", err)
	}
	known := keys(config)
	if list, ok := file.Node.(*ast.ObjectList); ok {
		var unknown []string
		for _, item := range list.Items {
			if len(item.Keys) == 0 {
				continue
			}
			name, _ := item.Keys[0].Token.Value().(string)
			kind, ok := known[strings.ToLower(name)]
			if !ok {
				unknown = append(unknown, fmt.Sprintf("%q", name))
				continue
			}
			if err := checkKind(name, kind, item.Val); err != nil {
				return err
			}
		}
		if len(unknown) > 0 {
			names := make([]string, 0, len(known))
			for name := range known {
				names = append(names, name)
			}
			sort.Strings(names)
			return status.Errorf(codes.InvalidArgument, "unknown configuration key(s) %s (known keys: %s)",
				strings.Join(unknown, ", "), strings.Join(names, ", "))
		}
	}
	if err := hcl.DecodeObject(config, file); err != nil {
		return status.Errorf(codes.InvalidArgument, "failed to decode configuration: %v", err)
	}
	return nil
}

// checkKind refuses a value that a string or bool field cannot take (numbers are accepted
// for strings, as HCL converts them).
func checkKind(name string, kind reflect.Kind, val ast.Node) error {
	literal, _ := val.(*ast.LiteralType)
	switch kind {
	case reflect.Bool:
		if literal == nil || literal.Token.Type != token.BOOL {
			return status.Errorf(codes.InvalidArgument, "configuration key %q must be a bool (true or false, unquoted)", name)
		}
	case reflect.String:
		if literal == nil || literal.Token.Type == token.BOOL {
			return status.Errorf(codes.InvalidArgument, "configuration key %q must be a string", name)
		}
	}
	return nil
}

// keys gives the lower-cased keys config's fields accept (HCL matches them case-insensitively)
// with the kind of each field.
func keys(config any) map[string]reflect.Kind {
	out := make(map[string]reflect.Kind)
	t := reflect.TypeOf(config)
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	for i := 0; i < t.NumField(); i++ {
		field := t.Field(i)
		name, _, _ := strings.Cut(field.Tag.Get("hcl"), ",")
		if name == "" {
			name = field.Name
		}
		out[strings.ToLower(name)] = field.Type.Kind()
	}
	return out
}
