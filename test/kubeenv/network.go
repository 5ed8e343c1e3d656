package kubeenv

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// The environment's fixed network layout. Only one environment runs at a
// time (see the lock), so these never collide with each other.
const (
	BridgeName     = "chartreuse0"
	BridgeIP       = "10.244.0.1"
	PodCIDR        = "10.244.0.0/24"
	ServiceCIDR    = "10.96.0.0/24"
	FirstServiceIP = "10.96.0.1"
	NodeName       = "chartreuse-node"
	CNINetwork     = "chartreuse"

	// ruleComment marks every iptables rule the environment inserts itself.
	ruleComment = "chartreuse-env"
	// deadProxy is where containerd's registry traffic goes: nothing listens
	// on the discard port, so a pull of a missing image fails at once, on
	// this machine, without even a DNS lookup.
	deadProxy = "http://127.0.0.1:9"
)

// sysctls the servers (kubelet, CNI bridge, kube-proxy) may change; their
// original values are saved at start and written back at teardown.
var savedSysctls = []string{
	"net.ipv4.ip_forward",
	"net.ipv4.conf.all.route_localnet",
	"net.bridge.bridge-nf-call-iptables",
	"net.bridge.bridge-nf-call-ip6tables",
	"vm.overcommit_memory",
	"vm.panic_on_oom",
	"kernel.panic",
	"kernel.panic_on_oops",
	"kernel.keys.root_maxkeys",
	"kernel.keys.root_maxbytes",
}

func sysctlPath(key string) string {
	return "/proc/sys/" + strings.ReplaceAll(key, ".", "/")
}

func readSysctls() map[string]string {
	m := map[string]string{}
	for _, k := range savedSysctls {
		if b, err := os.ReadFile(sysctlPath(k)); err == nil {
			m[k] = strings.TrimSpace(string(b))
		}
	}
	return m
}

func restoreSysctls(m map[string]string) error {
	var errs []error
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		b, err := os.ReadFile(sysctlPath(k))
		if err == nil && strings.TrimSpace(string(b)) == m[k] {
			continue
		}
		if err := os.WriteFile(sysctlPath(k), []byte(m[k]), 0o644); err != nil {
			errs = append(errs, fmt.Errorf("restore sysctl %s=%s: %w", k, m[k], err))
		}
	}
	return errors.Join(errs...)
}

