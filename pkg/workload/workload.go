package workload

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
)

// Annotations written and read on the workloads.
const (
	// AnnotationReplicas holds a Deployment's or StatefulSet's spec.replicas before
	// scale-down, as a decimal integer.
	AnnotationReplicas = "chartreuse.io/replicas-before-migration"
	// AnnotationSuspended holds a CronJob's spec.suspend before scale-down: "true" or "false".
	AnnotationSuspended = "chartreuse.io/suspended-before-migration"
	// AnnotationBy names who scaled the workload down (--run-id, e.g. the workflow name).
	AnnotationBy = "chartreuse.io/scaled-down-by"
	// AnnotationAt is when the record was written (and the workload stopped, in the
	// same change), RFC 3339 in UTC with milliseconds.
	AnnotationAt = "chartreuse.io/scaled-down-at"
	// AnnotationByRunUID is the --run-uid of the run that wrote the record: a value
	// unique to that run (Argo's workflow.uid, Tekton's context.pipelineRun.uid),
	// unlike the run id, which a resubmitted workflow may share. A failure path
	// restores only its own run's records by it (scale-restore --only-run-uid).
	AnnotationByRunUID = "chartreuse.io/scaled-down-by-run-uid"
	// AnnotationHeldBy lists, comma-separated, the runs that hold the workload
	// stopped, each as run-uid:secret/key (the scale-down flags --run-uid and
	// --database-secret; ":" and the database are left out when not given), the
	// record's writer first. A run of several databases (issue 15) joins them
	// with "+" (run-uid:orders-db/url+billing-db/url), which no Secret name or key
	// contains. A second run's scale-down (another database of the
	// same application, migrated at once) adds itself. scale-restore
	// --only-run-uid takes its run off the list (and, with --supersede-database,
	// the earlier runs for the same databases, which its migration superseded) and
	// restores the workload only when no run is left on it. A restore without
	// --only-run-uid (a person's) restores it whoever holds it.
	AnnotationHeldBy = "chartreuse.io/held-by"
	// AnnotationPriority orders the work (read only): an integer, default 0; higher
	// stops first and is restored last.
	AnnotationPriority = "chartreuse.io/stop-priority"
)

// recordTimeFormat writes AnnotationAt: RFC 3339 with milliseconds, so that the
// downtime scale-restore reports is not rounded to whole seconds.
const recordTimeFormat = "2006-01-02T15:04:05.000Z07:00"

// recordAnnotations are the annotations scale-restore removes.
var recordAnnotations = []string{AnnotationReplicas, AnnotationSuspended, AnnotationBy, AnnotationAt, AnnotationByRunUID, AnnotationHeldBy}

// Workload is what the steps need to know about one workload object.
type Workload struct {
	Ref
	UID             types.UID
	ResourceVersion string
	Generation      int64
	Annotations     map[string]string
	Labels          map[string]string
	Priority        int

	Replicas int32 // spec.replicas (Deployment, StatefulSet)
	// status.observedGeneration and status.replicas (Deployment, StatefulSet)
	ObservedGeneration int64
	StatusReplicas     int32
	PodSelector        labels.Selector // spec.selector (Deployment, StatefulSet)
	Suspended          bool            // spec.suspend (CronJob)
	// DeletesVolumes: a StatefulSet whose controller deletes the
	// PersistentVolumeClaims of the pods that scaling down removes (claim
	// templates and persistentVolumeClaimRetentionPolicy.whenScaled: Delete).
	DeletesVolumes bool
	ActiveJobs     []types.UID // status.active (CronJob): the Jobs whose pods belong to it

	// templateDigest (Deployment): its pod template's, without the
	// pod-template-hash label, to tell its current ReplicaSet (recover.go).
	templateDigest string

	// awaitController: scale-down changed the replicas (or cannot tell that the
	// controller saw an earlier change), so its wait needs the controller to
	// report the new generation.
	awaitController bool
}

// settledAtZero reports a Deployment or StatefulSet whose spec asks for no
// replicas and whose controller has seen that spec and counts no pods: its
// controller creates no pod, whatever else changes in its metadata.
func (w *Workload) settledAtZero() bool {
	return w.Replicas == 0 && w.ObservedGeneration >= w.Generation && w.StatusReplicas == 0
}

