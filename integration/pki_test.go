//go:build integration

package integration

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// testPKI is a throwaway certificate authority with a server certificate for 127.0.0.1 and
// localhost and a client certificate, written as PEM files into one directory. Tests of TLS
// connections make their own instead of shipping keys in the repository.
type testPKI struct {
	Dir                                string
	CAFile                             string // the CA certificate
	ServerCertFile, ServerKeyFile      string
	ClientCertFile, ClientKeyFile      string
	CAPEM, ServerCertPEM, ServerKeyPEM []byte
}

// newTestPKI writes a fresh CA and its certificates into dir. Keys are PKCS#8 (what Kafka's PEM
// key store reads) and readable by their owner only (what PostgreSQL demands of its key).
func newTestPKI(t *testing.T, dir string) *testPKI {
	t.Helper()
	caKey, caCert, caPEM := newCert(t, "pgoutbox test CA", nil, nil, func(c *x509.Certificate) {
		c.IsCA, c.BasicConstraintsValid = true, true
		c.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign
	})
	srvKey, _, srvPEM := newCert(t, "localhost", caCert, caKey, func(c *x509.Certificate) {
		c.DNSNames = []string{"localhost"}
		c.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
		c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	})
	cliKey, _, cliPEM := newCert(t, "pgoutbox", caCert, caKey, func(c *x509.Certificate) {
		c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	})
	p := &testPKI{Dir: dir, CAPEM: caPEM, ServerCertPEM: srvPEM, ServerKeyPEM: keyPEM(t, srvKey)}
	write := func(name string, data []byte, mode os.FileMode) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, data, mode); err != nil {
			t.Fatal(err)
		}
		return path
	}
	p.CAFile = write("ca.crt", caPEM, 0o644)
	p.ServerCertFile = write("server.crt", srvPEM, 0o644)
	p.ServerKeyFile = write("server.key", p.ServerKeyPEM, 0o600)
	p.ClientCertFile = write("client.crt", cliPEM, 0o644)
	p.ClientKeyFile = write("client.key", keyPEM(t, cliKey), 0o600)
	return p
}

// newCert makes a key and a certificate signed by parent (self-signed when parent is nil).
func newCert(t *testing.T, cn string, parent *x509.Certificate, parentKey *ecdsa.PrivateKey,
	edit func(*x509.Certificate)) (*ecdsa.PrivateKey, *x509.Certificate, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	edit(tmpl)
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return key, cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func keyPEM(t *testing.T, key *ecdsa.PrivateKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}
