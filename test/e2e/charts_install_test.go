package e2e

import (
	"bytes"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/yaml"

	"github.com/flotilla-dev/flotilla/hub/config"
	"github.com/flotilla-dev/flotilla/internal/clustercreds"
	"github.com/flotilla-dev/flotilla/internal/tlsca"
	"github.com/flotilla-dev/flotilla/test/testenv"
	"github.com/flotilla-dev/flotilla/test/testenv/flotillatest"
)

// podVolumes are the volumes of one rendered pod, laid out in a directory
// of the test as the kubelet would fill them: a ConfigMap's or Secret's
// keys as files (items as they map them), an emptyDir or a claim of
// volumeClaimTemplates as an empty directory. Each volume is a directory
// at the first path a container mounts it at, under the pod's root; a
// container that mounts it elsewhere sees a symbolic link there
// (podVolumes.container). Paths are the pod's under root.
type podVolumes struct {
	root string
	spec corev1.PodSpec
	// pod is the pod's name, for the downward API.
	pod string
	// homes are the volumes' directories, by name.
	homes map[string]string
}

// newPodVolumes lays out spec's volumes and the claims (the names of a
// StatefulSet's volumeClaimTemplates) from the ConfigMaps and Secrets
// given by name.
func newPodVolumes(t *testing.T, pod string, spec corev1.PodSpec, claims []string, configMaps map[string]map[string]string, secrets map[string]map[string][]byte) *podVolumes {
	t.Helper()
	p := &podVolumes{root: t.TempDir(), spec: spec, pod: pod, homes: map[string]string{}}
	for _, c := range append(slices.Clone(spec.Containers), spec.InitContainers...) {
		for _, m := range c.VolumeMounts {
			if _, ok := p.homes[m.Name]; !ok && m.SubPath == "" {
				p.homes[m.Name] = filepath.Join(p.root, m.MountPath)
			}
		}
	}
	write := func(volume string, data map[string][]byte, items []corev1.KeyToPath) {
		if len(items) == 0 {
			for k := range data {
				items = append(items, corev1.KeyToPath{Key: k, Path: k})
			}
		}
		for _, it := range items {
			content, ok := data[it.Key]
			if !ok {
				t.Fatalf("volume %s: no key %s: the pod would not start", volume, it.Key)
			}
			path := filepath.Join(p.volume(volume), it.Path)
			must(t, os.MkdirAll(filepath.Dir(path), 0o700))
			must(t, os.WriteFile(path, content, 0o400))
		}
	}
	for _, v := range spec.Volumes {
		must(t, os.MkdirAll(p.volume(v.Name), 0o700))
		switch {
		case v.ConfigMap != nil:
			cm, ok := configMaps[v.ConfigMap.Name]
			if !ok {
				t.Fatalf("volume %s: no ConfigMap %s", v.Name, v.ConfigMap.Name)
			}
			data := map[string][]byte{}
			for k, s := range cm {
				data[k] = []byte(s)
			}
			write(v.Name, data, v.ConfigMap.Items)
		case v.Secret != nil:
			s, ok := secrets[v.Secret.SecretName]
			if !ok {
				t.Fatalf("volume %s: no Secret %s", v.Name, v.Secret.SecretName)
			}
			write(v.Name, s, v.Secret.Items)
		case v.EmptyDir != nil:
		default:
			t.Fatalf("volume %s: a kind this test does not lay out", v.Name)
		}
	}
	for _, c := range claims {
		must(t, os.MkdirAll(p.volume(c), 0o700))
	}
	return p
}

// volume is the directory of the volume name.
func (p *podVolumes) volume(name string) string {
	if home, ok := p.homes[name]; ok {
		return home
	}
	return filepath.Join(p.root, ".volumes", name)
}

// containerView is what one container sees.
type containerView struct {
	// rewrite turns the container's paths into the test's.
	rewrite *strings.Replacer
	env     map[string]string
	c       corev1.Container
}

