package testenv

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Prometheus is a real Prometheus server (Debian's prometheus package)
// scraping the targets it was started with every second.
type Prometheus struct {
	// URL is the server's base URL, for AnalysisTemplates' address.
	URL string
}

// StartPrometheus runs Debian's Prometheus with its own data directory,
// scraping targets (host:port) every second, and stops it when the test
// ends. .ci/run installs the package.
func StartPrometheus(t TB, targets ...string) *Prometheus {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Fatalf("testenv: prometheus is not installed (apt-get install prometheus; .ci/run does): %v", err)
	}
	dir := t.TempDir()
	quoted := make([]string, len(targets))
	for i, target := range targets {
		quoted[i] = fmt.Sprintf("%q", target)
	}
	config := fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: workload
    scrape_interval: 1s
    static_configs:
      - targets: [%s]
`, strings.Join(quoted, ", "))
	configPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(configPath, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := FreeAddr(t)
	startProcess(t, bin, "--config.file="+configPath, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--log.level=warn")
	p := &Prometheus{URL: "http://" + addr}
	Eventually(t, 30*time.Second, func() error {
		resp, err := prometheusClient.Get(p.URL + "/-/ready")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("prometheus not ready: %s", resp.Status)
		}
		return nil
	})
	return p
}

// FreeAddr is a loopback address whose port was free a moment ago, for a
// process that must be told where to listen.
func FreeAddr(t TB) string { return FreeAddrs(t, 1)[0] }

// FreeAddrs is n distinct loopback addresses whose ports were free a
// moment ago: all are held open until the last is found, so none repeats.
func FreeAddrs(t TB, n int) []string {
	addrs := make([]string, n)
	for i := range addrs {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		addrs[i] = ln.Addr().String()
	}
	return addrs
}

// FreeServerAddrs is n distinct loopback addresses, as FreeAddrs, whose
// ports lie below the kernel's range of ephemeral ports: no outgoing
// connection takes one while its server is down or not yet listening. A
// server restarted under thousands of clients (the fleet simulator's
// hub), or one that listens only seconds after it starts (hub replicas,
// once their JetStream cluster formed), needs that, or a connection may
// hold its port by the time it listens.
func FreeServerAddrs(t TB, n int) []string {
	first := 32768 // Linux's default first ephemeral port
	if data, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if fields := strings.Fields(string(data)); len(fields) == 2 {
			if v, err := strconv.Atoi(fields[0]); err == nil {
				first = v
			}
		}
	}
	const lowest = 10000
	if first <= lowest {
		t.Fatalf("testenv: the ephemeral ports start at %d: no room below them", first)
	}
	var addrs []string
	start := lowest + rand.IntN(first-lowest)
	for i := range first - lowest {
		port := lowest + (start-lowest+i)%(first-lowest)
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		defer ln.Close()
		if addrs = append(addrs, ln.Addr().String()); len(addrs) == n {
			return addrs
		}
	}
	t.Fatalf("testenv: %d free ports below %d: found %d", n, first, len(addrs))
	return nil
}

// Traffic is a test workload's metrics endpoint: the
// http_requests_total{status,app,track} counters of the user story's
// query, advanced by the test at a rate and error ratio per track.
type Traffic struct {
	// Target is host:port for Prometheus to scrape.
	Target string

	requests *prometheus.CounterVec
	mu       sync.Mutex
	ratios   map[[2]string]float64 // app, track → error ratio; absent: no traffic
}

// StartTraffic serves the counters and advances each track 100 requests
// every 100 ms at its error ratio, until the test ends.
func StartTraffic(t TB) *Traffic {
	t.Helper()
	registry := prometheus.NewRegistry()
	tr := &Traffic{ratios: map[[2]string]float64{},
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "http_requests_total", Help: "Requests served, by status."}, []string{"status", "app", "track"})}
	registry.MustRegister(tr.requests)
	srv := httptest.NewServer(promhttp.HandlerFor(registry, promhttp.HandlerOpts{}))
	u, _ := url.Parse(srv.URL)
	tr.Target = u.Host
	done := make(chan struct{})
	t.Cleanup(func() { close(done); srv.Close() })
	go func() {
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			tr.mu.Lock()
			for key, ratio := range tr.ratios {
				errors := 100 * ratio
				tr.requests.WithLabelValues("500", key[0], key[1]).Add(errors)
				tr.requests.WithLabelValues("200", key[0], key[1]).Add(100 - errors)
			}
			tr.mu.Unlock()
		}
	}()
	return tr
}

// Serve sets the error ratio (0.002 is 0.2 %) of app's track.
func (tr *Traffic) Serve(app, track string, errorRatio float64) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.ratios[[2]string{app, track}] = errorRatio
}

// End stops app's track's traffic; its counters keep their values.
func (tr *Traffic) End(app, track string) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	delete(tr.ratios, [2]string{app, track})
}

// WaitQuery waits until query returns a non-empty result, as a workload's
// Prometheus does once it scraped its counters twice (a rate needs two
// samples).
func (p *Prometheus) WaitQuery(t TB, query string) {
	t.Helper()
	Eventually(t, 30*time.Second, func() error {
		resp, err := prometheusClient.Get(p.URL + "/api/v1/query?query=" + url.QueryEscape(query))
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var body struct {
			Data struct {
				Result []any `json:"result"`
			} `json:"data"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			return err
		}
		if len(body.Data.Result) == 0 {
			return fmt.Errorf("prometheus: no result yet for %s", query)
		}
		return nil
	})
}

// prometheusClient bounds each request to the test's Prometheus: a server
// that accepts and never answers must fail an Eventually's attempt, not
// block it past its deadline.
var prometheusClient = &http.Client{Timeout: 10 * time.Second}