func run(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// ourRules are the rules that keep pod traffic on the machine: anything
// entering from the bridge and leaving by another interface is dropped. The
// filter rule is the one the safety rules require; the mangle one runs before
// every filter chain (kube-proxy prepends its own jumps to filter FORWARD but
// never touches mangle FORWARD); the ip6tables one covers IPv6.
func ourRules() []Rule {
	spec := []string{"-i", BridgeName, "!", "-o", BridgeName, "-m", "comment", "--comment", ruleComment, "-j", "DROP"}
	return []Rule{
		{Command: "iptables", Table: "filter", Chain: "FORWARD", Spec: spec},
		{Command: "iptables", Table: "mangle", Chain: "FORWARD", Spec: spec},
		{Command: "ip6tables", Table: "filter", Chain: "FORWARD", Spec: spec},
	}
}

func iptables(r Rule, op string, extra ...string) (string, error) {
	args := append([]string{"-w", "5", "-t", r.Table, op, r.Chain}, extra...)
	args = append(args, r.Spec...)
	return run(r.Command, args...)
}

// cidrsInUse returns the host's IPv4 addresses and routes that overlap the
// environment's pod or service range.
func cidrsInUse() ([]string, error) {
	_, pod, _ := net.ParseCIDR(PodCIDR)
	_, svc, _ := net.ParseCIDR(ServiceCIDR)
	overlaps := func(n *net.IPNet) bool {
		return pod.Contains(n.IP) || n.Contains(pod.IP) || svc.Contains(n.IP) || n.Contains(svc.IP)
	}
	var found []string
	out, err := run("ip", "-j", "-4", "addr", "show")
	if err != nil {
		return nil, err
	}
	var links []struct {
		IfName   string `json:"ifname"`
		AddrInfo []struct {
			Local     string `json:"local"`
			PrefixLen int    `json:"prefixlen"`
		} `json:"addr_info"`
	}
	if err := json.Unmarshal([]byte(out), &links); err != nil {
		return nil, fmt.Errorf("ip -j addr: %w", err)
	}
	for _, l := range links {
		for _, a := range l.AddrInfo {
			if _, n, err := net.ParseCIDR(fmt.Sprintf("%s/%d", a.Local, a.PrefixLen)); err == nil && overlaps(n) {
				found = append(found, fmt.Sprintf("address %s/%d on %s", a.Local, a.PrefixLen, l.IfName))
			}
		}
	}
	routes, err := readRoutes()
	if err != nil {
		return nil, err
	}
	for _, r := range routes {
		if n := r.net(); n != nil && overlaps(n) && r.Table != "local" {
			found = append(found, fmt.Sprintf("route %s %s dev %s table %s", r.Type, r.Dst, r.Dev, r.Table))
		}
	}
	return found, nil
}

type route struct {
	Type  string `json:"type"`
	Dst   string `json:"dst"`
	Dev   string `json:"dev"`
	Table string `json:"table"`
}

func (r route) net() *net.IPNet {
	if r.Dst == "" || r.Dst == "default" {
		return nil
	}
	d := r.Dst
	if !strings.Contains(d, "/") {
		d += "/32"
	}
	_, n, err := net.ParseCIDR(d)
	if err != nil || n.IP.To4() == nil {
		return nil
	}
	return n
}

func readRoutes() ([]route, error) {
	out, err := run("ip", "-j", "-4", "route", "show", "table", "all")
	if err != nil {
		return nil, err
	}
	var rs []route
	if err := json.Unmarshal([]byte(out), &rs); err != nil {
		return nil, fmt.Errorf("ip -j route: %w", err)
	}
	for i := range rs {
		if rs[i].Type == "" {
			rs[i].Type = "unicast"
		}
		if rs[i].Table == "" {
			rs[i].Table = "main"
		}
	}
	return rs, nil
}

// setupNetwork creates the bridge with the gateway address, the blackhole
// route for the service range and the FORWARD rules, recording each change in
// the state before making it.
func (e *Env) setupNetwork() error {
	st := e.st
	if _, err := os.Stat("/sys/class/net/" + BridgeName); err == nil {
		return fmt.Errorf("network interface %s already exists; another environment may be running (or a stale one: run `test/env.sh down`)", BridgeName)
	}
	if used, err := cidrsInUse(); err != nil {
		return err
	} else if len(used) > 0 {
		return fmt.Errorf("the environment's ranges %s and %s are already in use here: %s", PodCIDR, ServiceCIDR, strings.Join(used, "; "))
	}
	st.Net.BridgeCreated = true
	if err := st.save(); err != nil {
		return err
	}
	if _, err := run("ip", "link", "add", BridgeName, "type", "bridge"); err != nil {
		return err
	}
	if _, err := run("ip", "addr", "add", BridgeIP+"/24", "dev", BridgeName); err != nil {
		return err
	}
	if _, err := run("ip", "link", "set", BridgeName, "up"); err != nil {
		return err
	}
	st.Net.RouteAdded = true
	if err := st.save(); err != nil {
		return err
	}
	if _, err := run("ip", "route", "add", "blackhole", ServiceCIDR); err != nil {
		return err
	}
	for _, r := range ourRules() {
		st.Net.Rules = append(st.Net.Rules, r)
		if err := st.save(); err != nil {
			return err
		}
		if _, err := iptables(r, "-I", "1"); err != nil {
			return err
		}
	}
	return nil
}

// pinForwardRule moves our filter FORWARD rule back to position 1 once
// kube-proxy has prepended its own jumps. kube-proxy only re-adds its jumps
// when they are missing, so it stays first.
func pinForwardRule() error {
	r := ourRules()[0]
	rules, err := chainRules(r.Command, r.Table, r.Chain)
	if err != nil {
		return err
	}
	if len(rules) > 0 && strings.Contains(rules[0], ruleComment) {
		return nil
	}
	if _, err := iptables(r, "-I", "1"); err != nil {
		return err
	}
	// Delete the older copy (now further down).
	rules, err = chainRules(r.Command, r.Table, r.Chain)
	if err != nil {
		return err
	}
	for i := len(rules) - 1; i >= 1; i-- {
		if strings.Contains(rules[i], ruleComment) {
			if _, err := run(r.Command, "-w", "5", "-t", r.Table, "-D", r.Chain, strconv.Itoa(i+1)); err != nil {
				return err
			}
		}
	}
	return nil
}

// chainRules lists a chain's rules as printed by `iptables -S`, without the
// policy line; index i is rule number i+1.
func chainRules(cmd, table, chain string) ([]string, error) {
	out, err := run(cmd, "-w", "5", "-t", table, "-S", chain)
	if err != nil {
		return nil, err
	}
	var rules []string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "-A ") {
			rules = append(rules, l)
		}
	}
	return rules, nil
}

