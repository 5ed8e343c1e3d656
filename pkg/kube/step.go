package kube

import (
	"log/slog"

	"k8s.io/client-go/dynamic"
	"k8s.io/klog/v2"

	"github.com/chartreuse-go/chartreuse/pkg/failure"
)

// ConnectStep is Connect for the step named step (user agent chartreuse/<step>)
// as every step binary does it: client-go's own messages (watch retries while
// the API server is away) go through log, in the step's format, and the server
// and namespace are logged.
func (o *Options) ConnectStep(step string, log *slog.Logger) (*Client, error) {
	klog.SetSlogLogger(log.With("component", "client-go"))
	c, err := o.Connect("chartreuse/" + step)
	if err != nil {
		return nil, err
	}
	log.Info("using cluster", "server", c.Config.Host, "namespace", c.Namespace)
	return c, nil
}

// Dynamic is a dynamic client with c's configuration, for the resources of
// other projects (Tekton's, Argo's).
func (c *Client) Dynamic() (dynamic.Interface, error) {
	dyn, err := dynamic.NewForConfig(c.Config)
	if err != nil {
		return nil, failure.Permanentf("creating Kubernetes client: %w", err)
	}
	return dyn, nil
}
