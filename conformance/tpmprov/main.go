// tpmprov provisions a TPM (swtpm in the conformance tests) the way SPIRE's own
// test/tpmsimulator does: a DevID signing key created under the storage root key template
// SPIRE's tpm_devid agent recreates (SRKTemplateHighRSA), its public and private blobs
// written in go-tpm's encoding, and a DevID certificate for that key issued by a fresh test
// CA (optionally through an intermediate). Both SPIRE's agent and ours load these blobs.
//
// Usage: tpmprov -tpm PATH -out DIR [-cn NAME] [-devid-password PW] [-owner-password PW]
//
//	[-intermediate] [-ecc]
//
// Writes into DIR: devid.pub, devid.priv (TPM blobs), devid.pem (leaf, then intermediate
// if any), ca.pem (root). The CA keys are discarded.
package main

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"flag"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"time"

	"github.com/google/go-tpm/legacy/tpm2"
	"github.com/google/go-tpm/tpmutil"
)

// srkTemplateHighRSA is go-tpm-tools' SRKTemplateRSA with an empty unique field, as SPIRE's
// tpmutil.SRKTemplateHighRSA.
func srkTemplateHighRSA() tpm2.Public {
	return tpm2.Public{
		Type:    tpm2.AlgRSA,
		NameAlg: tpm2.AlgSHA256,
		Attributes: tpm2.FlagDecrypt | tpm2.FlagRestricted | tpm2.FlagFixedTPM |
			tpm2.FlagFixedParent | tpm2.FlagSensitiveDataOrigin | tpm2.FlagUserWithAuth |
			tpm2.FlagNoDA,
		RSAParameters: &tpm2.RSAParams{
			Symmetric:  &tpm2.SymScheme{Alg: tpm2.AlgAES, KeyBits: 128, Mode: tpm2.AlgCFB},
			KeyBits:    2048,
			ModulusRaw: []byte{},
		},
	}
}

// srkTemplateHighECC is go-tpm-tools' SRKTemplateECC with empty unique points, as SPIRE's
// tpmutil.SRKTemplateHighECC.
func srkTemplateHighECC() tpm2.Public {
	return tpm2.Public{
		Type:    tpm2.AlgECC,
		NameAlg: tpm2.AlgSHA256,
		Attributes: tpm2.FlagDecrypt | tpm2.FlagRestricted | tpm2.FlagFixedTPM |
			tpm2.FlagFixedParent | tpm2.FlagSensitiveDataOrigin | tpm2.FlagUserWithAuth |
			tpm2.FlagNoDA,
		ECCParameters: &tpm2.ECCParams{
			Symmetric: &tpm2.SymScheme{Alg: tpm2.AlgAES, KeyBits: 128, Mode: tpm2.AlgCFB},
			CurveID:   tpm2.CurveNISTP256,
			Point:     tpm2.ECPoint{XRaw: []byte{}, YRaw: []byte{}},
		},
	}
}

// devIDTemplateECC is the ECC DevID key template of SPIRE's test/tpmsimulator: an
// unrestricted NIST P-256 signing key with ECDSA-SHA256.
func devIDTemplateECC() tpm2.Public {
	return tpm2.Public{
		Type:    tpm2.AlgECC,
		NameAlg: tpm2.AlgSHA256,
		Attributes: tpm2.FlagSign | tpm2.FlagFixedTPM | tpm2.FlagFixedParent |
			tpm2.FlagSensitiveDataOrigin | tpm2.FlagUserWithAuth,
		ECCParameters: &tpm2.ECCParams{
			Sign:    &tpm2.SigScheme{Alg: tpm2.AlgECDSA, Hash: tpm2.AlgSHA256},
			CurveID: tpm2.CurveNISTP256,
			Point:   tpm2.ECPoint{XRaw: make([]byte, 32), YRaw: make([]byte, 32)},
		},
	}
}

// devIDTemplateRSA is the DevID key template of SPIRE's test/tpmsimulator: an unrestricted
// RSA-2048 signing key with RSASSA-SHA256.
func devIDTemplateRSA() tpm2.Public {
	return tpm2.Public{
		Type:    tpm2.AlgRSA,
		NameAlg: tpm2.AlgSHA256,
		Attributes: tpm2.FlagSign | tpm2.FlagFixedTPM | tpm2.FlagFixedParent |
			tpm2.FlagSensitiveDataOrigin | tpm2.FlagUserWithAuth,
		RSAParameters: &tpm2.RSAParams{
			Sign:    &tpm2.SigScheme{Alg: tpm2.AlgRSASSA, Hash: tpm2.AlgSHA256},
			KeyBits: 2048,
		},
	}
}

