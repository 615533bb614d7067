package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/flotilla-dev/flotilla/internal/render"
)

// ClusterOptions configures StartCluster.
type ClusterOptions struct {
	// Name identifies the cluster in logs and kubeconfigs.
	Name string
	// Workloads also starts kube-controller-manager, kube-scheduler and kwok
	// with fake Nodes, so Deployments create ReplicaSets and Pods that get
	// scheduled and turn Ready, and Jobs complete (or fail, for pods
	// labelled pod-container-running-failed.stage.kwok.x-k8s.io=true); and
	// LoadBalancer Services and Ingresses get an address, as a cloud gives.
	Workloads bool
	// Nodes is the number of fake Nodes with Workloads (default 1).
	Nodes int
	// CRDDirectoryPaths are installed before StartCluster returns.
	CRDDirectoryPaths []string
}

// Cluster is one real kube-apiserver with its own etcd.
type Cluster struct {
	Name string
	// Config is an admin (system:masters) client config.
	Config *rest.Config
	// Kubeconfig is the path of a kubeconfig file for Config, for kubectl and
	// for the control-plane processes.
	Kubeconfig string
	Client     kubernetes.Interface
	Dynamic    dynamic.Interface
	// Processes are the workload processes (controller-manager, scheduler,
	// kwok) when ClusterOptions.Workloads is set.
	Processes []*Process

	env *envtest.Environment
}

// StartCluster starts a kube-apiserver and etcd through envtest, from the
// binaries `make test-bins` built, and stops them when the test ends.
func StartCluster(t TB, opts ClusterOptions) *Cluster {
	t.Helper()
	if opts.Name == "" {
		opts.Name = "test"
	}
	// envtest logs through controller-runtime's logger; without one set it
	// prints a warning with a stack trace into every test's output.
	ctrllog.SetLogger(logr.Discard())
	env := &envtest.Environment{
		BinaryAssetsDirectory: BinDir(t, "kube-apiserver", "etcd"),
		CRDDirectoryPaths:     opts.CRDDirectoryPaths,
		ErrorIfCRDPathMissing: true,
		// A cold start of two apiservers on two cores can pass envtest's
		// 20 s default while the first one compiles its OpenAPI.
		ControlPlaneStartTimeout: time.Minute,
		ControlPlaneStopTimeout:  30 * time.Second,
	}
	// The apiserver's serving certificate in a directory of the test's,
	// which envtest then keeps when it stops: KillAPIServer and
	// StartAPIServer bring it back with the certificate clients trust.
	env.ControlPlane.GetAPIServer().CertDir = t.TempDir()
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("testenv: start cluster %s: %v", opts.Name, err)
	}
	c := &Cluster{Name: opts.Name, env: env}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Errorf("testenv: stop cluster %s: %v", opts.Name, err)
		}
	})

	admin, err := env.AddUser(envtest.User{Name: "flotilla-test-admin", Groups: []string{"system:masters"}}, cfg)
	if err != nil {
		t.Fatalf("testenv: cluster %s: add admin user: %v", opts.Name, err)
	}
	c.Config = admin.Config()
	kubeconfig, err := admin.KubeConfig()
	if err != nil {
		t.Fatalf("testenv: cluster %s: kubeconfig: %v", opts.Name, err)
	}
	c.Kubeconfig = filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(c.Kubeconfig, kubeconfig, 0o600); err != nil {
		t.Fatal(err)
	}
	if c.Client, err = kubernetes.NewForConfig(c.Config); err != nil {
		t.Fatal(err)
	}
	if c.Dynamic, err = dynamic.NewForConfig(c.Config); err != nil {
		t.Fatal(err)
	}
	if opts.Workloads {
		c.startWorkloads(t, opts)
	}
	return c
}

// startWorkloads runs the controllers that turn Deployments into Ready Pods.
func (c *Cluster) startWorkloads(t TB, opts ClusterOptions) {
	t.Helper()
	bins := BinDir(t, "kube-controller-manager", "kube-scheduler", "kwok", "kwok-stages")
	c.Processes = append(c.Processes,
		startProcess(t, filepath.Join(bins, "kube-controller-manager"),
			"--kubeconfig="+c.Kubeconfig,
			// The token controller needs a signing key the test does not
			// have, and nodeipam needs a cluster CIDR; neither is needed here.
			"--controllers=*,-serviceaccount-token,-nodeipam",
			"--leader-elect=false",
			"--secure-port=0",
			"--use-service-account-credentials=false",
			// The default 20 QPS makes a few hundred Deployments take minutes.
			"--kube-api-qps=500", "--kube-api-burst=1000",
		),
		startProcess(t, filepath.Join(bins, "kube-scheduler"),
			"--kubeconfig="+c.Kubeconfig,
			"--leader-elect=false",
			"--secure-port=0",
			"--kube-api-qps=500", "--kube-api-burst=1000",
		),
	)
	kwokArgs := []string{
		"--kubeconfig=" + c.Kubeconfig,
		"--manage-all-nodes=false",
		"--manage-nodes-with-annotation-selector=" + kwokNodeAnnotation + "=fake",
		// kwok renews the nodes' leases: without, the node lifecycle
		// controller finds them not Ready after its 50 s grace period and
		// marks every pod not Ready.
		"--node-lease-duration-seconds=40",
	}
	stages, err := filepath.Glob(filepath.Join(bins, "kwok-stages", "*.yaml"))
	if err != nil || len(stages) == 0 {
		t.Fatalf("testenv: no kwok stage files in %s: run `make test-bins`", filepath.Join(bins, "kwok-stages"))
	}
	for _, s := range stages {
		kwokArgs = append(kwokArgs, "--config="+s)
	}
	c.Processes = append(c.Processes, startProcess(t, filepath.Join(bins, "kwok"), kwokArgs...))
	lbCtx, stopLB := context.WithCancel(context.Background())
	t.Cleanup(stopLB)
	if err := provideLoadBalancers(lbCtx, c.Client); err != nil {
		t.Fatalf("testenv: cluster %s: load balancers: %v", c.Name, err)
	}

	nodes := opts.Nodes
	if nodes == 0 {
		nodes = 1
	}
	for i := range nodes {
		node := fakeNode(fmt.Sprintf("kwok-node-%d", i))
		if _, err := c.Client.CoreV1().Nodes().Create(t.Context(), node, metav1.CreateOptions{}); err != nil {
			t.Fatalf("testenv: cluster %s: create node %s: %v", c.Name, node.Name, err)
		}
	}
}

