module spire-rs/conformance/tpmprov

go 1.24.0

require github.com/google/go-tpm v0.9.6

require golang.org/x/sys v0.37.0 // indirect