func main() {
	tpmPath := flag.String("tpm", "", "TPM device or unix socket")
	out := flag.String("out", "", "output directory")
	cn := flag.String("cn", "devid-leaf", "DevID certificate subject common name")
	devIDPassword := flag.String("devid-password", "", "DevID key password")
	ownerPassword := flag.String("owner-password", "", "owner hierarchy password")
	newOwnerPassword := flag.String("new-owner-password", "", "owner hierarchy password to set once provisioned")
	newEndorsementPassword := flag.String("new-endorsement-password", "", "endorsement hierarchy password to set once provisioned")
	intermediate := flag.Bool("intermediate", false, "issue the DevID through an intermediate CA")
	ecc := flag.Bool("ecc", false, "an ECC (NIST P-256) DevID key instead of RSA-2048")
	flag.Parse()
	if *tpmPath == "" || *out == "" {
		fail(fmt.Errorf("-tpm and -out are required"))
	}
	rwc, err := tpm2.OpenTPM(*tpmPath)
	if err != nil {
		fail(fmt.Errorf("open TPM: %w", err))
	}
	defer rwc.Close()

	srkTemplate, keyTemplate := srkTemplateHighRSA(), devIDTemplateRSA()
	if *ecc {
		srkTemplate, keyTemplate = srkTemplateHighECC(), devIDTemplateECC()
	}
	srk, _, _, _, _, _, err := tpm2.CreatePrimaryEx(rwc, tpm2.HandleOwner, tpm2.PCRSelection{},
		*ownerPassword, "", srkTemplate)
	if err != nil {
		fail(fmt.Errorf("create SRK: %w", err))
	}
	priv, pub, _, _, _, err := tpm2.CreateKey(rwc, srk, tpm2.PCRSelection{}, "", *devIDPassword,
		keyTemplate)
	_ = tpm2.FlushContext(rwc, srk)
	if err != nil {
		fail(fmt.Errorf("create DevID key: %w", err))
	}
	decoded, err := tpm2.DecodePublic(pub)
	if err != nil {
		fail(fmt.Errorf("decode DevID public: %w", err))
	}
	devIDKey, err := decoded.Key()
	if err != nil {
		fail(fmt.Errorf("DevID public key: %w", err))
	}

	rootKey, rootCert := newCA("tpmprov root CA", nil, nil)
	issuerKey, issuerCert := rootKey, rootCert
	chain := [][]byte{}
	if *intermediate {
		issuerKey, issuerCert = newCA("tpmprov intermediate CA", rootKey, rootCert)
		chain = append(chain, issuerCert.Raw)
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		fail(err)
	}
	leaf, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: *cn},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}, issuerCert, devIDKey, issuerKey)
	if err != nil {
		fail(fmt.Errorf("issue DevID certificate: %w", err))
	}
	chain = append([][]byte{leaf}, chain...)

	write := func(name string, data []byte, mode os.FileMode) {
		if err := os.WriteFile(filepath.Join(*out, name), data, mode); err != nil {
			fail(err)
		}
	}
	write("devid.pub", pub, 0o644)
	write("devid.priv", priv, 0o600)
	write("devid.pem", pemCerts(chain), 0o644)
	write("ca.pem", pemCerts([][]byte{rootCert.Raw}), 0o644)

	// Hierarchy passwords last: the agent then needs them to recreate the SRK (owner) and
	// to open the EK's PolicySecret session (endorsement).
	changes := []struct {
		handle   tpmutil.Handle
		old, new string
		name     string
	}{
		{tpm2.HandleOwner, *ownerPassword, *newOwnerPassword, "owner"},
		{tpm2.HandleEndorsement, "", *newEndorsementPassword, "endorsement"},
	}
	for _, c := range changes {
		if c.new == "" {
			continue
		}
		auth := tpm2.AuthCommand{Session: tpm2.HandlePasswordSession, Attributes: tpm2.AttrContinueSession, Auth: []byte(c.old)}
		if err := tpm2.HierarchyChangeAuth(rwc, c.handle, auth, c.new); err != nil {
			fail(fmt.Errorf("set %s hierarchy password: %w", c.name, err))
		}
	}
}

func newCA(cn string, parentKey crypto.Signer, parent *x509.Certificate) (crypto.Signer, *x509.Certificate) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		fail(err)
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		fail(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Minute),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		fail(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		fail(err)
	}
	return key, cert
}

func pemCerts(ders [][]byte) []byte {
	var out []byte
	for _, d := range ders {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: d})...)
	}
	return out
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "tpmprov:", err)
	os.Exit(1)
}
