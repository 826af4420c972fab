package modelserver

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadCentrifugoKeys(t *testing.T) {
	dir := t.TempDir()
	full := filepath.Join(dir, "full.yaml")
	writeFile(t, full, "client:\n  token:\n    hmac_secret_key: file-secret\nhttp_api:\n  key: file-api\n")
	noAPI := filepath.Join(dir, "noapi.yaml")
	writeFile(t, noAPI, "client:\n  token:\n    hmac_secret_key: file-secret\n")

	tests := []struct {
		name      string
		path      string
		api, hmac string // environment
		want      CentrifugoKeys
		wantErr   string
	}{
		{name: "from the file", path: full, want: CentrifugoKeys{APIKey: "file-api", HMACSecret: "file-secret"}},
		{name: "the environment wins", path: full, api: "env-api", hmac: "env-secret", want: CentrifugoKeys{APIKey: "env-api", HMACSecret: "env-secret"}},
		{name: "one from each", path: noAPI, api: "env-api", want: CentrifugoKeys{APIKey: "env-api", HMACSecret: "file-secret"}},
		{name: "environment only", api: "env-api", hmac: "env-secret", want: CentrifugoKeys{APIKey: "env-api", HMACSecret: "env-secret"}},
		{name: "a key missing names both sources", path: noAPI, wantErr: EnvCentrifugoAPIKey},
		{name: "no file", path: filepath.Join(dir, "absent.yaml"), wantErr: "read Centrifugo config"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(EnvCentrifugoAPIKey, tc.api)
			t.Setenv(EnvCentrifugoHMACSecret, tc.hmac)
			got, err := ReadCentrifugoKeys(tc.path)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ReadCentrifugoKeys = %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}
