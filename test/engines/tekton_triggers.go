package engines

// Tekton Triggers on the local test cluster, beside Tekton Pipelines
// (InstallTekton first), installed the way its release manifests install it,
// minus the webhook:
//
//   - the controller, eventlistenersink and interceptors commands are built from
//     the github.com/tektoncd/triggers module pinned in the product's go.mod
//     (test/tools/triggers/build.sh, the same version) and packed into images
//     (/ko-app/<name>) imported into the node's containerd;
//   - from the module's config/: the RBAC, the config maps, the controller
//     Deployment with its ko:// references (its own image and -el-image, the
//     sink of every EventListener it makes) replaced by those images, and the
//     core interceptors (Deployment, Service, the github/gitlab/cel/...
//     ClusterInterceptors). EventListeners then run as the controller makes
//     them: a Deployment and a Service el-<name> in their namespace;
//   - not installed: the webhook. It only defaults and validates, and the
//     defaults it sets are those of objects written for older versions; the
//     e2e validates the project's objects in-process instead.
//
// Two settings differ from a release installation, both forced by the cluster:
//
//   - it has no DNS (pods get no name server), so a sink cannot resolve
//     tekton-triggers-core-interceptors.tekton-pipelines.svc. The core
//     ClusterInterceptors are addressed by the Service's ClusterIP
//     (clientConfig.url), and the interceptors' serving certificate, which the
//     interceptors would otherwise make themselves (for the DNS names only), is
//     made here and also names that IP. The interceptors serve the certificate
//     from their Secret and put its CA in the ClusterInterceptors' caBundle as
//     usual;
//   - EventListeners log at debug level: a trigger refused by an interceptor is
//     only ever reported by a debug line of the sink (an event is answered with
//     202 before its triggers run), and the tests need to know that a refused
//     push was processed (Refusal).

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"knative.dev/pkg/apis"
)

const (
	// TriggersController is the Triggers controller Deployment (config/controller.yaml).
	TriggersController = "tekton-triggers-controller"
	// TriggersInterceptors is the core interceptors' Deployment, Service and
	// certificate Secret prefix (config/interceptors/).
	TriggersInterceptors = "tekton-triggers-core-interceptors"
	trKoPrefix           = "ko://" + tkTriggersModule + "/cmd/"
	trInterceptorsPort   = 8443
)

// TriggersCommands are the commands test/tools/triggers/build.sh builds.
var TriggersCommands = []string{"controller", "eventlistenersink", "interceptors"}

// TriggersOptions configure InstallTriggers.
type TriggersOptions struct {
	// BinDir holds TriggersCommands. Default: $CHARTREUSE_TRIGGERS_BIN, else
	// what test/tools/triggers/build.sh prints (it builds them the first time).
	BinDir string
	// ReadyTimeout bounds the wait for the controller and the interceptors
	// (default 3 minutes).
	ReadyTimeout time.Duration
}

// Triggers is Tekton Triggers installed beside tk.
type Triggers struct {
	tk      *Tekton
	Version string // github.com/tektoncd/triggers version, e.g. v0.37.0
	// Images maps each of TriggersCommands to its image reference.
	Images map[string]string
}

// TriggersImageRef is the image reference of one of TriggersCommands.
func TriggersImageRef(cmd, version string) string {
	return "chartreuse.local/triggers-" + cmd + ":" + version
}

var trInstallMu sync.Mutex

