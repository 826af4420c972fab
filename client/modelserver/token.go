package modelserver

import (
	"crypto"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Default lifetimes of the tokens [Tokens] signs. They are short: the SDK asks for a new token
// before one expires (centrifuge-js calls getToken / getSubscriptionToken), and a user whose
// rights were revoked loses the channel when the token expires.
const (
	DefaultConnectionTTL   = 10 * time.Minute
	DefaultSubscriptionTTL = 5 * time.Minute
)

// Tokens signs Centrifugo's JWTs (https://centrifugal.dev/docs/server/authentication and
// https://centrifugal.dev/docs/server/channel_token_auth) with the key Centrifugo checks them
// with: client.token.hmac_secret_key for HS256, or the private half of
// client.token.rsa_public_key for RS256. Make it with [NewHS256Tokens] or [NewRS256Tokens].
type Tokens struct {
	ConnectionTTL   time.Duration    // default DefaultConnectionTTL
	SubscriptionTTL time.Duration    // default DefaultSubscriptionTTL
	Now             func() time.Time // default time.Now

	alg  string
	hmac []byte
	rsa  *rsa.PrivateKey
}

// NewHS256Tokens returns a signer of HS256 tokens with Centrifugo's client.token.hmac_secret_key.
func NewHS256Tokens(secret []byte) (*Tokens, error) {
	if len(secret) == 0 {
		return nil, errors.New("modelserver: empty HMAC key: pass Centrifugo's client.token.hmac_secret_key")
	}
	return &Tokens{alg: "HS256", hmac: secret}, nil
}

// NewRS256Tokens returns a signer of RS256 tokens; Centrifugo checks them with the public half,
// configured as client.token.rsa_public_key.
func NewRS256Tokens(key *rsa.PrivateKey) (*Tokens, error) {
	if key == nil {
		return nil, errors.New("modelserver: no RSA key")
	}
	if err := key.Validate(); err != nil {
		return nil, fmt.Errorf("modelserver: RSA key: %w", err)
	}
	return &Tokens{alg: "RS256", rsa: key}, nil
}

// Connection returns a connection token for user: {"sub": user, "iat", "exp"}. It names the
// user; it grants no channel (the shipped configuration makes outbox channels private).
func (t *Tokens) Connection(user string) (string, error) {
	if user == "" {
		return "", errors.New("modelserver: connection token for an empty user: Centrifugo would take it as anonymous")
	}
	now := t.now()
	return t.sign(map[string]any{"sub": user, "iat": now.Unix(), "exp": now.Add(ttl(t.ConnectionTTL, DefaultConnectionTTL)).Unix()})
}

// Subscription returns a subscription token that lets user's connection subscribe to channel
// (and recover its history): {"sub": user, "channel", "iat", "exp"}. Centrifugo accepts it only
// from a connection whose token names the same user. Call it only after the application has
// decided that user may read channel ([AuthorizeFunc]).
func (t *Tokens) Subscription(user, channel string) (string, error) {
	if user == "" || channel == "" {
		return "", errors.New("modelserver: subscription token needs a user and a channel")
	}
	now := t.now()
	return t.sign(map[string]any{"sub": user, "channel": channel, "iat": now.Unix(),
		"exp": now.Add(ttl(t.SubscriptionTTL, DefaultSubscriptionTTL)).Unix()})
}

func (t *Tokens) now() time.Time {
	if t.Now != nil {
		return t.Now()
	}
	return time.Now()
}

func ttl(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

func (t *Tokens) sign(claims map[string]any) (string, error) {
	enc := base64.RawURLEncoding
	header, _ := json.Marshal(map[string]string{"alg": t.alg, "typ": "JWT"})
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("modelserver: token claims: %w", err)
	}
	signing := enc.EncodeToString(header) + "." + enc.EncodeToString(payload)
	var sig []byte
	switch t.alg {
	case "HS256":
		mac := hmac.New(sha256.New, t.hmac)
		mac.Write([]byte(signing))
		sig = mac.Sum(nil)
	case "RS256":
		sum := sha256.Sum256([]byte(signing))
		if sig, err = rsa.SignPKCS1v15(rand.Reader, t.rsa, crypto.SHA256, sum[:]); err != nil {
			return "", fmt.Errorf("modelserver: sign token: %w", err)
		}
	default:
		return "", errors.New("modelserver: Tokens not made by NewHS256Tokens or NewRS256Tokens")
	}
	return signing + "." + enc.EncodeToString(sig), nil
}
