package metrics

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// A program in a module of its own (as a user's would be) imports the
// metrics package, registers the collector and serves /metrics: the
// package is public, not internal to this module.
func TestImportableFromAnotherModule(t *testing.T) {
	root, err := filepath.Abs("..")
	require.NoError(t, err)
	dir := t.TempDir()
	gomod := "module example.com/chat\n\ngo 1.26\n\nrequire github.com/realtimehub/realtime v0.0.0\n\n" +
		"replace github.com/realtimehub/realtime => " + root + "\n"
	main := `package main

import (
	"log"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/realtimehub/realtime"
	"github.com/realtimehub/realtime/metrics"
)

func main() {
	hub := realtime.NewHub(nil)
	h := realtime.NewHandler(hub, nil, realtime.HandlerConfig{})
	reg := prometheus.NewRegistry()
	reg.MustRegister(metrics.New(metrics.Sources{Hub: hub, Handler: h}))
	http.Handle("/ws", h.Routes())
	http.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	log.Fatal(http.ListenAndServe("127.0.0.1:0", nil))
}
`
	sum, err := os.ReadFile(filepath.Join(root, "go.sum"))
	require.NoError(t, err)
	for name, body := range map[string]string{"go.mod": gomod, "main.go": main, "go.sum": string(sum)} {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644))
	}
	cmd := exec.Command("go", "build", "-mod=mod", "-o", filepath.Join(dir, "chat"), ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOFLAGS=", "GOWORK=off")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", strings.TrimSpace(string(out)))
}
