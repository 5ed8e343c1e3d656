package workload

import (
	"strconv"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
)

// FuzzParseRef: a --workload value either fails with a one-line error naming the
// value, or gives a supported kind and a valid object name, and the Ref's own
// spelling (kind/name) reads back to the same Ref, whatever case or short name the
// kind was given in.
func FuzzParseRef(f *testing.F) {
	for _, s := range []string{
		"deployment/web", "deploy/web", "sts/db", "cj/report", "Deployment.apps/web",
		"CRONJOBS.BATCH/x", " deployment/web ", "deployment/", "/web", "deployment",
		"pod/web", "deployment/Web", "deployment/a/b", "deployment/" + strings.Repeat("a", 254),
		"deployment/web\n", "statefulset/db-0.shard", "deployment/-x",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRef(s)
		if err != nil {
			msg := err.Error()
			if strings.ContainsAny(msg, "\n\r") && !strings.ContainsAny(s, "\n\r") {
				t.Fatalf("ParseRef(%q): error is not one line: %q", s, msg)
			}
			if !strings.Contains(msg, "--workload") {
				t.Fatalf("ParseRef(%q): error does not name the flag: %q", s, msg)
			}
			return
		}
		if k, ok := ParseKind(string(r.Kind)); !ok || k != r.Kind {
			t.Fatalf("ParseRef(%q) = %+v: kind is not one of %v", s, r, Kinds())
		}
		if errs := validation.IsDNS1123Subdomain(r.Name); len(errs) > 0 {
			t.Fatalf("ParseRef(%q) accepted the invalid name %q: %v", s, r.Name, errs)
		}
		back, err := ParseRef(r.String())
		if err != nil || back != r {
			t.Fatalf("ParseRef(%q) = %+v, but its String %q reads back as %+v, %v", s, r, r.String(), back, err)
		}
		kind, _, _ := strings.Cut(strings.TrimSpace(s), "/")
		if up, err := ParseRef(strings.ToUpper(kind) + "/" + r.Name); err != nil || up != r {
			t.Fatalf("kind case matters: %q gives %+v, %v", strings.ToUpper(kind)+"/"+r.Name, up, err)
		}
	})
}

// FuzzSelectOptions: --selector and --workload (a comma-separated list, as a
// repeatable flag or an environment variable gives it) validate without panicking;
// an accepted selector prints as a selector that parses back to the same selector;
// every accepted value of --workload is in the selection; scale-down refuses an
// empty selection.
func FuzzSelectOptions(f *testing.F) {
	for _, s := range [][2]string{
		{"app=web", ""}, {"app in (a,b),tier!=db", "deploy/x"}, {"!legacy", ""}, {"", "deploy/web,sts/db"},
		{"app=", ""}, {"a b", ""}, {"app==web", ""}, {"x in ()", ""}, {"app.kubernetes.io/part-of=shop", ""},
		{"=", ""}, {",", ","}, {"app notin (x)", "cronjob/r"}, {"a=b,a=c", ""}, {"a>1", ""},
	} {
		f.Add(s[0], s[1], true)
		f.Add(s[0], s[1], false)
	}
	f.Fuzz(func(t *testing.T, selector, workloads string, requireSome bool) {
		o := &SelectOptions{Selector: selector, RequireSome: requireSome}
		if workloads != "" {
			o.Workloads = *cli.NewStringSlice(strings.Split(workloads, ",")...)
		}
		err := o.Validate()
		if err != nil {
			if msg := err.Error(); strings.ContainsAny(msg, "\n\r") && !strings.ContainsAny(selector+workloads, "\n\r") {
				t.Fatalf("Validate(%q, %q): error is not one line: %q", selector, workloads, msg)
			}
			return
		}
		sel := o.Selection()
		if requireSome && sel.Empty() {
			t.Fatalf("Validate(%q, %q) accepted an empty selection for scale-down", selector, workloads)
		}
		if sel.Selector != nil {
			printed := sel.Selector.String()
			again, err := labels.Parse(printed)
			if err != nil {
				t.Fatalf("selector %q prints as %q, which does not parse: %v", selector, printed, err)
			}
			if again.String() != printed {
				t.Fatalf("selector %q prints as %q, which reads back as %q", selector, printed, again.String())
			}
		}
		n := 0
		for _, v := range o.Workloads.Value() {
			if strings.TrimSpace(v) != "" {
				n++
			}
		}
		if len(sel.Refs) != n {
			t.Fatalf("--workload %q: %d values, %d in the selection", workloads, n, len(sel.Refs))
		}
	})
}

