package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/pgoutbox/pgoutbox/client/modelserver"
	"go.yaml.in/yaml/v3"
)

// centrifugo is what the app needs of the Centrifugo server: its server API (the channel's stream
// position, step 1 of the bootstrap recipe), the key that signs browsers' tokens, and the
// WebSocket address pages connect to.
type centrifugo struct {
	api       *modelserver.Centrifugo
	tokens    *modelserver.Tokens
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
