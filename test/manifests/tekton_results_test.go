package manifests

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/tektoncd/pipeline/pkg/apis/config"
	"github.com/tektoncd/pipeline/pkg/result"

	"github.com/chartreuse-go/chartreuse/pkg/migrate"
	"github.com/chartreuse-go/chartreuse/pkg/sqlrisk"
	"github.com/chartreuse-go/chartreuse/pkg/workload"
)

// Tekton carries all of a TaskRun's results in one termination message of
// 4096 bytes (max-result-size) and fails the TaskRun beyond. plan's results at
// their largest must fit: the risks result at its bound, superseded-holds at
// workload.MaxSupersededHolds uids (an attack on the real Tekton: 8 holders
// beside a bounded risks list failed every plan for good), every other
// declared result at its longest. Each value is escaped as the entrypoint
// writes it.
func TestPlanResultsFitTektonTerminationMessage(t *testing.T) {
	task := tektonTasks(t)["chartreuse-plan"]
	if task == nil {
		t.Fatal("no Task chartreuse-plan")
	}
	r := sqlrisk.RuleByName("create-index")
	var risks []sqlrisk.Risk
	for i := range 60 {
		risks = append(risks, sqlrisk.Risk{File: "00042_indexes_<\"quoted\">.sql", Line: i + 1, Kind: r.Kind, Lock: r.Lock, Table: `"public"."<orders & co>"`,
			SizeBytes: 1 << 40, Size: sqlrisk.HumanSize(1 << 40), Scans: true, Rule: r.Name, Level: r.Level, What: r.What, Advice: r.Advice})
	}
	risksJSON, _ := json.Marshal(migrate.RisksResult(risks))
	uids := make([]string, workload.MaxSupersededHolds)
	for i := range uids {
		uids[i] = "0f8d2c1e-6b7a-4c3d-9e2f-1a2b3c4d5e6f"
	}
	worst := map[string]string{
		"pending":           "false",
		"current-version":   "9223372036854775807",
		"target-version":    "9223372036854775807",
		"files-digest":      strings.Repeat("f", 64),
		"git-commit":        strings.Repeat("c", 40),
		"migrations-digest": "sha256:" + strings.Repeat("d", 64),
		"risks":             string(risksJSON),
		"needs-downtime":    "false",
		"superseded-holds":  strings.Join(uids, ","),
	}
	msg := []result.RunResult{{Key: "StartedAt", Value: "2026-12-07T08:24:35.123Z", ResultType: result.InternalTektonResultType}}
	for _, res := range task.Spec.Results {
		v, ok := worst[res.Name]
		if !ok {
			t.Errorf("plan declares the result %s, which this test has no largest value for: add it", res.Name)
		}
		msg = append(msg, result.RunResult{Key: res.Name, Value: v, ResultType: result.TaskRunResultType})
	}
	b, err := json.Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > config.DefaultMaxResultSize {
		t.Errorf("plan's results take up to %d bytes of termination message (risks %d bytes, %d holders), more than Tekton's %d", len(b), len(risksJSON), len(uids), config.DefaultMaxResultSize)
	}
	t.Logf("plan's largest termination message: %d of %d bytes", len(b), config.DefaultMaxResultSize)
}