// FuzzRecordAnnotations: whatever a person or tool wrote into the record and
// priority annotations, reading them never panics; a value that is read is what
// scale-down writes for it (round trip); a value that is refused gets a one-line
// error naming the annotation; replica counts are never negative.
func FuzzRecordAnnotations(f *testing.F) {
	for _, s := range []string{"3", "0", " 7 ", "-1", "2147483647", "2147483648", "x", "", "true", "False", "1e3", "+5", "0x10", "٣"} {
		f.Add(s, uint8(0))
		f.Add(s, uint8(2))
	}
	f.Fuzz(func(t *testing.T, value string, kindIndex uint8) {
		kind := Kinds()[int(kindIndex)%len(Kinds())]
		w := &Workload{Ref: Ref{Kind: kind, Name: "w"}, Annotations: map[string]string{}}
		w.Annotations[w.recordKey()] = value
		w.Annotations[AnnotationPriority] = value
		rec, has, err := w.readRecord()
		if !has {
			t.Fatalf("record %q=%q not seen", w.recordKey(), value)
		}
		if err != nil {
			msg := err.Error()
			if !strings.Contains(msg, w.recordKey()) || strings.ContainsAny(msg, "\n\r") {
				t.Fatalf("record %q: error %q does not name %s on one line", value, msg, w.recordKey())
			}
		} else if kind.Scalable() {
			if rec.replicas < 0 {
				t.Fatalf("record %q read as negative replicas %d", value, rec.replicas)
			}
			// What scale-down would write for this count reads back the same.
			w2 := &Workload{Ref: w.Ref, Annotations: map[string]string{AnnotationReplicas: strconv.Itoa(int(rec.replicas))}}
			if rec2, _, err := w2.readRecord(); err != nil || rec2.replicas != rec.replicas {
				t.Fatalf("replicas %d do not round-trip: %+v, %v", rec.replicas, rec2, err)
			}
		} else {
			w2 := &Workload{Ref: w.Ref, Annotations: map[string]string{AnnotationSuspended: strconv.FormatBool(rec.suspended)}}
			if rec2, _, err := w2.readRecord(); err != nil || rec2.suspended != rec.suspended {
				t.Fatalf("suspended %v does not round-trip: %+v, %v", rec.suspended, rec2, err)
			}
		}

		w.Priority = 0
		if err := w.parsePriority(); err != nil {
			if msg := err.Error(); !strings.Contains(msg, AnnotationPriority) || strings.ContainsAny(msg, "\n\r") {
				t.Fatalf("priority %q: error %q does not name %s on one line", value, msg, AnnotationPriority)
			}
			return
		}
		if strings.TrimSpace(value) == "" {
			if w.Priority != 0 {
				t.Fatalf("empty priority read as %d", w.Priority)
			}
			return
		}
		w3 := &Workload{Ref: w.Ref, Annotations: map[string]string{AnnotationPriority: strconv.Itoa(w.Priority)}}
		if err := w3.parsePriority(); err != nil || w3.Priority != w.Priority {
			t.Fatalf("priority %d does not round-trip: %d, %v", w.Priority, w3.Priority, err)
		}
	})
}

// FuzzGroupOrder: the priority groups cover every workload once, are ordered
// (descending for scale-down, ascending for restore), and each group holds one
// priority.
func FuzzGroupOrder(f *testing.F) {
	f.Add([]byte{0, 1, 2, 1, 0}, true)
	f.Add([]byte{5, 5, 5}, false)
	f.Fuzz(func(t *testing.T, prios []byte, desc bool) {
		var ws []*Workload
		for i, p := range prios {
			ws = append(ws, &Workload{Ref: Ref{Kind: Kinds()[i%3], Name: "w" + strconv.Itoa(i)}, Priority: int(int8(p))})
		}
		groups := group(ws, desc)
		seen := map[Ref]bool{}
		for gi, g := range groups {
			if len(g) == 0 {
				t.Fatal("empty group")
			}
			for _, w := range g {
				if w.Priority != g[0].Priority {
					t.Fatalf("group %d mixes priorities %d and %d", gi, g[0].Priority, w.Priority)
				}
				if seen[w.Ref] {
					t.Fatalf("%s in two groups", w.Ref)
				}
				seen[w.Ref] = true
			}
			if gi > 0 {
				prev, cur := groups[gi-1][0].Priority, g[0].Priority
				if (desc && prev <= cur) || (!desc && prev >= cur) {
					t.Fatalf("groups out of order (desc=%v): %d then %d", desc, prev, cur)
				}
			}
		}
		if len(seen) != len(prios) {
			t.Fatalf("%d workloads grouped, %d given", len(seen), len(prios))
		}
	})
}
