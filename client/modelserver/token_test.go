package modelserver

import (
	"crypto"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// parseJWT splits a token and returns its header, claims and signed part and signature.
func parseJWT(t *testing.T, tok string) (header, claims map[string]any, signing string, sig []byte) {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("token %q: want 3 parts", tok)
	}
	dec := func(s string, v any) {
		b, err := base64.RawURLEncoding.DecodeString(s)
		if err != nil {
			t.Fatal(err)
		}
		if v != nil {
			if err := json.Unmarshal(b, v); err != nil {
				t.Fatal(err)
			}
		}
	}
	dec(parts[0], &header)
	dec(parts[1], &claims)
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		t.Fatal(err)
	}
	return header, claims, parts[0] + "." + parts[1], sig
}

func TestTokens_HS256(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_700_000_000, 0)
	tk, err := NewHS256Tokens([]byte("secret"))
	if err != nil {
		t.Fatal(err)
	}
	tk.Now = func() time.Time { return now }
	tok, err := tk.Subscription("alice", "outbox:todos-alice")
	if err != nil {
		t.Fatal(err)
	}
	h, c, signing, sig := parseJWT(t, tok)
	if h["alg"] != "HS256" {
		t.Errorf("alg = %v", h["alg"])
	}
	if c["sub"] != "alice" || c["channel"] != "outbox:todos-alice" || c["exp"] != float64(now.Add(DefaultSubscriptionTTL).Unix()) {
		t.Errorf("claims = %v", c)
	}
	mac := hmac.New(sha256.New, []byte("secret"))
	mac.Write([]byte(signing))
	if !hmac.Equal(sig, mac.Sum(nil)) {
		t.Error("signature does not verify with the key")
	}
	tok, err = tk.Connection("alice")
	if err != nil {
		t.Fatal(err)
	}
	if _, c, _, _ := parseJWT(t, tok); c["sub"] != "alice" || c["channel"] != nil || c["exp"] != float64(now.Add(DefaultConnectionTTL).Unix()) {
		t.Errorf("connection claims = %v", c)
	}
	if _, err := tk.Connection(""); err == nil {
		t.Error("a connection token for no user: want an error")
	}
	if _, err := tk.Subscription("alice", ""); err == nil {
		t.Error("a subscription token for no channel: want an error")
	}
	if _, err := NewHS256Tokens(nil); err == nil {
		t.Error("NewHS256Tokens(nil): want an error")
	}
}

func TestTokens_RS256(t *testing.T) {
	t.Parallel()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tk, err := NewRS256Tokens(key)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := tk.Subscription("bob", "outbox:x")
	if err != nil {
		t.Fatal(err)
	}
	h, _, signing, sig := parseJWT(t, tok)
	if h["alg"] != "RS256" {
		t.Errorf("alg = %v", h["alg"])
	}
	sum := sha256.Sum256([]byte(signing))
	if err := rsa.VerifyPKCS1v15(&key.PublicKey, crypto.SHA256, sum[:], sig); err != nil {
		t.Errorf("signature does not verify with the public key: %v", err)
	}
}