// SafetyReport records the network-safety check made before the kubelet (and
// so any pod) starts: what was read and found in place.
type SafetyReport struct {
	At       time.Time `json:"at"`
	Checks   []string  `json:"checks"`
	Problems []string  `json:"problems,omitempty"`
}

// VerifyNetworkSafety checks, only by reading the host's routes, iptables
// rules and the environment's own configuration files (never by sending
// traffic), that pod and service traffic cannot leave the machine:
//   - the bridge exists with the gateway address, and the pod range is routed to it;
//   - the service range is a blackhole route and no more specific route overrides it;
//   - FORWARD from the bridge to any other interface is dropped (filter, first
//     rule; mangle; ip6tables);
//   - the CNI configuration is a single bridge network on that bridge with
//     ipMasq false and no other plugin;
//   - the kubelet's resolv.conf is empty; containerd's registry proxy is a dead
//     local port and its CNI conf_dir is ours.
func VerifyNetworkSafety(st *State) *SafetyReport {
	rep := &SafetyReport{At: time.Now()}
	ok := func(format string, a ...any) { rep.Checks = append(rep.Checks, fmt.Sprintf(format, a...)) }
	bad := func(format string, a ...any) { rep.Problems = append(rep.Problems, fmt.Sprintf(format, a...)) }

	// Bridge and its address.
	if out, err := run("ip", "-j", "-4", "addr", "show", "dev", st.Bridge); err != nil {
		bad("bridge %s: %v", st.Bridge, err)
	} else if !strings.Contains(out, `"local":"`+st.BridgeIP+`","prefixlen":24`) {
		bad("bridge %s lacks %s/24: %s", st.Bridge, st.BridgeIP, out)
	} else {
		ok("bridge %s has %s/24", st.Bridge, st.BridgeIP)
	}

	// Routes.
	routes, err := readRoutes()
	if err != nil {
		bad("read routes: %v", err)
	}
	_, svc, _ := net.ParseCIDR(st.ServiceCIDR)
	_, pod, _ := net.ParseCIDR(st.PodCIDR)
	var blackhole, podRoute bool
	for _, r := range routes {
		n := r.net()
		if n == nil {
			continue
		}
		ones, _ := n.Mask.Size()
		svcOnes, _ := svc.Mask.Size()
		switch {
		case r.Type == "blackhole" && n.String() == svc.String() && r.Table == "main":
			blackhole = true
		case svc.Contains(n.IP) && ones >= svcOnes && r.Table != "local":
			bad("route %s %s dev %s (table %s) overrides the service blackhole", r.Type, r.Dst, r.Dev, r.Table)
		case n.String() == pod.String() && r.Dev == st.Bridge && r.Table == "main":
			podRoute = true
		case pod.Contains(n.IP) && r.Table != "local" && r.Dev != st.Bridge:
			bad("route %s %s dev %s sends pod addresses elsewhere", r.Type, r.Dst, r.Dev)
		}
	}
	if blackhole {
		ok("route: blackhole %s (service traffic kube-proxy has not translated dies here)", st.ServiceCIDR)
	} else {
		bad("no blackhole route for the service range %s", st.ServiceCIDR)
	}
	if podRoute {
		ok("route: %s dev %s", st.PodCIDR, st.Bridge)
	} else {
		bad("no route %s dev %s", st.PodCIDR, st.Bridge)
	}
	// A route lookup (RTM_GETROUTE: a question to the kernel, no packet is
	// sent) for a blackholed address fails with EINVAL.
	if out, err := run("ip", "route", "get", st.FirstServiceIP); err == nil {
		bad("route lookup for %s finds a usable route: %s", st.FirstServiceIP, strings.TrimSpace(out))
	} else if strings.Contains(err.Error(), "Invalid argument") {
		ok("route lookup for %s: no route (blackhole)", st.FirstServiceIP)
	} else {
		bad("route lookup for %s: %v", st.FirstServiceIP, err)
	}

	// FORWARD rules.
	for i, r := range ourRules() {
		rules, err := chainRules(r.Command, r.Table, r.Chain)
		if err != nil {
			bad("%s -t %s -S %s: %v", r.Command, r.Table, r.Chain, err)
			continue
		}
		want := "-A FORWARD -i " + st.Bridge + " ! -o " + st.Bridge + " -m comment --comment " + ruleComment + " -j DROP"
		pos := -1
		for j, l := range rules {
			if l == want {
				pos = j
				break
			}
		}
		switch {
		case pos < 0:
			bad("%s -t %s: no rule %q", r.Command, r.Table, want)
		case i < 2 && pos != 0:
			bad("%s -t %s: %q is rule %d of FORWARD, not the first", r.Command, r.Table, want, pos+1)
		default:
			ok("%s -t %s FORWARD rule %d: %s", r.Command, r.Table, pos+1, want)
		}
	}

	// CNI configuration.
	checkCNI(st, ok, bad)

	// resolv.conf for pods.
	if b, err := os.ReadFile(st.ResolvConf); err != nil {
		bad("kubelet resolvConf %s: %v", st.ResolvConf, err)
	} else if d := resolvDirectives(string(b)); len(d) == 0 {
		bad("kubelet resolvConf %s is empty: containerd would copy the host's /etc/resolv.conf into pods", st.ResolvConf)
	} else if strings.Contains(strings.Join(d, "\n"), "nameserver") || strings.Contains(strings.Join(d, "\n"), "search") {
		bad("kubelet resolvConf %s names a server or search domain: %v", st.ResolvConf, d)
	} else {
		ok("kubelet resolvConf %s has no name server and no search domain (%s)", st.ResolvConf, strings.Join(d, "; "))
	}
	if b, err := os.ReadFile(st.path("kubelet", "config.yaml")); err != nil {
		bad("kubelet config: %v", err)
	} else if strings.Contains(string(b), "\nresolvConf: "+st.ResolvConf+"\n") {
		ok("kubelet config sets resolvConf: %s", st.ResolvConf)
	} else {
		bad("kubelet config does not set resolvConf: %s", st.ResolvConf)
	}

	// containerd: CNI conf dir and registry proxy.
	if b, err := os.ReadFile(st.path("containerd", "config.toml")); err != nil {
		bad("containerd config: %v", err)
	} else if !strings.Contains(string(b), `conf_dir = "`+st.CNIConfDir+`"`) {
		bad("containerd config does not use CNI conf_dir %s", st.CNIConfDir)
	} else {
		ok("containerd CNI conf_dir = %s", st.CNIConfDir)
	}
	if p := st.process("containerd"); p != nil && p.alive() {
		env, _ := os.ReadFile(fmt.Sprintf("/proc/%d/environ", p.PID))
		if strings.Contains("\x00"+string(env)+"\x00", "\x00HTTPS_PROXY="+deadProxy+"\x00") &&
			strings.Contains("\x00"+string(env)+"\x00", "\x00HTTP_PROXY="+deadProxy+"\x00") {
			ok("containerd registry traffic goes to the dead local proxy %s", deadProxy)
		} else {
			bad("containerd (pid %d) runs without HTTP(S)_PROXY=%s", p.PID, deadProxy)
		}
	}
	if p := st.process("kube-apiserver"); p != nil {
		if slices.Contains(p.Args, "--bind-address="+st.BridgeIP) {
			ok("kube-apiserver binds %s", st.BridgeIP)
		} else {
			bad("kube-apiserver is not bound to %s", st.BridgeIP)
		}
	}
	return rep
}