// InstallTriggers installs Tekton Triggers next to tk and returns when its
// controller and core interceptors are ready. Idempotent, like InstallTekton.
func InstallTriggers(ctx context.Context, tk *Tekton, opts TriggersOptions) (*Triggers, error) {
	trInstallMu.Lock()
	defer trInstallMu.Unlock()
	start := time.Now()
	tr := &Triggers{tk: tk, Images: map[string]string{}}
	var err error
	if tr.Version, err = requiredVersion(filepath.Join(tk.RepoDir, "go.mod"), tkTriggersModule); err != nil {
		return nil, err
	}
	toolsDir := filepath.Join(tk.RepoDir, "test", "tools", "triggers")
	if v, err := requiredVersion(filepath.Join(toolsDir, "go.mod"), tkTriggersModule); err != nil {
		return nil, err
	} else if v != tr.Version {
		return nil, fmt.Errorf("triggers: test/tools/triggers pins %s, go.mod %s: pin the same version", v, tr.Version)
	}
	binDir := opts.BinDir
	if binDir == "" {
		binDir = os.Getenv("CHARTREUSE_TRIGGERS_BIN")
	}
	if binDir == "" {
		if binDir, err = runBuildScript(ctx, &trBuildMu, filepath.Join(toolsDir, "build.sh"), "test/tools/triggers/build.sh", tk.logf); err != nil {
			return nil, err
		}
	}
	if err := loadCommandImages(ctx, tk.Env, binDir, commandImages{
		engine: "triggers", cmds: TriggersCommands, version: tr.Version, ref: TriggersImageRef,
		dir: "/ko-app/", user: "65532:65532", source: "https://" + tkTriggersModule,
	}, tr.Images); err != nil {
		return nil, err
	}
	if err := tr.applyConfig(ctx); err != nil {
		return nil, err
	}
	timeout := opts.ReadyTimeout
	if timeout == 0 {
		timeout = 3 * time.Minute
	}
	for _, c := range []controller{triggersController(), triggersInterceptors()} {
		if err := tk.cluster.waitController(ctx, c, timeout); err != nil {
			return nil, err
		}
	}
	tk.logf("triggers: Tekton Triggers %s installed in %s", tr.Version, time.Since(start).Round(100*time.Millisecond))
	return tr, nil
}

var trBuildMu sync.Mutex

func triggersController() controller {
	return controller{engine: "triggers", namespace: TektonNamespace, name: TriggersController,
		selector: "app.kubernetes.io/part-of=tekton-triggers,app.kubernetes.io/component=controller", logEachPod: true}
}

func triggersInterceptors() controller {
	return controller{engine: "triggers interceptors", namespace: TektonNamespace, name: TriggersInterceptors,
		selector: "app.kubernetes.io/part-of=tekton-triggers,app.kubernetes.io/component=interceptors", logEachPod: true}
}

// ControllerLog returns the last lines of the Triggers controller's log.
func (tr *Triggers) ControllerLog(ctx context.Context, lines int64) string {
	return tr.tk.controllerLog(ctx, triggersController(), lines)
}

// InterceptorsLog returns the last lines of the core interceptors' log.
func (tr *Triggers) InterceptorsLog(ctx context.Context, lines int64) string {
	return tr.tk.controllerLog(ctx, triggersInterceptors(), lines)
}

// applyConfig applies the release configuration of the triggers module's
// config/ (the CRDs are InstallTekton's), webhook excluded, in dependency
// order: the interceptors' Service, its certificate, the ClusterInterceptors,
// then the Deployments.
func (tr *Triggers) applyConfig(ctx context.Context) error {
	tk := tr.tk
	cfg := filepath.Join(tk.TriggersDir, "config")
	files, err := tkGlob(filepath.Join(cfg, "200-*.yaml"), filepath.Join(cfg, "201-*.yaml"),
		filepath.Join(cfg, "clusterrole-aggregate-*.yaml"), filepath.Join(cfg, "config-*.yaml"),
		filepath.Join(cfg, "controller-service.yaml"))
	if err != nil {
		return err
	}
	if err := tk.cluster.applyFiles(ctx, files, "", TektonFieldManager, trDebugListeners); err != nil {
		return err
	}

	icDir := filepath.Join(cfg, "interceptors")
	icDeploy := filepath.Join(icDir, "core-interceptors-deployment.yaml")
	if err := tk.cluster.applyFiles(ctx, []string{icDeploy}, "", TektonFieldManager, func(u *unstructured.Unstructured) (bool, error) {
		return u.GetKind() == "Service", nil
	}); err != nil {
		return err
	}
	svc, err := tk.Kube.CoreV1().Services(TektonNamespace).Get(ctx, TriggersInterceptors, metav1.GetOptions{})
	if err != nil {
		return err
	}
	ip := net.ParseIP(svc.Spec.ClusterIP)
	if ip == nil {
		return fmt.Errorf("triggers: Service %s has no ClusterIP (%q)", TriggersInterceptors, svc.Spec.ClusterIP)
	}
	ca, err := tr.interceptorsCert(ctx, ip)
	if err != nil {
		return err
	}
	if err := tk.cluster.applyFiles(ctx, []string{filepath.Join(icDir, "core-interceptors.yaml")}, "", TektonFieldManager, func(u *unstructured.Unstructured) (bool, error) {
		return true, trAddressByIP(u, ip, ca)
	}); err != nil {
		return err
	}
	return tk.cluster.applyFiles(ctx, []string{icDeploy, filepath.Join(cfg, "controller.yaml")}, "", TektonFieldManager, func(u *unstructured.Unstructured) (bool, error) {
		if u.GetKind() != "Deployment" {
			return u.GetKind() != "Service", nil // applied above
		}
		return true, tr.resolveImages(u)
	})
}

