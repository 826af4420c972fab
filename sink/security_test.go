package sink

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestSecurity_Validate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		s    Security
		want []string // one substring per expected problem; none = valid
	}{
		{"zero value: plaintext", Security{}, nil},
		{"tls with system roots", Security{TLS: true}, nil},
		{"scram", Security{SASLMechanism: "scram-sha-512", SASLUsername: "u", SASLPassword: "p"}, nil},
		{"files without tls", Security{CAFile: "ca.pem"}, []string{"TLS is off"}},
		{"cert without key", Security{TLS: true, CertFile: "c.pem"}, []string{"both the certificate and the key"}},
		{"unknown mechanism", Security{SASLMechanism: "GSSAPI"}, []string{`"GSSAPI"`}},
		{"mechanism without password", Security{SASLMechanism: "PLAIN", SASLUsername: "u"}, []string{"username and a password"}},
		{"credentials without mechanism", Security{SASLUsername: "u", SASLPassword: "p"}, []string{"no SASL mechanism"}},
		{"all at once", Security{CertFile: "c", SASLMechanism: "x"}, []string{"TLS is off", "key", `"x"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			errs := tt.s.Problems(SecurityNames{})
			if len(errs) != len(tt.want) {
				t.Fatalf("validate() = %v, want %d problems %q", errs, len(tt.want), tt.want)
			}
			for i, w := range tt.want {
				if !strings.Contains(errs[i].Error(), w) {
					t.Errorf("problem %d = %q, want it to mention %q", i, errs[i], w)
				}
			}
		})
	}
}

func TestSecurity_TLSConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca, cert, key := writeTestCerts(t, dir)
	t.Run("off", func(t *testing.T) {
		t.Parallel()
		if cfg, err := (Security{}).tlsConfig(); cfg != nil || err != nil {
			t.Errorf("tlsConfig() = %v, %v; want nil, nil", cfg, err)
		}
	})
	t.Run("ca and client certificate", func(t *testing.T) {
		t.Parallel()
		cfg, err := Security{TLS: true, CAFile: ca, CertFile: cert, KeyFile: key}.tlsConfig()
		if err != nil {
			t.Fatal(err)
		}
		if cfg.RootCAs == nil || len(cfg.Certificates) != 1 || cfg.MinVersion != tls.VersionTLS12 {
			t.Errorf("tlsConfig() = roots %v, %d certificates, min version %x", cfg.RootCAs, len(cfg.Certificates), cfg.MinVersion)
		}
		if cfg.InsecureSkipVerify {
			t.Error("verification is off")
		}
	})
	for _, tt := range []struct {
		name string
		s    Security
		want string
	}{
		{"missing CA file", Security{TLS: true, CAFile: filepath.Join(dir, "nope.pem")}, "nope.pem"},
		{"CA file without certificates", Security{TLS: true, CAFile: key}, "no PEM certificate"},
		{"key of another certificate", Security{TLS: true, CertFile: cert, KeyFile: ca}, "client certificate"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if _, err := tt.s.tlsConfig(); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want one mentioning %q", err, tt.want)
			}
		})
	}
}

func TestSecurity_Mechanism(t *testing.T) {
	t.Parallel()
	for mech, name := range map[string]string{"": "", "plain": "PLAIN", "SCRAM-SHA-256": "SCRAM-SHA-256", "Scram-Sha-512": "SCRAM-SHA-512"} {
		m, err := Security{SASLMechanism: mech, SASLUsername: "u", SASLPassword: "p"}.mechanism()
		if err != nil {
			t.Fatalf("%q: %v", mech, err)
		}
		if got := ""; m != nil {
			got = m.Name()
			if got != name {
				t.Errorf("%q: mechanism %q, want %q", mech, got, name)
			}
		} else if name != "" {
			t.Errorf("%q: no mechanism, want %q", mech, name)
		}
	}
	// SASLprep refuses control characters; the error must not quote the password.
	_, err := Security{SASLMechanism: "SCRAM-SHA-256", SASLUsername: "u", SASLPassword: "se\u0007cret"}.mechanism()
	if err == nil || strings.Contains(err.Error(), "se\u0007cret") {
		t.Errorf("err = %v, want an error without the password", err)
	}
}

func TestSecurity_StringHidesPassword(t *testing.T) {
	t.Parallel()
	s := Security{TLS: true, SASLMechanism: "PLAIN", SASLUsername: "alice", SASLPassword: "hunter2"}
	c := Config{Brokers: []string{"b:9092"}, Security: s}
	for _, out := range []string{fmt.Sprint(s), fmt.Sprintf("%+v", c), fmt.Sprintf("%#v", s)} {
		if strings.Contains(out, "hunter2") {
			t.Errorf("the password is printed: %s", out)
		}
		if !strings.Contains(out, "alice") {
			t.Errorf("the username is not printed: %s", out)
		}
	}
}

func TestTLSFailure(t *testing.T) {
	t.Parallel()
	verify := &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}
	alert := &net.OpError{Op: "remote error", Err: errors.New("tls: bad certificate")}
	for _, tt := range []struct {
		err  error
		want bool
	}{
		{fmt.Errorf("metadata: %w", verify), true},
		{fmt.Errorf("metadata: %w", alert), true},
		{tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}, true},
		{&net.OpError{Op: "dial", Err: errors.New("connection refused")}, false},
		{errors.New("EOF"), false},
	} {
		if got := tlsFailure(tt.err); got != tt.want {
			t.Errorf("tlsFailure(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

// writeTestCerts writes a self-signed CA, and a client certificate and key it signed, as PEM.
func writeTestCerts(t *testing.T, dir string) (ca, cert, key string) {
	t.Helper()
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	caKey, leafKey := newKey(), newKey()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	leafTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "client"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, caTmpl, &leafKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(leafKey)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, typ string, der []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	return write("ca.pem", "CERTIFICATE", caDER), write("client.pem", "CERTIFICATE", leafDER), write("client.key", "PRIVATE KEY", keyDER)
}
