// Command floor is the agent's memory floor: a program that links the
// libraries no Flotilla agent can do without (client-go's discovery and
// dynamic clients, Helm's engine, Kustomize, nats.go, the OpenTelemetry SDK
// with its OTLP exporter), uses each once, and then does nothing.
// BenchmarkAgentMemoryFloor reads its resident set: whatever the agent does
// on top of these libraries, it cannot be smaller than this.
//
//	floor KUBECONFIG NATS_URL
//
// It prints "ready" once every library has run, and exits on SIGTERM.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

const manifest = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: floor\n"

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: floor KUBECONFIG NATS_URL")
		os.Exit(2)
	}
	if err := run(os.Args[1], os.Args[2]); err != nil {
		fmt.Fprintln(os.Stderr, "floor:", err)
		os.Exit(1)
	}
}

func run(kubeconfig, natsURL string) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()

	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return err
	}
	disco, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return err
	}
	if _, _, err := disco.ServerGroupsAndResources(); err != nil {
		return err
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return err
	}
	if _, err := dyn.Resource(schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}).Get(ctx, "default", metav1.GetOptions{}); err != nil {
		return err
	}

	c := &chart.Chart{
		Metadata:  &chart.Metadata{APIVersion: chart.APIVersionV2, Name: "floor", Version: "0.1.0"},
		Templates: []*chart.File{{Name: "templates/cm.yaml", Data: []byte(manifest)}},
	}
	values, err := chartutil.ToRenderValues(c, nil, chartutil.ReleaseOptions{Name: "floor", Namespace: "default"}, chartutil.DefaultCapabilities)
	if err != nil {
		return err
	}
	if _, err := engine.Render(c, values); err != nil {
		return err
	}

	fs := filesys.MakeFsInMemory()
	if err := fs.WriteFile("/app/cm.yaml", []byte(manifest)); err != nil {
		return err
	}
	if err := fs.WriteFile("/app/kustomization.yaml", []byte("resources: [cm.yaml]\n")); err != nil {
		return err
	}
	if _, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(fs, "/app"); err != nil {
		return err
	}

	nc, err := nats.Connect(natsURL)
	if err != nil {
		return err
	}
	defer nc.Close()
	if _, err := nc.JetStream(); err != nil {
		return err
	}

	exporter, err := otlptracehttp.New(ctx)
	if err != nil {
		return err
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exporter))
	_, span := tp.Tracer("floor").Start(ctx, "floor")
	span.End()
	defer tp.Shutdown(context.Background())

	fmt.Println("ready")
	<-ctx.Done()
	return nil
}
