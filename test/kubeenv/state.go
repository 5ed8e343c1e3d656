package kubeenv

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// StateFile is the name of the file, inside the state directory, that
// records everything Teardown needs.
const StateFile = "state.json"

// Process is one server process of the environment.
type Process struct {
	Name string `json:"name"`
	PID  int    `json:"pid"`
	// StartTicks is the process start time (field 22 of /proc/<pid>/stat), so
	// a recycled PID is never mistaken for ours.
	StartTicks uint64   `json:"startTicks"`
	Binary     string   `json:"binary"`
	Args       []string `json:"args"`
	Log        string   `json:"log"`
}

// Rule is one iptables/ip6tables rule the environment inserted.
type Rule struct {
	Command string   `json:"command"` // iptables or ip6tables
	Table   string   `json:"table"`
	Chain   string   `json:"chain"`
	Spec    []string `json:"spec"`
}

// NetState records what was changed on the host network.
type NetState struct {
	BridgeCreated bool              `json:"bridgeCreated"`
	RouteAdded    bool              `json:"routeAdded"`
	Rules         []Rule            `json:"rules"`
	Sysctls       map[string]string `json:"sysctls"` // original values, restored on teardown
}

// Timings are the measured durations of the last start.
type Timings struct {
	StartedAt   time.Time        `json:"startedAt"`
	Steps       map[string]int64 `json:"stepsMillis"`
	StartupSecs float64          `json:"startupSeconds"`
	KubeletAt   time.Time        `json:"kubeletStartedAt"`
}

// State is the content of state.json. It is written after every step of the
// start-up, so a half-started environment can be torn down from it alone.
type State struct {
	Dir        string `json:"dir"`
	OwnerPID   int    `json:"ownerPid"`
	LockFile   string `json:"lockFile"`
	Detached   bool   `json:"detached"`
	KubeBinDir string `json:"kubeBinDir"`

	Bridge         string `json:"bridge"`
	BridgeIP       string `json:"bridgeIP"`
	PodCIDR        string `json:"podCIDR"`
	ServiceCIDR    string `json:"serviceCIDR"`
	FirstServiceIP string `json:"firstServiceIP"`
	NodeName       string `json:"nodeName"`
	CNINetwork     string `json:"cniNetwork"`

	EtcdURL          string `json:"etcdURL"`
	APIServerURL     string `json:"apiServerURL"`
	Kubeconfig       string `json:"kubeconfig"`
	CACert           string `json:"caCert"`
	ContainerdSocket string `json:"containerdSocket"`
	ContainerdRoot   string `json:"containerdRoot"`
	ContainerdState  string `json:"containerdState"`
	KubeletRoot      string `json:"kubeletRoot"`
	CNIConfDir       string `json:"cniConfDir"`
	ResolvConf       string `json:"resolvConf"`
	LogDir           string `json:"logDir"`
	// AuditLog is the API server's audit log (Options.AuditLog), or empty.
	AuditLog string `json:"auditLog,omitempty"`

	PauseImage string `json:"pauseImage"`
	AppImage   string `json:"appImage"`

	// HostDirsCreated are directories outside the state directory that did
	// not exist before the start (the servers create them: containerd's shim
	// socket dir, libcni's cache, the kubelet's fixed device-plugin dir,
	// /var/log/containers, containerd's k8s.io cgroups); teardown removes them.
	HostDirsCreated []string `json:"hostDirsCreated"`

	Processes []Process `json:"processes"`
	Net       NetState  `json:"net"`
	// Safety is the check made before the kubelet started; SafetyReady the
	// one made when the environment was ready (kube-proxy running).
	Safety      *SafetyReport `json:"safety,omitempty"`
	SafetyReady *SafetyReport `json:"safetyReady,omitempty"`
	Timings     Timings       `json:"timings"`
	Ready       bool          `json:"ready"`
}

// ReadState loads dir/state.json.
func ReadState(dir string) (*State, error) {
	b, err := os.ReadFile(filepath.Join(dir, StateFile))
	if err != nil {
		return nil, err
	}
	var st State
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, StateFile), err)
	}
	return &st, nil
}

func (st *State) save() error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(st.Dir, StateFile+".tmp")
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(st.Dir, StateFile))
}

func (st *State) path(elem ...string) string {
	return filepath.Join(append([]string{st.Dir}, elem...)...)
}

func (st *State) process(name string) *Process {
	for i := range st.Processes {
		if st.Processes[i].Name == name {
			return &st.Processes[i]
		}
	}
	return nil
}