// trDebugListeners sets the EventListeners' log level to debug in
// config-logging-triggers (see the file comment).
func trDebugListeners(u *unstructured.Unstructured) (bool, error) {
	if u.GetKind() == "ConfigMap" && u.GetName() == "config-logging-triggers" {
		if _, ok, _ := unstructured.NestedString(u.Object, "data", "loglevel.eventlistener"); !ok {
			return false, errors.New("config-logging-triggers has no loglevel.eventlistener")
		}
		return true, unstructured.SetNestedField(u.Object, "debug", "data", "loglevel.eventlistener")
	}
	return true, nil
}

// trAddressByIP points a core ClusterInterceptor at the interceptors'
// ClusterIP instead of the Service's DNS name, with the CA of the certificate.
func trAddressByIP(u *unstructured.Unstructured, ip net.IP, ca []byte) error {
	if u.GetKind() != "ClusterInterceptor" {
		return fmt.Errorf("core-interceptors.yaml: unexpected %s %s", u.GetKind(), u.GetName())
	}
	svc, ok, _ := unstructured.NestedMap(u.Object, "spec", "clientConfig", "service")
	if !ok || svc["name"] != TriggersInterceptors {
		return fmt.Errorf("ClusterInterceptor %s: clientConfig.service is not %s", u.GetName(), TriggersInterceptors)
	}
	path, _ := svc["path"].(string)
	url := fmt.Sprintf("https://%s/%s", net.JoinHostPort(ip.String(), fmt.Sprint(trInterceptorsPort)), path)
	// caBundle is []byte: base64 in JSON.
	return unstructured.SetNestedMap(u.Object, map[string]any{"url": url, "caBundle": base64.StdEncoding.EncodeToString(ca)}, "spec", "clientConfig")
}

// resolveImages does to a Deployment what `ko resolve` does: every ko://
// reference of the triggers module (image or argument) becomes our image.
func (tr *Triggers) resolveImages(u *unstructured.Unstructured) error {
	containers, _, err := unstructured.NestedSlice(u.Object, "spec", "template", "spec", "containers")
	if err != nil || len(containers) != 1 {
		return fmt.Errorf("%s: want one container (%v)", u.GetName(), err)
	}
	c := containers[0].(map[string]any)
	resolve := func(s string) (string, error) {
		if !strings.HasPrefix(s, trKoPrefix) {
			return s, nil
		}
		ref, ok := tr.Images[strings.TrimPrefix(s, trKoPrefix)]
		if !ok {
			return "", fmt.Errorf("%s: no image for %s", u.GetName(), s)
		}
		return ref, nil
	}
	img, _ := c["image"].(string)
	if c["image"], err = resolve(img); err != nil {
		return err
	}
	c["imagePullPolicy"] = "Never"
	args, _ := c["args"].([]any)
	for i, a := range args {
		s, _ := a.(string)
		if args[i], err = resolve(s); err != nil {
			return err
		}
		if s, _ := args[i].(string); strings.Contains(s, "://") {
			return fmt.Errorf("%s: unresolved image argument %q", u.GetName(), s)
		}
	}
	if img, _ := c["image"].(string); strings.Contains(img, "://") {
		return fmt.Errorf("%s: unresolved image %q", u.GetName(), img)
	}
	containers[0] = c
	return unstructured.SetNestedSlice(u.Object, containers, "spec", "template", "spec", "containers")
}