// container mounts the volumes of the pod's container named name.
func (p *podVolumes) container(t *testing.T, name string) *containerView {
	t.Helper()
	var c *corev1.Container
	for i := range p.spec.InitContainers {
		if p.spec.InitContainers[i].Name == name {
			c = &p.spec.InitContainers[i]
		}
	}
	for i := range p.spec.Containers {
		if p.spec.Containers[i].Name == name {
			c = &p.spec.Containers[i]
		}
	}
	if c == nil {
		t.Fatalf("the pod has no container %s", name)
	}
	v := &containerView{env: map[string]string{}, c: *c}
	var mounts []string
	for _, m := range c.VolumeMounts {
		target := filepath.Join(p.volume(m.Name), m.SubPath)
		if _, err := os.Stat(target); err != nil {
			t.Fatalf("mount %s: volume %s: %v", m.MountPath, m.Name, err)
		}
		if at := filepath.Join(p.root, m.MountPath); at != target {
			must(t, os.MkdirAll(filepath.Dir(at), 0o700))
			must(t, os.Symlink(target, at))
		}
		mounts = append(mounts, m.MountPath)
	}
	// The longest path first, so a mount inside another is rewritten whole.
	slices.SortFunc(mounts, func(a, b string) int { return len(b) - len(a) })
	var pairs []string
	for _, m := range mounts {
		pairs = append(pairs, m, filepath.Join(p.root, m))
	}
	v.rewrite = strings.NewReplacer(pairs...)
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			v.env[e.Name] = e.Value
		case e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.name":
			v.env[e.Name] = p.pod
		default:
			t.Fatalf("container %s: env %s: a source this test does not give", name, e.Name)
		}
	}
	return v
}

var envReference = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// commandLine is the container's command and args as the kubelet runs
// them ($(VAR) expanded from its env), its paths the test's.
func (v *containerView) commandLine() []string {
	var out []string
	for _, a := range append(slices.Clone(v.c.Command), v.c.Args...) {
		a = envReference.ReplaceAllStringFunc(a, func(ref string) string {
			if val, ok := v.env[ref[2:len(ref)-1]]; ok {
				return val
			}
			return ref
		})
		out = append(out, v.rewrite.Replace(a))
	}
	return out
}

// agentProcess is an agent binary with its log kept for the test to read.
type agentProcess struct {
	cmd  *exec.Cmd
	logs *syncBuffer
	done chan struct{}
}

func startAgentProcess(t *testing.T, bin string, args ...string) *agentProcess {
	t.Helper()
	a := &agentProcess{cmd: exec.Command(bin, args...), logs: &syncBuffer{buf: &bytes.Buffer{}}, done: make(chan struct{})}
	a.cmd.Stdout, a.cmd.Stderr = a.logs, a.logs
	a.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	must(t, a.cmd.Start())
	go func() {
		_ = a.cmd.Wait()
		close(a.done)
	}()
	t.Cleanup(func() {
		_ = syscall.Kill(-a.cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-a.done:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-a.cmd.Process.Pid, syscall.SIGKILL)
			<-a.done
		}
		if t.Failed() {
			log := a.logs.String()
			t.Logf("agent %v, last 6 KiB of its log:\n%s", args, log[max(0, len(log)-6<<10):])
		}
	})
	return a
}

// serviceAccountKubeconfig is what a pod of the ServiceAccount gets: the
// API server, its CA and a token of the account (TokenRequest).
func serviceAccountKubeconfig(t *testing.T, c *testenv.Cluster, namespace, account string) string {
	t.Helper()
	token, err := c.Client.CoreV1().ServiceAccounts(namespace).CreateToken(t.Context(), account,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: new(int64(3600))}}, metav1.CreateOptions{})
	must(t, err)
	kc := clientcmdapi.NewConfig()
	kc.Clusters["in-cluster"] = &clientcmdapi.Cluster{Server: c.Config.Host, CertificateAuthorityData: c.Config.CAData}
	kc.AuthInfos[account] = &clientcmdapi.AuthInfo{Token: token.Status.Token}
	kc.Contexts["in-cluster"] = &clientcmdapi.Context{Cluster: "in-cluster", AuthInfo: account}
	kc.CurrentContext = "in-cluster"
	path := filepath.Join(t.TempDir(), "kubeconfig")
	must(t, clientcmd.WriteToFile(*kc, path))
	return path
}

// canCreateSecrets asks the API server whether the user of kubeconfig may
// create Secrets in namespace.
func canCreateSecrets(t *testing.T, kubeconfig, namespace string) bool {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	must(t, err)
	client, err := kubernetes.NewForConfig(cfg)
	must(t, err)
	review, err := client.AuthorizationV1().SelfSubjectAccessReviews().Create(t.Context(), &authorizationv1.SelfSubjectAccessReview{
		Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: namespace, Verb: "create", Resource: "secrets"}},
	}, metav1.CreateOptions{})
	must(t, err)
	return review.Status.Allowed
}

