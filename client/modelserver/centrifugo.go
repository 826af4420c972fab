package modelserver

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// StreamPosition is a channel's place in Centrifugo's history: the offset of its newest
// publication and the history's epoch, which changes when the history is lost (a restart of a
// memory engine, an expired channel). The SDK subscribes from it.
type StreamPosition struct {
	Offset uint64 `json:"offset"`
	Epoch  string `json:"epoch"`
}

// PositionSource gives a channel's current stream position; [*Centrifugo] is one.
type PositionSource interface {
	StreamPosition(ctx context.Context, channel string) (StreamPosition, error)
}

// Centrifugo is a client of Centrifugo's server HTTP API (https://centrifugal.dev/docs/server/server_api).
// The zero HTTPClient means a client with a 5 s timeout.
type Centrifugo struct {
	URL        string       // Centrifugo's HTTP address, e.g. http://127.0.0.1:58000; the API is at URL/api
	APIKey     string       // http_api.key, sent as X-API-Key
	HTTPClient *http.Client // default: 5 s timeout
}

// APIError is an error answered by Centrifugo's server API.
type APIError struct {
	Method  string
	Code    int
	Message string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("centrifugo %s: error %d %s", e.Method, e.Code, e.Message)
}

var defaultHTTP = &http.Client{Timeout: 5 * time.Second}

// call POSTs params to URL/api/method and decodes the answer's result into result.
func (c *Centrifugo) call(ctx context.Context, method string, params, result any) error {
	body, err := json.Marshal(params)
	if err != nil {
		return fmt.Errorf("centrifugo %s: %w", method, err)
	}
	// #nosec G704 -- the URL is the application's configured Centrifugo address, not a request's
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(c.URL, "/")+"/api/"+method, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("centrifugo %s: %w", method, err)
	}
	req.Header.Set("X-API-Key", c.APIKey)
	req.Header.Set("Content-Type", "application/json")
	hc := c.HTTPClient
	if hc == nil {
		hc = defaultHTTP
	}
	resp, err := hc.Do(req) // #nosec G704 -- see above
	if err != nil {
		return fmt.Errorf("centrifugo %s at %s (is it running?): %w", method, c.URL, err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("centrifugo %s at %s: HTTP %s (is http_api.key the key this client sends?)", method, c.URL, resp.Status)
	}
	var out struct {
		Error  *APIError       `json:"error"`
		Result json.RawMessage `json:"result"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return fmt.Errorf("centrifugo %s: read answer: %w", method, err)
	}
	if out.Error != nil {
		out.Error.Method = method
		return out.Error
	}
	if result == nil || len(out.Result) == 0 {
		return nil
	}
	if err := json.Unmarshal(out.Result, result); err != nil {
		return fmt.Errorf("centrifugo %s: read result: %w", method, err)
	}
	return nil
}

// StreamPosition returns the channel's current stream position: the server API's history with
// limit 0, which returns no publications, only the position. The channel's namespace must keep
// a history (history_size and history_ttl), or Centrifugo answers an error.
func (c *Centrifugo) StreamPosition(ctx context.Context, channel string) (StreamPosition, error) {
	var p StreamPosition
	if err := c.call(ctx, "history", map[string]any{"channel": channel, "limit": 0}, &p); err != nil {
		return p, fmt.Errorf("read stream position of %s (is the channel in a namespace with history?): %w", channel, err)
	}
	return p, nil
}

// Publish publishes data (JSON) to channel with the given tags and returns the publication's
// stream position (offset and epoch, when the channel keeps a history). pgoutbox publishes the
// outbox's events through Kafka; Publish is for what does not come from the database.
func (c *Centrifugo) Publish(ctx context.Context, channel string, data any, tags map[string]string) (StreamPosition, error) {
	var p StreamPosition
	params := map[string]any{"channel": channel, "data": data}
	if len(tags) > 0 {
		params["tags"] = tags
	}
	if err := c.call(ctx, "publish", params, &p); err != nil {
		return p, fmt.Errorf("publish to %s: %w", channel, err)
	}
	return p, nil
}
