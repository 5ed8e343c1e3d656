package kube

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// ConnectStep names the step in the user agent and logs the server and the
// namespace; Dynamic builds on the same configuration.
func TestConnectStep(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config")
	if err := os.WriteFile(path, []byte(kubeconfig), 0o600); err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	c, err := (&Options{Kubeconfig: path}).ConnectStep("gate", slog.New(slog.NewTextHandler(&log, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if c.Config.UserAgent != "chartreuse/gate" || c.Namespace != "team-a" {
		t.Errorf("user agent %q, namespace %q", c.Config.UserAgent, c.Namespace)
	}
	if want := `msg="using cluster" server=https://127.0.0.1:6443 namespace=team-a`; !strings.Contains(log.String(), want) {
		t.Errorf("log %q lacks %q", log.String(), want)
	}
	if dyn, err := c.Dynamic(); err != nil || dyn == nil {
		t.Errorf("Dynamic: %v, %v", dyn, err)
	}
	if _, err := (&Options{Kubeconfig: path, Context: "nope"}).ConnectStep("gate", slog.New(slog.DiscardHandler)); err == nil {
		t.Error("unknown context: no error")
	}
}
