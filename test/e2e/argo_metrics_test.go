package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// metricSample is one sample of the controller's metrics.
type metricSample struct {
	name   string
	labels map[string]string
	value  float64
}

// parseMetrics reads the Prometheus text exposition (gauges and counters; other
// types are left out).
func parseMetrics(text string) []metricSample {
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		return nil
	}
	var out []metricSample
	for name, f := range families {
		for _, m := range f.GetMetric() {
			s := metricSample{name: name, labels: map[string]string{}}
			for _, l := range m.GetLabel() {
				s.labels[l.GetName()] = l.GetValue()
			}
			switch {
			case m.GetGauge() != nil:
				s.value = m.GetGauge().GetValue()
			case m.GetCounter() != nil:
				s.value = m.GetCounter().GetValue()
			default:
				continue
			}
			out = append(out, s)
		}
	}
	return out
}

// metricValue is the value of the sample of name whose labels include want.
func metricValue(samples []metricSample, name string, want map[string]string) (float64, bool) {
	for _, m := range samples {
		if m.name != name {
			continue
		}
		match := true
		for k, v := range want {
			if m.labels[k] != v {
				match = false
				break
			}
		}
		if match {
			return m.value, true
		}
	}
	return 0, false
}

// wantMetric waits (the controller computes a workflow's metrics as it
// completes it, in the same or a following pass) until the controller reports
// name{labels...} = want, and fails naming what it reported instead.
func (s *argoSuite) wantMetric(t *testing.T, name string, labels map[string]string, want float64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	var last string
	for {
		text, err := s.argo.Metrics(ctx)
		if err == nil {
			got, ok := metricValue(parseMetrics(text), name, labels)
			if ok && got == want {
				return
			}
			last = fmt.Sprintf("%s%v = %v (reported: %v)", name, labels, got, ok)
			if !ok {
				var same []string
				for _, m := range parseMetrics(text) {
					if strings.Contains(m.name, "chartreuse") {
						same = append(same, fmt.Sprintf("%s%v %v", m.name, m.labels, m.value))
					}
				}
				last += "; chartreuse samples: " + strings.Join(same, ", ")
			}
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			t.Errorf("metric %s%v: want %v, got %s", name, labels, want, last)
			return
		case <-time.After(2 * time.Second):
		}
	}
}

// noMetricsError fails when the controller could not emit a metric of wf (it
// records that as a MetricsError condition, without failing the run).
func noMetricsError(t *testing.T, wf *wfv1.Workflow) {
	t.Helper()
	for _, c := range wf.Status.Conditions {
		if c.Type == wfv1.ConditionTypeMetricsError {
			t.Errorf("workflow %s: metrics error: %s", wf.Name, c.Message)
		}
	}
}

// labelsOf is the namespace and database labels of a case's metrics, plus more.
func (c *argoCase) labelsOf(more ...string) map[string]string {
	l := map[string]string{"namespace": c.s.argo.Namespace, "database": c.secret}
	for i := 0; i+1 < len(more); i += 2 {
		l[more[i]] = more[i+1]
	}
	return l
}