// The keys of the interceptors' certificate Secret (knative's certificates
// resources, which the interceptors read).
const (
	trServerKey  = "server-key.pem"
	trServerCert = "server-cert.pem"
	trCACert     = "ca-cert.pem"
)

// interceptorsCert makes sure the interceptors' Secret holds a certificate for
// the Service's DNS names and ip, signed by a CA it also holds, and returns
// that CA. A certificate already there that fits is kept (installs are
// repeated on a shared cluster, and the running interceptors serve it).
func (tr *Triggers) interceptorsCert(ctx context.Context, ip net.IP) ([]byte, error) {
	secrets := tr.tk.Kube.CoreV1().Secrets(TektonNamespace)
	name := TriggersInterceptors + "-certs"
	sec, err := secrets.Get(ctx, name, metav1.GetOptions{})
	missing := apierrors.IsNotFound(err)
	if err != nil && !missing {
		return nil, err
	}
	if !missing && trCertFits(sec.Data, ip) {
		return sec.Data[trCACert], nil
	}
	data, err := trMakeCert(ip)
	if err != nil {
		return nil, err
	}
	if missing {
		sec = &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: TektonNamespace, Labels: map[string]string{
			"app.kubernetes.io/name": "core-interceptors", "app.kubernetes.io/component": "interceptors",
			"app.kubernetes.io/instance": "default", "app.kubernetes.io/part-of": "tekton-triggers",
		}}, Data: data}
		_, err = secrets.Create(ctx, sec, metav1.CreateOptions{})
	} else {
		sec.Data = data
		_, err = secrets.Update(ctx, sec, metav1.UpdateOptions{})
	}
	if err != nil {
		return nil, err
	}
	return data[trCACert], nil
}

func trDNSNames() []string {
	n := TriggersInterceptors
	ns := TektonNamespace
	return []string{n, n + "." + ns, n + "." + ns + ".svc", n + "." + ns + ".svc.cluster.local"}
}

// trCertFits: data holds a key pair whose certificate is valid for another
// day, signed by its CA, for ip.
func trCertFits(data map[string][]byte, ip net.IP) bool {
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(data[trCACert]) || len(data[trServerKey]) == 0 {
		return false
	}
	b, _ := pem.Decode(data[trServerCert])
	if b == nil {
		return false
	}
	cert, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		return false
	}
	_, err = cert.Verify(x509.VerifyOptions{Roots: roots, DNSName: ip.String(), CurrentTime: time.Now().Add(24 * time.Hour)})
	return err == nil
}

// trMakeCert makes a CA and a serving certificate for the interceptors'
// Service names and ip, valid for ten years.
func trMakeCert(ip net.IP) (map[string][]byte, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now().Add(-time.Hour)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "chartreuse-tests triggers interceptors CA"},
		NotBefore: now, NotAfter: now.AddDate(10, 0, 0), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: trDNSNames()[2]},
		NotBefore: now, NotAfter: now.AddDate(10, 0, 0),
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:    trDNSNames(), IPAddresses: []net.IP{ip},
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return map[string][]byte{
		trServerKey:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
		trServerCert: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		trCACert:     pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
	}, nil
}

