package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/flotilla-dev/flotilla/hub/config"
	"github.com/flotilla-dev/flotilla/internal/appkey"
	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
	"github.com/flotilla-dev/flotilla/test/testenv"
	"github.com/flotilla-dev/flotilla/test/testenv/flotillatest"
)

const (
	chartApps         = 500
	chartsPerRepo     = 20
	chartRefreshEvery = 2 * time.Second
)

// chartFleet is three Helm repositories and an OCI registry (HTTPS, basic
// auth) and the Applications that name their charts.
type chartFleet struct {
	helm [3]*testenv.HelmRepository
	oci  *testenv.OCIRegistry
}

func startChartFleet(b *testing.B) *chartFleet {
	b.Helper()
	f := &chartFleet{oci: testenv.NewOCIRegistry(b, "reader", "oci-pw")}
	for r := range f.helm {
		f.helm[r] = testenv.NewHelmRepository(b, "reader", "helm-pw")
		for c := range chartsPerRepo {
			f.helm[r].Add(b, testenv.DeploymentChart(fmt.Sprintf("chart-%d-%02d", r, c), "1.0.0", "nginx:1.0.0"))
		}
	}
	for c := range chartsPerRepo {
		name := fmt.Sprintf("chart-oci-%02d", c)
		f.oci.Push(b, "charts", testenv.DeploymentChart(name, "1.0.0", "nginx:1.0.0").Package(b), name, "1.0.0")
	}
	return f
}

func (f *chartFleet) config(b *testing.B) config.Charts {
	b.Helper()
	secret := func(v string) string {
		file := filepath.Join(b.TempDir(), "pw")
		if err := os.WriteFile(file, []byte(v), 0o600); err != nil {
			b.Fatal(err)
		}
		return file
	}
	cfg := config.Charts{RefreshInterval: config.Duration{Duration: chartRefreshEvery}}
	for _, r := range f.helm {
		cfg.Repositories = append(cfg.Repositories, config.ChartRepository{URL: r.URL, Username: "reader", PasswordFile: secret("helm-pw"), CAFile: r.CAFile})
	}
	cfg.Repositories = append(cfg.Repositories, config.ChartRepository{URL: "oci://" + f.oci.Host, Username: "reader", PasswordFile: secret("oci-pw"), CAFile: f.oci.CAFile})
	return cfg
}

// app is Application i: a chart of repository i%4 (the fourth the OCI
// registry) at version.
func (f *chartFleet) app(i int, version string) (string, string) {
	repo, chart := "", ""
	switch r := i % 4; r {
	case 3:
		repo, chart = "oci://"+f.oci.Host+"/charts", fmt.Sprintf("chart-oci-%02d", i/4%chartsPerRepo)
	default:
		repo, chart = f.helm[r].URL, fmt.Sprintf("chart-%d-%02d", r, i/4%chartsPerRepo)
	}
	name := fmt.Sprintf("app-%03d", i)
	return name, fmt.Sprintf(`apiVersion: argoproj.io/v1alpha1
kind: Application
metadata: {name: %s, namespace: argocd}
spec:
  project: default
  source: {repoURL: %q, chart: %s, targetRevision: %q, helm: {releaseName: %s}}
  destination: {server: https://kubernetes.default.svc, namespace: %s}
`, name, repo, chart, version, name, name)
}

func (f *chartFleet) counts() (index, notModified, downloads int64) {
	for _, r := range f.helm {
		index += r.IndexRequests.Load()
		notModified += r.IndexNotModified.Load()
		downloads += r.ChartDownloads.Load()
	}
	return index, notModified, downloads
}

// BenchmarkChartVersionBump runs a hub with 500 Applications of charts
// from three Helm repositories and an OCI registry, and measures from the
// webhook of a commit that bumps one Application to a chart version just
// released upstream to its new desired state in the bucket, over 20
// bumps; then counts what a refresh with nothing changed asks of the
// repositories.
func BenchmarkChartVersionBump(b *testing.B) {
	f := startChartFleet(b)
	h := startHubWith(b, flotillatest.HubOptions{PollInterval: time.Hour, Charts: f.config(b)})
	h.registerClusters(b, 1)
	files := map[string]string{}
	for i := range chartApps {
		name, manifest := f.app(i, "1.0.0")
		files["apps/"+name+".yaml"] = manifest
	}
	h.Commit(b, "500 chart apps", files)
	start := time.Now()
	h.webhook(b)
	testenv.Eventually(b, 5*time.Minute, func() error {
		n := 0
		for _, ds := range h.Server.Published() {
			if ds.GetSource().GetChart() != "" {
				n++
			}
		}
		if n < chartApps {
			return fmt.Errorf("%d of %d chart apps published", n, chartApps)
		}
		return nil
	})
	b.ReportMetric(time.Since(start).Seconds(), "first-publish-s")

	var latencies []time.Duration
	for b.Loop() {
		for k := range 20 {
			i := k * 25 % chartApps
			name, _ := f.app(i, "")
			version := fmt.Sprintf("1.%d.0", k+1)
			chartName, repo := "", i%4
			if repo == 3 {
				chartName = fmt.Sprintf("chart-oci-%02d", i/4%chartsPerRepo)
				f.oci.Push(b, "charts", testenv.DeploymentChart(chartName, version, "nginx:"+version).Package(b), chartName, version)
			} else {
				chartName = fmt.Sprintf("chart-%d-%02d", repo, i/4%chartsPerRepo)
				f.helm[repo].Add(b, testenv.DeploymentChart(chartName, version, "nginx:"+version))
			}
			_, manifest := f.app(i, version)
			key := appkey.Join("prod-00000", name)
			w, err := h.kv.Watch(b.Context(), key, jetstream.UpdatesOnly())
			if err != nil {
				b.Fatal(err)
			}
			prev, err := h.kv.Get(context.Background(), key)
			if err != nil {
				b.Fatal(err)
			}
			h.Commit(b, name+" "+version, map[string]string{"apps/" + name + ".yaml": manifest})
			t0 := time.Now()
			h.webhook(b)
			waitHistory(b, h.kv, w, map[string]bool{key: true}, historyOf(b, prev.Value())+1)
			latencies = append(latencies, time.Since(t0))
			w.Stop()
		}
	}
	b.ReportMetric(float64(percentile(latencies, 0.5).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(percentile(latencies, 0.99).Microseconds())/1000, "p99-ms")

	// Refreshes with nothing changed: conditional index requests, no
	// chart downloaded.
	index0, notModified0, downloads0 := f.counts()
	time.Sleep(3 * chartRefreshEvery) // the refresh loop's own period: what is measured
	index1, notModified1, downloads1 := f.counts()
	b.ReportMetric(float64(index1-index0), "idle-index-requests")
	b.ReportMetric(float64(notModified1-notModified0), "idle-index-304s")
	b.ReportMetric(float64(downloads1-downloads0), "idle-chart-downloads")
}

// historyOf is the history id of a desired-state entry's value.
func historyOf(b *testing.B, value []byte) uint64 {
	b.Helper()
	env := &flotillav1.SignedDesiredState{}
	ds := &flotillav1.DesiredState{}
	if err := proto.Unmarshal(value, env); err != nil {
		b.Fatal(err)
	}
	if err := proto.Unmarshal(env.GetDesiredState(), ds); err != nil {
		b.Fatal(err)
	}
	return ds.GetHistoryId()
}
