package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestRunServesAndShutsDown(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, nil, env(map[string]string{"FAKEPROVIDER_ADDR": "127.0.0.1:0", "FAKEPROVIDER_LATENCY": "1ms"}), pw)
		_ = pw.Close()
	}()

	line, err := bufio.NewReader(pr).ReadBytes('\n')
	require.NoError(t, err)
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	var start struct {
		Level   string `json:"level"`
		Addr    string `json:"addr"`
		Message string `json:"message"`
	}
	require.NoError(t, json.Unmarshal(line, &start), string(line))
	require.Equal(t, "info", start.Level)
	require.Equal(t, "fakeprovider listening", start.Message)
	require.NotEmpty(t, start.Addr)

	const key = "sk-admin-main-test-SECRET"
	req, err := http.NewRequest(http.MethodGet, "http://"+start.Addr+"/v1/organization/costs?start_time=1767225600&end_time=1767312000", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.NotEmpty(t, resp.Header.Get("x-request-id"))
	require.NotContains(t, string(line), key)

	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("run did not return after cancellation")
	}
}

func TestRunRejectsBadConfig(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	err := run(ctx, []string{"--port=1"}, env(nil), io.Discard)
	require.ErrorContains(t, err, "no arguments")

	err = run(ctx, nil, env(map[string]string{"FAKEPROVIDER_LATENCY": "soon"}), io.Discard)
	require.ErrorContains(t, err, "FAKEPROVIDER_LATENCY")

	err = run(ctx, nil, env(map[string]string{"FAKEPROVIDER_LATENCY": "-1s"}), io.Discard)
	require.ErrorContains(t, err, "FAKEPROVIDER_LATENCY")

	err = run(ctx, nil, env(map[string]string{"FAKEPROVIDER_SLOW_DELAY": "0s"}), io.Discard)
	require.ErrorContains(t, err, "FAKEPROVIDER_SLOW_DELAY")

	err = run(ctx, nil, env(map[string]string{"FAKEPROVIDER_PPROF_ADDR": "0.0.0.0:6060"}), io.Discard)
	require.ErrorContains(t, err, "FAKEPROVIDER_PPROF_ADDR")

	err = run(ctx, nil, env(map[string]string{"FAKEPROVIDER_ADDR": "256.0.0.1:99999"}), io.Discard)
	require.ErrorContains(t, err, "listen")
}

func TestConfigDefaults(t *testing.T) {
	t.Parallel()
	cfg, err := configFromEnv(env(nil))
	require.NoError(t, err)
	require.Equal(t, Config{Addr: "127.0.0.1:8090"}, cfg)

	cfg, err = configFromEnv(env(map[string]string{"FAKEPROVIDER_SLOW_DELAY": "250ms"}))
	require.NoError(t, err)
	require.Equal(t, 250*time.Millisecond, cfg.SlowDelay)
}

// On shutdown the server logs how many requests it served, so a benchmark
// that runs it as its own process can still count the provider requests.
func TestRunLogsRequestsServedOnShutdown(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, nil, env(map[string]string{"FAKEPROVIDER_ADDR": "127.0.0.1:0"}), pw)
		_ = pw.Close()
	}()
	lines := bufio.NewScanner(pr)
	require.True(t, lines.Scan())
	var start struct {
		Addr string `json:"addr"`
	}
	require.NoError(t, json.Unmarshal(lines.Bytes(), &start))
	for range 3 {
		resp, err := http.Get("http://" + start.Addr + "/v1/organization/costs?start_time=1767225600&end_time=1767312000")
		require.NoError(t, err)
		require.NoError(t, resp.Body.Close())
	}

	cancel()
	var stop struct {
		Message  string `json:"message"`
		Requests int64  `json:"requests"`
	}
	for lines.Scan() {
		require.NoError(t, json.Unmarshal(lines.Bytes(), &stop))
	}
	require.NoError(t, <-done)
	require.Equal(t, "fakeprovider stopped", stop.Message)
	require.EqualValues(t, 3, stop.Requests)
}