func newWorkload(kind Kind, meta *metav1.ObjectMeta) *Workload {
	return &Workload{
		Ref:             Ref{Kind: kind, Name: meta.Name},
		UID:             meta.UID,
		ResourceVersion: meta.ResourceVersion,
		Generation:      meta.Generation,
		Annotations:     meta.Annotations,
		Labels:          meta.Labels,
	}
}

func fromDeployment(d *appsv1.Deployment) (*Workload, error) {
	w := newWorkload(Deployment, &d.ObjectMeta)
	w.Replicas = replicas(d.Spec.Replicas)
	w.ObservedGeneration, w.StatusReplicas = d.Status.ObservedGeneration, d.Status.Replicas
	if w.Replicas == 0 { // only a Deployment at 0 takes a record back (recover.go)
		w.templateDigest = templateDigest(&d.Spec.Template)
	}
	return w, w.selector(d.Spec.Selector)
}

// templateDigest is a digest of t without the pod-template-hash label, which
// the deployment controller adds to its ReplicaSets' copies: a Deployment's and
// its current ReplicaSet's are equal (both defaulted by the API server).
func templateDigest(t *corev1.PodTemplateSpec) string {
	c := t.DeepCopy()
	delete(c.Labels, appsv1.DefaultDeploymentUniqueLabelKey)
	if len(c.Labels) == 0 {
		c.Labels = nil
	}
	b, err := json.Marshal(c)
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func fromStatefulSet(s *appsv1.StatefulSet) (*Workload, error) {
	w := newWorkload(StatefulSet, &s.ObjectMeta)
	w.Replicas = replicas(s.Spec.Replicas)
	w.ObservedGeneration, w.StatusReplicas = s.Status.ObservedGeneration, s.Status.Replicas
	// only the claims made from its volumeClaimTemplates are deleted
	w.DeletesVolumes = len(s.Spec.VolumeClaimTemplates) > 0 && s.Spec.PersistentVolumeClaimRetentionPolicy != nil &&
		s.Spec.PersistentVolumeClaimRetentionPolicy.WhenScaled == appsv1.DeletePersistentVolumeClaimRetentionPolicyType
	return w, w.selector(s.Spec.Selector)
}

func fromCronJob(c *batchv1.CronJob) (*Workload, error) {
	w := newWorkload(CronJob, &c.ObjectMeta)
	w.Suspended = c.Spec.Suspend != nil && *c.Spec.Suspend
	for _, j := range c.Status.Active {
		w.ActiveJobs = append(w.ActiveJobs, j.UID)
	}
	return w, nil
}

// replicas applies the API default of 1 to an unset spec.replicas.
func replicas(r *int32) int32 {
	if r == nil {
		return 1
	}
	return *r
}

func (w *Workload) selector(ls *metav1.LabelSelector) error {
	sel, err := metav1.LabelSelectorAsSelector(ls)
	if err != nil {
		return fmt.Errorf("%s: reading spec.selector: %w", w, err)
	}
	if sel.Empty() {
		// An empty selector would match every pod in the namespace; the API refuses
		// it for these kinds, so seeing one means something is off: match nothing.
		sel = labels.Nothing()
	}
	w.PodSelector = sel
	return nil
}

// parsePriority reads chartreuse.io/stop-priority.
func (w *Workload) parsePriority() error {
	v, ok := w.Annotations[AnnotationPriority]
	if !ok || strings.TrimSpace(v) == "" {
		return nil
	}
	p, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil {
		return fmt.Errorf("%s: annotation %s=%q is not an integer", w, AnnotationPriority, v)
	}
	w.Priority = p
	return nil
}

// record is what scale-down wrote on a workload.
type record struct {
	replicas  int32 // scalable kinds
	suspended bool  // CronJobs
	by, at    string
	runUID    string // "" for a record of a run without --run-uid
	heldBy    string // AnnotationHeldBy as written; "" when only the writer holds it
}

// noRunUID stands for a record's writer without --run-uid in AnnotationHeldBy.
const noRunUID = "none"

// holder is one run holding a workload stopped.
type holder struct {
	runUID   string // noRunUID for a run without --run-uid
	database string // its --database-secret: one database (secret/key), or several joined by "+"; "" when not known
	// created is when the holder's run was created (--run-created), in Unix
	// seconds; 0 when not known (a holder written before it, a person's).
	created int64
}

// CreatedSeparator joins a holder's run uid and the time its run was created
// in AnnotationHeldBy: <uid>@<unix seconds>:<databases>.
const CreatedSeparator = "@"

// olderThan reports whether the holder's run was created before a run created
// at created (Unix seconds): a run lets go only of the holds of runs older
// than itself, never of a later run's keep-down (an argo retry of an old run
// reruns its plan and scale-down, and succeeds after that later run). A time
// not known on either side counts as older, as before times were recorded;
// the same second does not.
func (h holder) olderThan(created int64) bool {
	if created <= 0 || h.created <= 0 {
		return true
	}
	return h.created < created
}

// DatabaseSeparator joins the databases of a run of several in its holder
// entry and in --database-secret and --supersede-database.
const DatabaseSeparator = "+"

// KeySeparator separates a database's Secret from the key holding its URL in
// those lists (secret/key): neither a Secret name nor a key can contain it.
const KeySeparator = "/"

// supersededBy reports whether a run that migrated every database of set
// successfully supersedes this holder: only when the holder names at least one
// database and every one it names is in set. A holder naming a database the
// run did not migrate (or an empty piece, a hand-edited entry) keeps holding.
func (h holder) supersededBy(set map[string]bool) bool {
	if h.database == "" || len(set) == 0 {
		return false
	}
	for _, db := range strings.Split(h.database, DatabaseSeparator) {
		if !set[strings.TrimSpace(db)] {
			return false
		}
	}
	return true
}

func (h holder) String() string {
	id := h.runUID
	if h.created > 0 {
		id += CreatedSeparator + strconv.FormatInt(h.created, 10)
	}
	if h.database == "" {
		return id
	}
	return id + ":" + h.database
}

func parseHolders(v string) []holder {
	var hs []holder
	for _, e := range strings.Split(v, ",") {
		if e = strings.TrimSpace(e); e == "" {
			continue
		}
		uid, db, _ := strings.Cut(e, ":")
		if uid = strings.TrimSpace(uid); uid == "" {
			continue
		}
		h := holder{runUID: uid, database: strings.TrimSpace(db)}
		// A time that is not a positive integer (a hand edit) stays in the uid,
		// which then matches no run: the safe side.
		if id, ts, ok := strings.Cut(uid, CreatedSeparator); ok {
			if n, err := strconv.ParseInt(ts, 10, 64); err == nil && n > 0 && id != "" {
				h.runUID, h.created = id, n
			}
		}
		hs = append(hs, h)
	}
	return hs
}

func formatHolders(hs []holder) string {
	parts := make([]string, len(hs))
	for i, h := range hs {
		parts[i] = h.String()
	}
	return strings.Join(parts, ",")
}

// holders are the runs holding the workload stopped, the writer first. A record
// without AnnotationHeldBy (written before it existed), or with one that names no
// run (edited by hand), is held by its writer, database unknown.
func (rec record) holders() []holder {
	if hs := parseHolders(rec.heldBy); len(hs) > 0 {
		return hs
	}
	if rec.runUID == "" {
		return []holder{{runUID: noRunUID}}
	}
	return []holder{{runUID: rec.runUID}}
}

// heldByRun reports whether the run with uid is among the holders.
func (rec record) heldByRun(uid string) bool {
	for _, h := range rec.holders() {
		if h.runUID == uid {
			return true
		}
	}
	return false
}

// letGo is what one restore (scale-restore --only-run-uid) lets go of: its
// own run and, after a successful migration of databases, the runs that
// migration supersedes.
type letGo struct {
	uid string
	// databases the run migrated successfully (--supersede-database), secret/key
	databases map[string]bool
	// runs plan found holding the selection for those databases
	// (--supersede-runs): superseded wherever they stand in the list, as plan
	// read them before this run did anything. A run with nothing pending holds
	// nothing, so only this list lets it supersede a keep-down.
	runs map[string]bool
	// created is when the run was created (Unix seconds, 0: not known): it
	// lets go of no holder of a run created after it.
	created int64
}

func newLetGo(uid, supersede, runs string, created int64) letGo {
	g := letGo{uid: uid, databases: databaseSet(supersede), runs: map[string]bool{}, created: created}
	for _, r := range strings.Split(runs, ",") {
		if r = strings.TrimSpace(r); r != "" && r != uid {
			g.runs[r] = true
		}
	}
	return g
}

// databaseSet is the set of the databases of list (secret/key joined by "+"),
// blanks and empty pieces left out.
func databaseSet(list string) map[string]bool {
	set := map[string]bool{}
	for _, db := range strings.Split(list, DatabaseSeparator) {
		if db = strings.TrimSpace(db); db != "" {
			set[db] = true
		}
	}
	return set
}

// lets reports whether holder h, at index i of a list where the run's own
// entry is at own (-1: absent), is let go: the run itself; a run before it
// whose databases it superseded; a run plan listed, whose databases it
// superseded too (checked again here: the list is input).
func (g letGo) lets(h holder, i, own int) bool {
	switch {
	case h.runUID == g.uid:
		return true
	case !h.supersededBy(g.databases), !h.olderThan(g.created):
		return false
	}
	return i < own || g.runs[h.runUID]
}

// holdersLeft are the holders once g lets go: the run itself and every run it
// supersedes. A run supersedes the runs whose databases are all among those it
// migrated successfully (secret/key joined by "+"): its migration supersedes
// what earlier runs for them decided (the database locks keep two runs for one
// database from overlapping). A run for one database supersedes an earlier run
// of several only if that run named no other database, as the others may still
// be at a version the application cannot run against. A holder whose database
// is not known (a person's scale-down, a hand-edited list) is never superseded:
// the workload then waits for a person rather than risk coming back in the
// middle of someone's migration.
//
// "Earlier" is the order of the list (each scale-down appends itself) or
// plan's list of the holders it found: the lock does not order an `argo retry`
// of an old run, which can succeed after a later run kept the application
// down; that later run's decision stands, as the old run's plan never saw it.
func (rec record) holdersLeft(g letGo) []holder {
	hs := rec.holders()
	own := slices.IndexFunc(hs, func(h holder) bool { return h.runUID == g.uid })
	var rest []holder
	for i, h := range hs {
		if !g.lets(h, i, own) {
			rest = append(rest, h)
		}
	}
	return rest
}

// letGoBy reports whether g lets go of any holder of rec: the record is then
// the run's to restore, or to release.
func (rec record) letGoBy(g letGo) bool {
	return len(rec.holdersLeft(g)) < len(rec.holders())
}

// readRecord returns the workload's record, if it carries one.
func (w *Workload) readRecord() (record, bool, error) {
	key := w.recordKey()
	v, ok := w.Annotations[key]
	if !ok {
		return record{}, false, nil
	}
	rec := recordOf(w)
	if w.Kind.Scalable() {
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 32)
		if err != nil || n < 0 {
			return record{}, true, fmt.Errorf("%s: annotation %s=%q is not a replica count; set it to the replicas to restore, or remove it", w, key, v)
		}
		rec.replicas = int32(n)
	} else {
		b, err := strconv.ParseBool(strings.TrimSpace(v))
		if err != nil {
			return record{}, true, fmt.Errorf("%s: annotation %s=%q is not true or false; fix or remove it", w, key, v)
		}
		rec.suspended = b
	}
	return rec, true, nil
}