// resolvDirectives returns the non-comment lines of a resolv.conf.
func resolvDirectives(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		l = strings.TrimSpace(l)
		if l != "" && l[0] != '#' && l[0] != ';' {
			out = append(out, l)
		}
	}
	return out
}

func checkCNI(st *State, ok, bad func(string, ...any)) {
	ents, err := os.ReadDir(st.CNIConfDir)
	if err != nil {
		bad("CNI conf_dir: %v", err)
		return
	}
	if len(ents) != 1 {
		bad("CNI conf_dir %s holds %d files, want exactly 1", st.CNIConfDir, len(ents))
		return
	}
	file := filepath.Join(st.CNIConfDir, ents[0].Name())
	b, err := os.ReadFile(file)
	if err != nil {
		bad("CNI config: %v", err)
		return
	}
	var conf struct {
		Name    string           `json:"name"`
		Plugins []map[string]any `json:"plugins"`
	}
	if err := json.Unmarshal(b, &conf); err != nil {
		bad("CNI config %s: %v", file, err)
		return
	}
	if conf.Name != st.CNINetwork || len(conf.Plugins) != 1 {
		bad("CNI config %s: want one network %q with one plugin, got %q with %d", file, st.CNINetwork, conf.Name, len(conf.Plugins))
		return
	}
	p := conf.Plugins[0]
	masq, present := p["ipMasq"]
	ipam, _ := json.Marshal(p["ipam"])
	switch {
	case p["type"] != "bridge":
		bad("CNI plugin is %v, want bridge", p["type"])
	case p["bridge"] != st.Bridge:
		bad("CNI bridge is %v, want %s", p["bridge"], st.Bridge)
	case !present || masq != false:
		bad("CNI bridge ipMasq is %v, want an explicit false", masq)
	case !strings.Contains(string(ipam), `"subnet":"`+st.PodCIDR+`"`):
		bad("CNI IPAM does not allocate from %s: %s", st.PodCIDR, ipam)
	default:
		ok("CNI %s: one bridge plugin on %s, ipMasq false, subnet %s", file, st.Bridge, st.PodCIDR)
	}
}

