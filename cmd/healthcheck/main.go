// Command healthcheck asks pgoutbox's /healthz and exits 0 when it answers 2xx, 1 otherwise. It
// is the container image's HEALTHCHECK: the image holds static binaries and nothing else (no
// shell, no curl), and a health check belongs outside the relay's own command set.
//
//	healthcheck [URL]
//
// Without a URL it asks http://127.0.0.1:<port>/healthz, the port taken from PGOUTBOX_HTTP_ADDR
// (default 127.0.0.1:9187), so that the check follows the relay's configuration.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"
)

const defaultAddr = "127.0.0.1:9187" // pgoutbox's --http-addr default

func main() {
	url, err := target(os.Args[1:], os.LookupEnv)
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		err = check(ctx, url)
		cancel()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "healthcheck:", err)
		os.Exit(1)
	}
}

// target is the URL to ask: the argument, or /healthz at the address pgoutbox listens on. A
// wildcard listen address (":9187", "0.0.0.0:9187") is asked on loopback.
func target(args []string, lookupEnv func(string) (string, bool)) (string, error) {
	if len(args) > 1 {
		return "", errors.New("usage: healthcheck [URL]")
	}
	if len(args) == 1 {
		return args[0], nil
	}
	addr, ok := lookupEnv("PGOUTBOX_HTTP_ADDR")
	if !ok {
		addr = defaultAddr
	}
	if addr == "" {
		return "", errors.New("PGOUTBOX_HTTP_ADDR is empty: pgoutbox serves no /healthz to check")
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("PGOUTBOX_HTTP_ADDR %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port) + "/healthz", nil
}

// check GETs url and reports anything but a 2xx answer.
func check(ctx context.Context, url string) error {
	// The URL is the operator's (argument or PGOUTBOX_HTTP_ADDR): asking it is the point.
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil) //nolint:gosec // see above
	if err != nil {
		return err
	}
	res, err := http.DefaultClient.Do(req) //nolint:gosec // the operator's URL, as above
	if err != nil {
		return err
	}
	defer func() { _ = res.Body.Close() }()
	body, _ := io.ReadAll(io.LimitReader(res.Body, 512))
	if res.StatusCode < 200 || res.StatusCode > 299 {
		return fmt.Errorf("%s: %s: %s", url, res.Status, body)
	}
	return nil
}
