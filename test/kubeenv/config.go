package kubeenv

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// writeKubeconfig writes a kubeconfig for a client certificate of the PKI.
func writeKubeconfig(path, server, caFile, certFile, keyFile, user string) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["chartreuse"] = &clientcmdapi.Cluster{Server: server, CertificateAuthority: caFile}
	cfg.AuthInfos[user] = &clientcmdapi.AuthInfo{ClientCertificate: certFile, ClientKey: keyFile}
	cfg.Contexts["chartreuse"] = &clientcmdapi.Context{Cluster: "chartreuse", AuthInfo: user, Namespace: "default"}
	cfg.CurrentContext = "chartreuse"
	return clientcmd.WriteToFile(*cfg, path)
}

// cniConfig is the pod network: one bridge on the pre-created bridge device,
// the gateway on the host, no masquerading (pods never reach beyond the
// machine), addresses from host-local IPAM kept in the state directory.
func cniConfig(st *State) ([]byte, error) {
	conf := map[string]any{
		"cniVersion": "1.0.0",
		"name":       st.CNINetwork,
		"plugins": []any{map[string]any{
			"type":        "bridge",
			"bridge":      st.Bridge,
			"isGateway":   true,
			"ipMasq":      false,
			"hairpinMode": true,
			"ipam": map[string]any{
				"type":    "host-local",
				"ranges":  []any{[]any{map[string]any{"subnet": st.PodCIDR, "gateway": st.BridgeIP}}},
				"routes":  []any{map[string]any{"dst": "0.0.0.0/0"}},
				"dataDir": st.path("cni", "ipam"),
			},
		}},
	}
	return json.MarshalIndent(conf, "", "  ")
}

// containerdConfig starts from `containerd config default` and changes what
// this machine needs (see local-cluster.md): everything under the state
// directory, restrict_oom_score_adj (the sandbox may not lower
// oom_score_adj), cgroupfs, the local pause image, the CNI plugins of the
// Debian package and our own CNI conf_dir, network namespaces mounted under
// the state directory.
func containerdConfig(st *State) (string, error) {
	out, err := exec.Command("containerd", "config", "default").Output()
	if err != nil {
		return "", fmt.Errorf("containerd config default: %w", err)
	}
	const cri = `plugins."io.containerd.grpc.v1.cri"`
	doc := string(out)
	edits := []struct{ section, key, value string }{
		{"", "root", q(st.ContainerdRoot)},
		{"", "state", q(st.ContainerdState)},
		{"grpc", "address", q(st.ContainerdSocket)},
		{cri, "restrict_oom_score_adj", "true"},
		{cri, "sandbox_image", q(st.PauseImage)},
		{cri, "netns_mounts_under_state_dir", "true"},
		{cri, "stream_server_address", q("127.0.0.1")},
		{cri + ".cni", "bin_dir", q("/usr/lib/cni")},
		{cri + ".cni", "conf_dir", q(st.CNIConfDir)},
		{cri + ".containerd.runtimes.runc.options", "SystemdCgroup", "false"},
		{cri + ".containerd.runtimes.runc.options", "Root", q(st.path("containerd", "runc"))},
		{`plugins."io.containerd.internal.v1.opt"`, "path", q(st.path("containerd", "opt"))},
	}
	for _, e := range edits {
		if doc, err = setTOML(doc, e.section, e.key, e.value); err != nil {
			return "", err
		}
	}
	return doc, nil
}

func q(s string) string { return fmt.Sprintf("%q", s) }

var tomlSection = regexp.MustCompile(`^\s*\[([^\[\]]+)\]\s*$`)

// setTOML sets key = value in [section] ("" is the top level) of a TOML
// document as printed by `containerd config default`. The key must exist.
func setTOML(doc, section, key, value string) (string, error) {
	lines := strings.Split(doc, "\n")
	cur := ""
	keyRe := regexp.MustCompile(`^(\s*)` + regexp.QuoteMeta(key) + `\s*=`)
	for i, l := range lines {
		if m := tomlSection.FindStringSubmatch(l); m != nil {
			cur = strings.TrimSpace(m[1])
			continue
		}
		if cur != section {
			continue
		}
		if m := keyRe.FindStringSubmatch(l); m != nil {
			lines[i] = m[1] + key + " = " + value
			return strings.Join(lines, "\n"), nil
		}
	}
	return "", fmt.Errorf("containerd config: no key %q in section [%s]; has `containerd config default` changed?", key, section)
}

func kubeletConfig(st *State, healthzPort int) string {
	return fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: %[1]s
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: %[2]d
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: %[3]s
authorization:
  mode: Webhook
tlsCertFile: %[4]s
tlsPrivateKeyFile: %[5]s
rotateCertificates: false
serverTLSBootstrap: false
containerRuntimeEndpoint: unix://%[6]s
cgroupDriver: cgroupfs
cgroupsPerQOS: false
enforceNodeAllocatable: []
failSwapOn: false
failCgroupV1: false
protectKernelDefaults: false
resolvConf: %[7]s
clusterDomain: cluster.local
podLogsDir: %[8]s
evictionHard:
  memory.available: "1Mi"
  nodefs.available: "0%%"
  nodefs.inodesFree: "0%%"
  imagefs.available: "0%%"
  imagefs.inodesFree: "0%%"
evictionPressureTransitionPeriod: 5s
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
imageMinimumGCAge: 24h
serializeImagePulls: false
maxPods: 110
nodeStatusUpdateFrequency: 5s
nodeStatusReportFrequency: 10s
syncFrequency: 10s
fileCheckFrequency: 10s
shutdownGracePeriod: 0s
shutdownGracePeriodCriticalPods: 0s
`, st.BridgeIP, healthzPort, st.CACert, st.path("pki", "kubelet-serving.crt"), st.path("pki", "kubelet-serving.key"),
		st.ContainerdSocket, st.ResolvConf, st.path("kubelet", "pod-logs"))
}

func kubeProxyConfig(st *State, kubeconfig string) string {
	return fmt.Sprintf(`apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: %[1]s
mode: iptables
hostnameOverride: %[2]s
bindAddress: %[3]s
clusterCIDR: %[4]s
detectLocalMode: ClusterCIDR
nodePortAddresses: ["%[3]s/32"]
metricsBindAddress: 127.0.0.1:10249
healthzBindAddress: 127.0.0.1:10256
iptables:
  localhostNodePorts: false
  masqueradeAll: false
  minSyncPeriod: 0s
  syncPeriod: 30s
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
  udpTimeout: 0s
  udpStreamTimeout: 0s
`, kubeconfig, st.NodeName, st.BridgeIP, st.PodCIDR)
}

func writeFile(path, content string) error {
	return os.WriteFile(path, []byte(content), 0o644)
}

// auditPolicy (Options.AuditLog) records who changes workloads and pods, and
// the scale subresource's reads; watches, lists and everything else are left
// out. One event per request, when its answer is complete.
const auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
omitManagedFields: true
rules:
- level: Request
  verbs: [get, update, patch]
  resources:
  - group: apps
    resources: [deployments/scale, statefulsets/scale]
- level: Request
  verbs: [create, update, patch, delete, deletecollection]
  resources:
  - group: apps
    resources: [deployments, deployments/status, replicasets, replicasets/status, replicasets/scale, statefulsets, statefulsets/status]
  - group: batch
    resources: [cronjobs, cronjobs/status]
- level: Metadata
  verbs: [create, update, patch, delete, deletecollection]
  resources:
  - group: ""
    resources: [pods, pods/status, pods/binding]
- level: None
`