const kwokNodeAnnotation = "kwok.x-k8s.io/node"

// fakeNode is a Node kwok manages: it turns Ready and runs any pod bound to it.
func fakeNode(name string) *corev1.Node {
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("32"),
		corev1.ResourceMemory: resource.MustParse("256Gi"),
		corev1.ResourcePods:   resource.MustParse("110"),
	}
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name:        name,
			Annotations: map[string]string{kwokNodeAnnotation: "fake"},
			Labels: map[string]string{
				"type":                   "kwok",
				"kubernetes.io/hostname": name,
				"kubernetes.io/os":       "linux",
				"kubernetes.io/arch":     "amd64",
			},
		},
		Status: corev1.NodeStatus{Capacity: capacity, Allocatable: capacity},
	}
}

// Kubectl runs the kubectl built by `make test-bins` against the cluster and
// returns its combined output.
func (c *Cluster) Kubectl(t TB, args ...string) (string, error) {
	t.Helper()
	kubectl := filepath.Join(BinDir(t, "kubectl"), "kubectl")
	out, err := exec.Command(kubectl, append([]string{"--kubeconfig", c.Kubeconfig}, args...)...).CombinedOutput()
	return string(out), err
}

// CreateAll creates the objects of a YAML stream, the namespaced ones in
// namespace, each kind mapped to its resource by the cluster's discovery.
func (c *Cluster) CreateAll(t TB, namespace, manifests string) {
	t.Helper()
	objs, err := render.Decode([]byte(manifests))
	if err != nil {
		t.Fatalf("testenv: manifests: %v", err)
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(c.Client.Discovery()))
	for _, o := range objs {
		gvk := o.GroupVersionKind()
		// A CRD's kind can be served a moment before discovery lists it.
		var m *meta.RESTMapping
		Eventually(t, 30*time.Second, func() error {
			var err error
			if m, err = mapper.RESTMapping(gvk.GroupKind(), gvk.Version); meta.IsNoMatchError(err) {
				mapper.Reset()
			}
			if err != nil {
				return fmt.Errorf("testenv: create %s %s: %w", gvk.Kind, o.GetName(), err)
			}
			return nil
		})
		var ri dynamic.ResourceInterface = c.Dynamic.Resource(m.Resource)
		if m.Scope.Name() == meta.RESTScopeNameNamespace {
			ri = c.Dynamic.Resource(m.Resource).Namespace(namespace)
		}
		if _, err := ri.Create(t.Context(), o, metav1.CreateOptions{}); err != nil {
			t.Fatalf("testenv: create %s %s: %v", gvk.Kind, o.GetName(), err)
		}
	}
}

// KillAPIServer kills the cluster's kube-apiserver with SIGKILL, as a
// control-plane node's failure would; etcd keeps the cluster's state.
func (c *Cluster) KillAPIServer(t TB) {
	t.Helper()
	port := c.env.ControlPlane.GetAPIServer().SecureServing.Port
	pids, err := ChildPIDs()
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	for _, pid := range pids {
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil || !strings.Contains(string(cmdline), "kube-apiserver") || !strings.Contains(string(cmdline), "--secure-port="+port+"\x00") {
			continue
		}
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatalf("testenv: kill the apiserver of %s: %v", c.Name, err)
		}
		Eventually(t, 10*time.Second, func() error {
			if ProcessAlive(pid) {
				return fmt.Errorf("kube-apiserver %d still runs", pid)
			}
			return nil
		})
		return
	}
	t.Fatalf("testenv: no kube-apiserver serving port %s among the test's processes", port)
}

// StartAPIServer starts the apiserver KillAPIServer killed again, on the
// same address, with the same certificates and etcd, and waits until it
// is healthy.
func (c *Cluster) StartAPIServer(t TB) {
	t.Helper()
	apiServer := c.env.ControlPlane.GetAPIServer()
	if err := apiServer.Stop(); err != nil { // reaps the killed process
		t.Fatalf("testenv: %v", err)
	}
	if err := apiServer.Start(); err != nil {
		t.Fatalf("testenv: restart the apiserver of %s: %v", c.Name, err)
	}
}
