package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// centrifugo is what the app needs of the Centrifugo server: its server API (the channel's stream
// position, step 1 of the bootstrap recipe) and the key that signs browsers' connection tokens.
type centrifugo struct {
	url       string // http://host:port, the server API at /api and WebSocket at /connection/websocket
	apiKey    string // http_api.key
	hmacKey   []byte // client.token.hmac_secret_key
	tokenTTL  time.Duration
	http      *http.Client
	publicURL string // the WebSocket address browsers connect to
}

// centrifugoSecrets reads the two keys: from Centrifugo's own environment variables when set
// (as in production, where they are not in a file), else from its configuration file.
func centrifugoSecrets(configPath string) (apiKey, hmacKey string, err error) {
	apiKey, hmacKey = os.Getenv("CENTRIFUGO_HTTP_API_KEY"), os.Getenv("CENTRIFUGO_CLIENT_TOKEN_HMAC_SECRET_KEY")
	if apiKey != "" && hmacKey != "" {
		return apiKey, hmacKey, nil
	}
	b, err := os.ReadFile(configPath) // #nosec G304 -- the operator names the file
	if err != nil {
		return "", "", fmt.Errorf("read Centrifugo config (set --centrifugo-config, or CENTRIFUGO_HTTP_API_KEY and CENTRIFUGO_CLIENT_TOKEN_HMAC_SECRET_KEY): %w", err)
	}
	var c struct {
		Client struct {
			Token struct {
				HMACSecretKey string `yaml:"hmac_secret_key"`
			} `yaml:"token"`
		} `yaml:"client"`
		HTTPAPI struct {
			Key string `yaml:"key"`
		} `yaml:"http_api"`
	}
	if err := yaml.Unmarshal(b, &c); err != nil {
		return "", "", fmt.Errorf("parse Centrifugo config %s: %w", configPath, err)
	}
	if apiKey == "" {
		apiKey = c.HTTPAPI.Key
	}
	if hmacKey == "" {
		hmacKey = c.Client.Token.HMACSecretKey
	}
	if apiKey == "" || hmacKey == "" {
		return "", "", fmt.Errorf("centrifugo config %s: want http_api.key and client.token.hmac_secret_key", configPath)
	}
	return apiKey, hmacKey, nil
}

// streamPosition is a channel's place in Centrifugo's history: the offset of its newest
// publication and the history's epoch (new when the history was lost).
type streamPosition struct {
	Offset uint64 `json:"offset"`
	Epoch  string `json:"epoch"`
}

// streamTop returns the channel's current stream position: the server API's history with limit
// 0, which returns no publications, only the position.
func (c *centrifugo) streamTop(ctx context.Context, channel string) (streamPosition, error) {
	body, _ := json.Marshal(map[string]any{"channel": channel, "limit": 0})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url+"/api/history", bytes.NewReader(body))
	if err != nil {
		return streamPosition{}, err
	}
	req.Header.Set("X-API-Key", c.apiKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return streamPosition{}, fmt.Errorf("read stream position of %s from Centrifugo at %s (is it running? `make up`): %w", channel, c.url, err)
	}
	defer func() { _ = resp.Body.Close() }()
	var out struct {
		Error *struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
		Result streamPosition `json:"result"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return streamPosition{}, fmt.Errorf("read stream position of %s: status %s: %w", channel, resp.Status, err)
	}
	if out.Error != nil {
		return streamPosition{}, fmt.Errorf("read stream position of %s: Centrifugo error %d %s (is the channel in a namespace with history?)", channel, out.Error.Code, out.Error.Message)
	}
	return out.Result, nil
}

// connectionToken returns a Centrifugo connection token for user: an HS256 JWT {"sub", "exp"}.
// The app authorizes here, once per connection; Centrifugo then fans every event out without
// asking the database anything per client.
func (c *centrifugo) connectionToken(user string, now time.Time) string {
	return signJWT(c.hmacKey, map[string]any{"sub": user, "exp": now.Add(c.tokenTTL).Unix()})
}

func signJWT(key []byte, claims map[string]any) string {
	enc := base64.RawURLEncoding
	header := enc.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`))
	payload, _ := json.Marshal(claims)
	signing := header + "." + enc.EncodeToString(payload)
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(signing))
	return signing + "." + enc.EncodeToString(mac.Sum(nil))
}

// wsURL turns Centrifugo's http(s) address into its WebSocket endpoint.
func wsURL(httpURL string) string {
	u := strings.TrimSuffix(httpURL, "/")
	switch {
	case strings.HasPrefix(u, "https://"):
		u = "wss://" + strings.TrimPrefix(u, "https://")
	case strings.HasPrefix(u, "http://"):
		u = "ws://" + strings.TrimPrefix(u, "http://")
	}
	return u + "/connection/websocket"
}
