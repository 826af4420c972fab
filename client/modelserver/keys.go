package modelserver

import (
	"fmt"
	"os"

	"go.yaml.in/yaml/v3"
)

// The environment variables Centrifugo itself reads its two keys from; an app deployed beside
// Centrifugo gets the same values from the same place.
const (
	EnvCentrifugoAPIKey     = "CENTRIFUGO_HTTP_API_KEY"                 // #nosec G101 -- a variable name, not a secret
	EnvCentrifugoHMACSecret = "CENTRIFUGO_CLIENT_TOKEN_HMAC_SECRET_KEY" // #nosec G101 -- a variable name, not a secret
)

// CentrifugoKeys are what the app shares with Centrifugo: the server API key (X-API-Key, for
// the stream position) and the HMAC secret that signs connection and subscription tokens.
type CentrifugoKeys struct {
	APIKey     string
	HMACSecret string
}

// ReadCentrifugoKeys returns the keys from Centrifugo's own environment variables where they are
// set (as in production, where secrets are not in a file), else from Centrifugo's configuration
// file at configPath (http_api.key and client.token.hmac_secret_key; an empty path skips the
// file). It fails, naming both sources, when either key is still missing.
func ReadCentrifugoKeys(configPath string) (CentrifugoKeys, error) {
	k := CentrifugoKeys{APIKey: os.Getenv(EnvCentrifugoAPIKey), HMACSecret: os.Getenv(EnvCentrifugoHMACSecret)}
	if (k.APIKey == "" || k.HMACSecret == "") && configPath != "" {
		fromFile, err := readCentrifugoConfigKeys(configPath)
		if err != nil {
			return k, err
		}
		if k.APIKey == "" {
			k.APIKey = fromFile.APIKey
		}
		if k.HMACSecret == "" {
			k.HMACSecret = fromFile.HMACSecret
		}
	}
	if k.APIKey == "" || k.HMACSecret == "" {
		return k, fmt.Errorf("centrifugo keys: want http_api.key and client.token.hmac_secret_key in %q, or %s and %s in the environment",
			configPath, EnvCentrifugoAPIKey, EnvCentrifugoHMACSecret)
	}
	return k, nil
}

func readCentrifugoConfigKeys(configPath string) (CentrifugoKeys, error) {
	b, err := os.ReadFile(configPath) // #nosec G304 -- the operator names the file
	if err != nil {
		return CentrifugoKeys{}, fmt.Errorf("read Centrifugo config (name the file, or set %s and %s): %w",
			EnvCentrifugoAPIKey, EnvCentrifugoHMACSecret, err)
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
		return CentrifugoKeys{}, fmt.Errorf("parse Centrifugo config %s: %w", configPath, err)
	}
	return CentrifugoKeys{APIKey: c.HTTPAPI.Key, HMACSecret: c.Client.Token.HMACSecretKey}, nil
}