// helmTestPod runs the agent chart's `helm test` pod's command here, its
// METRICS_URL the agent's metrics address and its timeout timeout (""
// keeps the chart's), and returns its output and whether it passed.
func helmTestPod(t *testing.T, vals map[string]any, metricsAddr, timeout string) (string, bool) {
	t.Helper()
	rel, err := renderChart(t, agentChart, vals)
	must(t, err)
	var pod corev1.Pod
	for _, h := range rel.Hooks {
		if slices.Contains(h.Events, "test") {
			must(t, yaml.UnmarshalStrict([]byte(h.Manifest), &pod))
		}
	}
	if len(pod.Spec.Containers) != 1 {
		t.Fatalf("the agent chart has no test pod with one container: %+v", rel.Hooks)
	}
	c := pod.Spec.Containers[0]
	cmd := exec.Command(c.Command[0], append(c.Command[1:], c.Args...)...)
	for _, e := range c.Env {
		switch {
		case e.Name == "METRICS_URL":
			if !strings.HasSuffix(e.Value, "/metrics") {
				t.Fatalf("METRICS_URL %s is not the metrics Service's /metrics", e.Value)
			}
			e.Value = "http://" + metricsAddr + "/metrics"
		case e.Name == "TIMEOUT_SECONDS" && timeout != "":
			e.Value = timeout
		}
		cmd.Env = append(cmd.Env, e.Name+"="+e.Value)
	}
	cmd.Env = append(cmd.Env, "PATH="+os.Getenv("PATH"))
	out, err := cmd.CombinedOutput()
	return string(out), err == nil
}