// teardownNetwork removes, idempotently, what setupNetwork and the servers
// added to the host network.
func teardownNetwork(st *State) error {
	var errs []error
	// Host ends of pod veths still on the bridge (their namespaces are gone by now).
	if out, err := run("ip", "-j", "link", "show", "master", BridgeName); err == nil {
		var links []struct {
			IfName string `json:"ifname"`
		}
		_ = json.Unmarshal([]byte(out), &links)
		for _, l := range links {
			if _, err := run("ip", "link", "del", l.IfName); err != nil && !notFound(err) {
				errs = append(errs, err)
			}
		}
	}
	if _, err := os.Stat("/sys/class/net/" + BridgeName); err == nil {
		if _, err := run("ip", "link", "del", BridgeName); err != nil {
			errs = append(errs, err)
		}
	}
	for {
		if _, err := run("ip", "route", "del", "blackhole", ServiceCIDR); err != nil {
			if !notFound(err) {
				errs = append(errs, err)
			}
			break
		}
	}
	// Our rules: the recorded ones, then any other carrying our comment.
	for _, r := range append(st.Net.Rules, ourRules()...) {
		for i := 0; i < 10; i++ {
			if _, err := iptables(r, "-D"); err != nil {
				break
			}
		}
	}
	for _, cmd := range []string{"iptables", "ip6tables"} {
		for _, table := range []string{"filter", "mangle"} {
			if err := deleteRulesWhere(cmd, table, "FORWARD", func(l string) bool { return strings.Contains(l, ruleComment) }); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

func notFound(err error) bool {
	s := err.Error()
	return strings.Contains(s, "Cannot find device") || strings.Contains(s, "No such process") ||
		strings.Contains(s, "does not exist") || strings.Contains(s, "No such file")
}

// deleteRulesWhere deletes, by number, the rules of a chain that match.
func deleteRulesWhere(cmd, table, chain string, match func(string) bool) error {
	rules, err := chainRules(cmd, table, chain)
	if err != nil {
		if notFound(err) || strings.Contains(err.Error(), "No chain") {
			return nil
		}
		return err
	}
	var errs []error
	for i := len(rules) - 1; i >= 0; i-- {
		if match(rules[i]) {
			if _, err := run(cmd, "-w", "5", "-t", table, "-D", chain, strconv.Itoa(i+1)); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// kubeChainPrefixes name the chains kube-proxy, the kubelet and the CNI
// plugins create. Nothing else on a test machine uses them.
var kubeChainPrefixes = []string{"KUBE-", "CNI-"}

func isKubeChain(name string) bool {
	for _, p := range kubeChainPrefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// kubeChains lists the KUBE-*/CNI-* chains of a table.
func kubeChains(cmd, table string) ([]string, error) {
	out, err := run(cmd, "-w", "5", "-t", table, "-S")
	if err != nil {
		return nil, err
	}
	var chains []string
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) >= 2 && f[0] == "-N" && isKubeChain(f[1]) {
			chains = append(chains, f[1])
		}
	}
	return chains, nil
}

var iptablesTables = []string{"filter", "nat", "mangle", "raw"}

// removeKubeChains deletes every jump to a KUBE-*/CNI-* chain from the
// built-in chains, then flushes and deletes those chains, in all tables, for
// IPv4 and IPv6. It is what `kube-proxy --cleanup` leaves behind (the
// kubelet's KUBE-IPTABLES-HINT, KUBE-KUBELET-CANARY, KUBE-FIREWALL, ...).
func removeKubeChains() error {
	var errs []error
	for _, cmd := range []string{"iptables", "ip6tables"} {
		for _, table := range iptablesTables {
			chains, err := kubeChains(cmd, table)
			if err != nil {
				continue // table not available
			}
			out, _ := run(cmd, "-w", "5", "-t", table, "-S")
			var builtins []string
			for _, l := range strings.Split(out, "\n") {
				if f := strings.Fields(l); len(f) >= 2 && f[0] == "-P" {
					builtins = append(builtins, f[1])
				}
			}
			for _, b := range builtins {
				if err := deleteRulesWhere(cmd, table, b, jumpsToKubeChain); err != nil {
					errs = append(errs, err)
				}
			}
			for _, c := range chains {
				_, _ = run(cmd, "-w", "5", "-t", table, "-F", c)
			}
			for _, c := range chains {
				if _, err := run(cmd, "-w", "5", "-t", table, "-X", c); err != nil {
					errs = append(errs, err)
				}
			}
		}
	}
	return errors.Join(errs...)
}

func jumpsToKubeChain(rule string) bool {
	f := strings.Fields(rule)
	for i := 0; i+1 < len(f); i++ {
		if (f[i] == "-j" || f[i] == "-g") && isKubeChain(f[i+1]) {
			return true
		}
	}
	return false
}
