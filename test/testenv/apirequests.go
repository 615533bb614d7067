package testenv

import (
	"bufio"
	"bytes"
	"fmt"
	"strconv"
	"strings"
)

// APIRequests is the kube-apiserver's count of the requests it served
// (apiserver_request_total, from its /metrics) whose labels include every
// one of labels: APIRequests(t, map[string]string{"verb": "APPLY",
// "dry_run": "All", "resource": "deployments"}) counts server-side dry-run
// applies of Deployments. It tells that a client made requests that leave
// no other trace, a dry-run or a read.
func (c *Cluster) APIRequests(t TB, labels map[string]string) float64 {
	t.Helper()
	data, err := c.Client.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(t.Context())
	if err != nil {
		t.Fatalf("testenv: cluster %s: /metrics: %v", c.Name, err)
	}
	var total float64
	lines := bufio.NewScanner(bytes.NewReader(data))
	lines.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for lines.Scan() {
		line := lines.Text()
		series, ok := strings.CutPrefix(line, "apiserver_request_total{")
		if !ok {
			continue
		}
		set, value, ok := strings.Cut(series, "} ")
		if !ok || !hasLabels(set, labels) {
			continue
		}
		v, err := strconv.ParseFloat(strings.Fields(value)[0], 64)
		if err != nil {
			t.Fatalf("testenv: cluster %s: /metrics: %q: %v", c.Name, line, err)
		}
		total += v
	}
	return total
}

// hasLabels reports whether a label set as /metrics prints it
// (a="1",b="2") has every one of labels.
func hasLabels(set string, labels map[string]string) bool {
	for name, value := range labels {
		if !strings.Contains(","+set+",", fmt.Sprintf(",%s=%q,", name, value)) {
			return false
		}
	}
	return true
}