// ListenerURL waits until the EventListener name in ns is ready and its
// Service el-<name> has a ready endpoint, and returns the endpoint's URL
// (http://<pod IP>:<port>). The test process sends to the endpoint the Service
// selects: it is on the cluster's bridge, while ClusterIPs are only translated
// for traffic from pods here (from the host, the service range is blackholed).
func (tr *Triggers) ListenerURL(ctx context.Context, ns, name string) (string, error) {
	var last string
	for {
		url, why, err := tr.listenerURL(ctx, ns, name)
		if err != nil || url != "" {
			return url, err
		}
		last = why
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("EventListener %s/%s not ready: %s\n--- Triggers controller log:\n%s", ns, name, last, tr.ControllerLog(context.Background(), 30))
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func (tr *Triggers) listenerURL(ctx context.Context, ns, name string) (url, why string, err error) {
	el, err := tr.tk.Triggers.TriggersV1beta1().EventListeners(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return "", "", err
	}
	if c := el.Status.GetCondition(apis.ConditionReady); c == nil || !c.IsTrue() {
		return "", fmt.Sprintf("condition Ready: %v", c), nil
	}
	svc := "el-" + name
	slices, err := tr.tk.Kube.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + svc})
	if err != nil {
		return "", "", err
	}
	for _, s := range slices.Items {
		var port int32
		for _, p := range s.Ports {
			if p.Name != nil && *p.Name == "http-listener" && p.Port != nil {
				port = *p.Port
			}
		}
		for _, e := range s.Endpoints {
			if port != 0 && len(e.Addresses) > 0 && e.Conditions.Ready != nil && *e.Conditions.Ready {
				return fmt.Sprintf("http://%s", net.JoinHostPort(e.Addresses[0], fmt.Sprint(port))), "", nil
			}
		}
	}
	return "", "Service " + svc + " has no ready http-listener endpoint", nil
}

// Send posts a webhook to the EventListener at url (ListenerURL) and returns
// the event ID the listener answered with (202 Accepted). The listener answers
// before its triggers run: see Refusal and the PipelineRuns labelled
// triggers.tekton.dev/triggers-eventid.
func Send(ctx context.Context, url string, body []byte, header http.Header) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header = header.Clone()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusAccepted {
		return "", fmt.Errorf("EventListener answered %s: %s", resp.Status, b)
	}
	var r struct {
		EventID string `json:"eventID"`
	}
	if err := json.Unmarshal(b, &r); err != nil || r.EventID == "" {
		return "", fmt.Errorf("EventListener answer %q: no eventID (%v)", b, err)
	}
	return r.EventID, nil
}

// Refusal waits until the EventListener name in ns has processed the trigger
// of the event eventID, and returns why an interceptor refused it. It fails
// when the trigger was not refused (the sink resolved its parameters to create
// resources) or failed otherwise (an error logged for it), and when ctx ends.
// It reads the sink's log: that is the only place Triggers reports a refusal.
func (tr *Triggers) Refusal(ctx context.Context, ns, name, eventID, trigger string) (string, error) {
	for {
		msg, done, err := tr.refusal(ctx, ns, name, eventID, trigger)
		if done || err != nil {
			return msg, err
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("EventListener %s/%s: no outcome for trigger %s of event %s: %w", ns, name, trigger, eventID, ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
}

const trStopped = "interceptor stopped trigger processing: "

func (tr *Triggers) refusal(ctx context.Context, ns, name, eventID, trigger string) (string, bool, error) {
	pods, err := tr.tk.Kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "eventlistener=" + name})
	if err != nil {
		return "", false, err
	}
	for _, p := range pods.Items {
		raw, err := tr.tk.Kube.CoreV1().Pods(ns).GetLogs(p.Name, &corev1.PodLogOptions{}).DoRaw(ctx)
		if err != nil {
			continue // not started yet
		}
		sc := bufio.NewScanner(bytes.NewReader(raw))
		sc.Buffer(make([]byte, 0, 64*1024), 4*1024*1024)
		for sc.Scan() {
			var l struct {
				Severity string `json:"severity"`
				Message  string `json:"message"`
				EventID  string `json:"/triggers-eventid"`
				Trigger  string `json:"/trigger"`
			}
			if json.Unmarshal(sc.Bytes(), &l) != nil || l.EventID != eventID || l.Trigger != trigger {
				continue
			}
			switch {
			case strings.HasPrefix(l.Message, trStopped):
				return strings.TrimPrefix(l.Message, trStopped), true, nil
			case l.Severity == "error":
				return "", true, fmt.Errorf("trigger %s of event %s failed: %s", trigger, eventID, l.Message)
			case strings.HasPrefix(l.Message, "ResolvedParams"):
				return "", true, fmt.Errorf("trigger %s of event %s was not refused: %s", trigger, eventID, l.Message)
			}
		}
	}
	return "", false, nil
}