// recordKey is the annotation that holds the workload's record.
func (w *Workload) recordKey() string {
	if w.Kind.Scalable() {
		return AnnotationReplicas
	}
	return AnnotationSuspended
}

// outcome is the workload's state as scale-down and scale-restore report it:
// its replicas, or for a CronJob whether it is suspended.
func (w *Workload) outcome() Outcome {
	if w.Kind.Scalable() {
		return Outcome{Ref: w.Ref, Value: strconv.Itoa(int(w.Replicas))}
	}
	return Outcome{Ref: w.Ref, Value: cronValue(w.Suspended)}
}

// hasRecord reports whether the workload carries a record.
func (w *Workload) hasRecord() bool {
	_, ok := w.Annotations[w.recordKey()]
	return ok
}

// group splits workloads into priority groups, in the order given by desc.
func group(ws []*Workload, desc bool) [][]*Workload {
	sort.SliceStable(ws, func(i, j int) bool {
		if ws[i].Priority != ws[j].Priority {
			if desc {
				return ws[i].Priority > ws[j].Priority
			}
			return ws[i].Priority < ws[j].Priority
		}
		if ws[i].Kind != ws[j].Kind {
			return ws[i].Kind < ws[j].Kind
		}
		return ws[i].Name < ws[j].Name
	})
	var groups [][]*Workload
	for i, w := range ws {
		if i == 0 || w.Priority != ws[i-1].Priority {
			groups = append(groups, nil)
		}
		groups[len(groups)-1] = append(groups[len(groups)-1], w)
	}
	return groups
}
