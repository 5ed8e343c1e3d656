package e2e

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
)

// metricSample is one line of the Prometheus text exposition.
type metricSample struct {
	name   string
	labels map[string]string
	value  float64
}

// parseMetrics reads the text exposition: comments skipped, label values
// unescaped (\\, \", \n).
func parseMetrics(text string) []metricSample {
	var out []metricSample
	for line := range strings.SplitSeq(text, "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		m := metricSample{labels: map[string]string{}}
		rest := line
		if i := strings.IndexByte(line, '{'); i >= 0 {
			m.name, rest = line[:i], line[i+1:]
			for len(rest) > 0 && rest[0] != '}' {
				eq := strings.Index(rest, `="`)
				if eq < 0 {
					break
				}
				key := rest[:eq]
				rest = rest[eq+2:]
				var b strings.Builder
				for len(rest) > 0 && rest[0] != '"' {
					if rest[0] == '\\' && len(rest) > 1 {
						if rest[1] == 'n' {
							b.WriteByte('\n')
						} else {
							b.WriteByte(rest[1])
						}
						rest = rest[2:]
						continue
					}
					b.WriteByte(rest[0])
					rest = rest[1:]
				}
				m.labels[key] = b.String()
				rest = strings.TrimPrefix(strings.TrimPrefix(rest, `"`), ",")
			}
			rest = strings.TrimPrefix(rest, "}")
		} else if sp := strings.IndexByte(line, ' '); sp >= 0 {
			m.name, rest = line[:sp], line[sp:]
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			continue
		}
		m.value = v
		out = append(out, m)
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
