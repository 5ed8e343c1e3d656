package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"
)

// auditWindow is one measured stop (from the first change to the last pod
// gone), for the summary of the API server's audit log.
type auditWindow struct {
	side     int // 0 chartreuse, 1 sequential
	from, to time.Time
}

type auditEvent struct {
	Verb      string `json:"verb"`
	UserAgent string `json:"userAgent"`
	User      struct {
		Username string `json:"username"`
	} `json:"user"`
	ObjectRef struct {
		Resource    string `json:"resource"`
		Subresource string `json:"subresource"`
		Namespace   string `json:"namespace"`
	} `json:"objectRef"`
	ResponseStatus struct {
		Code int `json:"code"`
	} `json:"responseStatus"`
	Received time.Time `json:"requestReceivedTimestamp"`
}

// actor names who made a request: a controller by its service account
// (kube-controller-manager runs with --use-service-account-credentials), the
// kubelet, or the client's program.
func (e auditEvent) actor() string {
	if sa, ok := strings.CutPrefix(e.User.Username, "system:serviceaccount:kube-system:"); ok {
		return sa
	}
	if strings.HasPrefix(e.User.Username, "system:node:") {
		return "kubelet"
	}
	prog, _, _ := strings.Cut(e.UserAgent, " ")
	prog, _, _ = strings.Cut(prog, "/v") // bench/v0.0.0 (linux/amd64) ...
	return prog
}

// summarizeAudit reads the audit log written by test/kubeenv (Options.AuditLog)
// and counts, per cycle on each side, the writes made in namespace ns within
// the windows, by who, verb, resource and answer; and when the ReplicaSet
// controller deleted its first pod after the window began.
func summarizeAudit(path, ns string, windows []auditWindow) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	type key struct{ actor, verb, resource string }
	counts := [2]map[key]int{{}, {}}
	var cycles [2]int
	for _, w := range windows {
		cycles[w.side]++
	}
	firstDelete := make([]time.Time, len(windows))
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var e auditEvent
		if json.Unmarshal(sc.Bytes(), &e) != nil || e.ObjectRef.Namespace != ns || e.Verb == "get" {
			continue
		}
		for i, w := range windows {
			if e.Received.Before(w.from) || e.Received.After(w.to) {
				continue
			}
			res := e.ObjectRef.Resource
			if e.ObjectRef.Subresource != "" {
				res += "/" + e.ObjectRef.Subresource
			}
			counts[w.side][key{e.actor(), e.Verb, fmt.Sprintf("%s %d", res, e.ResponseStatus.Code)}]++
			if res == "pods" && e.Verb == "delete" && e.actor() == "replicaset-controller" && firstDelete[i].IsZero() {
				firstDelete[i] = e.Received
			}
		}
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	var keys []key
	for k := range counts[0] {
		keys = append(keys, k)
	}
	for k := range counts[1] {
		if _, dup := counts[0][k]; !dup {
			keys = append(keys, k)
		}
	}
	sort.Slice(keys, func(i, j int) bool {
		a, b := keys[i], keys[j]
		if a.actor != b.actor {
			return a.actor < b.actor
		}
		return a.resource+a.verb < b.resource+b.verb
	})
	perCycle := func(side int, k key) string {
		if cycles[side] == 0 {
			return "-"
		}
		return fmt.Sprintf("%.0f", float64(counts[side][k])/float64(cycles[side]))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "   API server audit log, writes per cycle from the first change until the last pod was gone (chartreuse | sequential):\n")
	for _, k := range keys {
		fmt.Fprintf(&b, "     %-24s %-7s %-26s %5s | %s\n", k.actor, k.verb, k.resource, perCycle(0, k), perCycle(1, k))
	}
	var first [2][]time.Duration
	for i, w := range windows {
		if !firstDelete[i].IsZero() {
			first[w.side] = append(first[w.side], firstDelete[i].Sub(w.from))
		}
	}
	if len(first[0]) > 0 && len(first[1]) > 0 {
		fmt.Fprintf(&b, "   first pod deleted by the ReplicaSet controller after the first change: chartreuse %s [%s], sequential %s [%s]\n",
			ms(median(first[0])), spread(first[0]), ms(median(first[1])), spread(first[1]))
	}
	return b.String(), nil
}