// TestHelmChartsRunAHubAndItsAgents installs Flotilla as docs/install.md
// does, with the charts' rendered objects run by the real binaries: the
// hub from the configuration the hub chart renders (only its mount paths
// and listen addresses made the test's), its Secrets' files where the pod
// would mount them, the shared keys copied by the chart's init container;
// `flotilla cluster add` makes each cluster's credentials Secret; the
// agent chart's objects are applied to a real API server, and its agent
// runs with the Deployment's arguments and volumes as the chart's
// ServiceAccount, with full access on prod-eu and the least-privilege
// value set on prod-us. Both sync the fixture's production apps; `helm
// test` passes while the agents are connected and fails once the hub is
// gone.
func TestHelmChartsRunAHubAndItsAgents(t *testing.T) {
	const gitUser, gitPassword, adminToken, viewerToken = "flotilla-bot", "git-s3cret", "admin-t0ken", "viewer-t0ken"
	git := testenv.NewGitServer(t, testenv.GitServerOptions{Username: gitUser, Password: gitPassword})
	git.CreateRepo(t, flotillatest.FixtureRepo)
	git.PushDir(t, flotillatest.FixtureRepo, "main", "initial import", testenv.Fixture(t, flotillatest.FixtureRepo))
	hubBin, agentBin := testenv.BuildCommand(t, "./cmd/hub"), testenv.BuildCommand(t, "./cmd/agent")
	addrs := testenv.FreeAddrs(t, 4)
	apiAddr, natsAddr, metricsAddrs := addrs[0], addrs[1], addrs[2:4]

	// The Secrets of docs/install.md: the hub's secrets, and what `hub
	// init` made, as `kubectl create secret generic --from-file` keys them.
	shared := t.TempDir()
	if out, err := exec.Command(hubBin, "init", "-data-dir", shared).CombinedOutput(); err != nil {
		t.Fatalf("hub init: %v: %s", err, out)
	}
	sharedSecret := map[string][]byte{}
	must(t, filepath.WalkDir(shared, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		sharedSecret[d.Name()], err = os.ReadFile(path)
		return err
	}))
	secrets := map[string]map[string][]byte{
		"flotilla-hub-secrets": {"admin-token": []byte(adminToken), "viewer-token": []byte(viewerToken),
			"webhook-secret": []byte(webhookSecret), "git-token": []byte(gitPassword + "\n")},
		"flotilla-hub-shared": sharedSecret,
	}
	var hubValues map[string]any
	must(t, yaml.Unmarshal(fmt.Appendf(nil, `
shared: {secretName: flotilla-hub-shared}
nats:
  advertiseURL: tls://%s
api:
  tokens:
    - {name: platform-admin, role: admin, secretKey: admin-token}
    - {name: oncall, role: viewer, secretKey: viewer-token}
webhook: {secretKey: webhook-secret}
repositories:
  - url: %s
    fetchURL: %s
    pollInterval: 2s
    auth: {username: %s, passwordSecretKey: git-token}
roots:
  - {name: production, repo: %s, path: apps, clusters: env=production}
`, natsAddr, flotillatest.RepoURL, git.RepoURL(flotillatest.FixtureRepo), gitUser, flotillatest.RepoURL), &hubValues))

	// The hub's pod.
	hubDocs := renderedObjects(t, hubChart, hubValues)
	var cm corev1.ConfigMap
	renderedObject(t, hubDocs, "ConfigMap", hubChart, &cm)
	var sts appsv1.StatefulSet
	renderedObject(t, hubDocs, "StatefulSet", hubChart, &sts)
	var claims []string
	for _, c := range sts.Spec.VolumeClaimTemplates {
		claims = append(claims, c.Name)
	}
	pod := sts.Name + "-0"
	volumes := newPodVolumes(t, pod, sts.Spec.Template.Spec, claims, map[string]map[string]string{cm.Name: cm.Data}, secrets)
	for _, init := range sts.Spec.Template.Spec.InitContainers {
		cmd := volumes.container(t, init.Name).commandLine()
		out, err := exec.Command(cmd[0], cmd[1:]...).CombinedOutput()
		if err != nil {
			t.Fatalf("init container %s: %v\n%s", init.Name, err, out)
		}
		t.Logf("init container %s:\n%s", init.Name, out)
	}
	hub := volumes.container(t, "hub")
	configFile := filepath.Join(volumes.volume("config"), pod+".yaml")
	rendered, err := os.ReadFile(configFile)
	must(t, err)
	var cfg map[string]any
	must(t, yaml.Unmarshal([]byte(hub.rewrite.Replace(string(rendered))), &cfg))
	cfg["listen"] = apiAddr
	cfg["nats"].(map[string]any)["embeddedListen"] = natsAddr
	edited, err := yaml.Marshal(cfg)
	must(t, err)
	if _, err := config.Parse(configFile, edited); err != nil {
		t.Fatalf("the hub refuses its configuration: %v\n%s", err, edited)
	}
	must(t, os.Chmod(configFile, 0o600))
	must(t, os.WriteFile(configFile, edited, 0o400))
	hubProc := testenv.StartProcess(t, hubBin, hub.commandLine()...)

	// The operator's CLI trusts the CA of the shared Secret.
	caFile := filepath.Join(shared, "tls", tlsca.CAFile)
	ca, err := os.ReadFile(caFile)
	must(t, err)
	clientTLS, err := tlsca.ClientConfig(ca)
	must(t, err)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: clientTLS}, Timeout: 5 * time.Second}
	apiURL := "https://" + apiAddr
	testenv.WaitServing(t, client, apiURL, 2*time.Minute)
	cli := []string{"--hub", apiURL, "--token", adminToken, "--ca-file", caFile}

	// Each cluster, its credentials and its agent.
	type member struct {
		name, values string
		cluster      *testenv.Cluster
		agent        *agentProcess
		vals         map[string]any
		metrics      string
	}
	members := []*member{{name: "prod-eu"}, {name: "prod-us", values: "ci/least-privilege-values.yaml"}}
	for i, m := range members {
		m.cluster = testenv.StartCluster(t, testenv.ClusterOptions{Name: m.name})
		m.vals, m.metrics = chartValues(t, agentChart, m.values), metricsAddrs[i]
		namespaces := []string{chartNamespace}
		if rbac, _ := m.vals["rbac"].(map[string]any); rbac != nil {
			for _, ns := range rbac["namespaces"].([]any) {
				namespaces = append(namespaces, ns.(string))
			}
		}
		for _, ns := range namespaces {
			_, err := m.cluster.Client.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
			must(t, err)
		}

		var stdout, stderr bytes.Buffer
		if code := flotillatest.RunCLI(t, &stdout, &stderr, append([]string{"cluster", "add", m.name, "--labels", "env=production"}, cli...)...); code != 0 {
			t.Fatalf("cluster add %s: exit %d: %s", m.name, code, stderr.String())
		}
		var credentials corev1.Secret
		must(t, yaml.UnmarshalStrict(stdout.Bytes(), &credentials))
		if credentials.Name != clustercreds.SecretName || credentials.Namespace != chartNamespace {
			t.Fatalf("cluster add prints the Secret %s/%s, not the chart's %s/%s", credentials.Namespace, credentials.Name, chartNamespace, clustercreds.SecretName)
		}
		_, err := m.cluster.Client.CoreV1().Secrets(chartNamespace).Create(t.Context(), &credentials, metav1.CreateOptions{})
		must(t, err)

		// helm install: the release's objects, applied for real.
		rel, err := renderChart(t, agentChart, m.vals)
		must(t, err)
		manifests := filepath.Join(t.TempDir(), "agent.yaml")
		must(t, os.WriteFile(manifests, []byte(rel.Manifest), 0o600))
		if out, err := m.cluster.Kubectl(t, "apply", "--server-side", "-f", manifests); err != nil {
			t.Fatalf("%s: install the agent chart: %v\n%s", m.name, err, out)
		}
		var deploy appsv1.Deployment
		renderedObject(t, renderedObjects(t, agentChart, m.vals), "Deployment", agentChart, &deploy)
		live, err := m.cluster.Client.CoreV1().Secrets(chartNamespace).Get(t.Context(), clustercreds.SecretName, metav1.GetOptions{})
		must(t, err)
		agentPod := newPodVolumes(t, deploy.Name+"-0", deploy.Spec.Template.Spec, nil, nil, map[string]map[string][]byte{live.Name: live.Data})
		args := agentPod.container(t, "agent").commandLine()
		for j, a := range args {
			if strings.HasPrefix(a, "--metrics-addr=") {
				args[j] = "--metrics-addr=" + m.metrics
			}
		}
		// In a pod, the ServiceAccount's token and the API server are the
		// in-cluster configuration; here, a kubeconfig that holds them.
		kubeconfig := serviceAccountKubeconfig(t, m.cluster, chartNamespace, deploy.Spec.Template.Spec.ServiceAccountName)
		args = append(args, "--kubeconfig="+kubeconfig)
		// The agent is the ServiceAccount, with the chart's RBAC and no more.
		if got, want := canCreateSecrets(t, kubeconfig, "default"), m.values == ""; got != want {
			t.Fatalf("%s: the agent's ServiceAccount may create Secrets in default: %v, want %v (rbac.fullAccess)", m.name, got, want)
		}
		t.Logf("%s: agent %s", m.name, strings.Join(args, " "))
		m.agent = startAgentProcess(t, agentBin, args...)
	}

	for _, m := range members {
		m.cluster.WaitImage(t, deployments, "production", "worker-service", "worker-service:2.3.0", 3*time.Minute)
		m.cluster.WaitImage(t, deployments, "ml", "ml-inference", "ml-inference:0.9.1", 3*time.Minute)
		m.cluster.WaitImage(t, rolloutsGVR, "production", "api-service", "api-service:1.4.2", 3*time.Minute)
	}
	testenv.Eventually(t, time.Minute, func() error {
		out, code := flotilla(t, append([]string{"cluster", "list"}, cli...)...)
		if code != 0 || strings.Count(out, "connected") != len(members) {
			return fmt.Errorf("cluster list: exit %d:\n%s", code, out)
		}
		return nil
	})
	for _, m := range members {
		out, ok := helmTestPod(t, m.vals, m.metrics, "")
		if !ok {
			t.Errorf("%s: helm test fails while the agent is connected:\n%s", m.name, out)
		}
		t.Logf("%s: helm test: %s", m.name, strings.TrimSpace(out))
		for _, line := range strings.Split(m.agent.logs.String(), "\n") {
			if strings.Contains(line, "forbidden") {
				t.Errorf("%s: the chart's RBAC refuses the agent something: %s", m.name, line)
			}
		}
	}

	// Without the hub, the agents are not connected and helm test says so.
	must(t, hubProc.Stop())
	for _, m := range members {
		out, ok := helmTestPod(t, m.vals, m.metrics, "4")
		if ok || !strings.Contains(out, "did not connect") {
			t.Errorf("%s: helm test with the hub stopped: passed %v:\n%s", m.name, ok, out)
		}
	}
}
