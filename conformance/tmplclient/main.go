// Command tmplclient renders agent path templates with reference SPIRE's own
// agentpathtemplate package (Go text/template, missingkey=error, SPIRE's sprig
// functions), for spire-rs's differential test (crates/spire-gocompat/tests/gotemplate.rs).
//
// Input on stdin: a JSON array of template texts. Output on stdout: a JSON array with,
// for each template, {"out": rendered} or {"err": error text}, parse and execution
// errors alike. Every template runs on the same fixed data (agentPathTemplateData below;
// the Rust test builds the same value).
package main

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/spiffe/spire/pkg/common/agentpathtemplate"
)

type pkixName struct {
	CommonName   string
	Organization []string
}

type instanceTags map[string]string

type agentPathTemplateData struct {
	PluginName    string
	TrustDomain   string
	Region        string
	InstanceID    string
	ProjectNumber int64
	Count         int
	Enabled       bool
	Tags          instanceTags
	Subject       pkixName
	Names         []string
	Empty         string
}

type result struct {
	Out *string `json:"out,omitempty"`
	Err *string `json:"err,omitempty"`
}

func main() {
	var templates []string
	if err := json.NewDecoder(os.Stdin).Decode(&templates); err != nil {
		fmt.Fprintln(os.Stderr, "tmplclient: reading templates:", err)
		os.Exit(2)
	}
	results := make([]result, 0, len(templates))
	for _, text := range templates {
		// Fresh data for each template: sprig's sortAlpha sorts a []string in place.
		results = append(results, render(text, newData()))
	}
	if err := json.NewEncoder(os.Stdout).Encode(results); err != nil {
		fmt.Fprintln(os.Stderr, "tmplclient: writing results:", err)
		os.Exit(2)
	}
}

func newData() agentPathTemplateData {
	return agentPathTemplateData{
		PluginName:    "aws_iid",
		TrustDomain:   "example.org",
		Region:        "US-East-1",
		InstanceID:    "i-0123456789abcdef0",
		ProjectNumber: 1234567890123,
		Count:         3,
		Enabled:       true,
		Tags:          instanceTags{"Name": "web server", "env": "Prod", "team_id": "42"},
		Subject:       pkixName{CommonName: "node-1.example.org", Organization: []string{"Acme", "Dev"}},
		Names:         []string{"charlie", "alpha", "bravo", "alpha"},
	}
}

func render(text string, data agentPathTemplateData) (r result) {
	defer func() {
		if p := recover(); p != nil {
			msg := fmt.Sprintf("panic: %v", p)
			r = result{Err: &msg}
		}
	}()
	tmpl, err := agentpathtemplate.Parse(text)
	if err != nil {
		msg := err.Error()
		return result{Err: &msg}
	}
	out, err := tmpl.Execute(data)
	if err != nil {
		msg := err.Error()
		return result{Err: &msg}
	}
	return result{Out: &out}
}
