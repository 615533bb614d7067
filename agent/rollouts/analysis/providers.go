package analysis

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	promapi "github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
	"k8s.io/client-go/util/jsonpath"
)

// Measurer takes one measurement from a metric's provider. It returns the
// value conditions see as result and its text for the run's status.
type Measurer interface {
	Measure(ctx context.Context, p Provider) (result any, value string, err error)
}

// Providers is the Measurer of the built-in providers.
type Providers struct {
	// Client makes the web provider's requests (nil: a default client).
	Client *http.Client
}

// Default bounds of one measurement, where the metric sets none.
const (
	defaultPrometheusTimeout = 30 * time.Second
	defaultWebTimeout        = 10 * time.Second
	maxWebBody               = 1 << 20
)

// Measure queries the provider the metric names.
func (ps Providers) Measure(ctx context.Context, p Provider) (any, string, error) {
	switch {
	case p.Prometheus != nil:
		return measurePrometheus(ctx, p.Prometheus)
	case p.Web != nil:
		return ps.measureWeb(ctx, p.Web)
	}
	return nil, "", errors.New("provider: set prometheus or web")
}

// measurePrometheus runs an instant query. A vector's result is the list of
// its sample values (so result[0] is the first), a scalar's its value, as
// in Argo Rollouts.
func measurePrometheus(ctx context.Context, p *Prometheus) (any, string, error) {
	transport := promapi.DefaultRoundTripper
	if p.Insecure {
		transport = &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}} // #nosec G402 -- the metric asked for it
	}
	if len(p.Headers) > 0 {
		transport = withHeaders{next: transport, headers: p.Headers}
	}
	client, err := promapi.NewClient(promapi.Config{Address: p.Address, RoundTripper: transport})
	if err != nil {
		return nil, "", fmt.Errorf("prometheus address %q: %w", redacted(p.Address), err)
	}
	timeout := defaultPrometheusTimeout
	if p.Timeout != nil && *p.Timeout > 0 {
		timeout = time.Duration(*p.Timeout) * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	value, _, err := promv1.NewAPI(client).Query(ctx, p.Query, time.Now(), promv1.WithTimeout(timeout))
	if err != nil {
		return nil, "", fmt.Errorf("prometheus %s: %w", redacted(p.Address), err)
	}
	switch v := value.(type) {
	case model.Vector:
		results := make([]float64, 0, len(v))
		texts := make([]string, 0, len(v))
		for _, s := range v {
			results = append(results, float64(s.Value))
			texts = append(texts, s.Value.String())
		}
		return results, "[" + strings.Join(texts, ",") + "]", nil
	case *model.Scalar:
		return float64(v.Value), v.Value.String(), nil
	}
	return nil, "", fmt.Errorf("prometheus %s: result type %s is not supported (use a vector or a scalar)", redacted(p.Address), value.Type())
}

// withHeaders sets a metric's headers on every request.
type withHeaders struct {
	next    http.RoundTripper
	headers []WebHeader
}

func (t withHeaders) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	for _, h := range t.headers {
		req.Header.Set(h.Key, h.Value)
	}
	return t.next.RoundTrip(req)
}

// redacted is an address without the password it may carry, for messages.
func redacted(address string) string {
	u, err := url.Parse(address)
	if err != nil {
		return "(unparsable address)"
	}
	return u.Redacted()
}

// measureWeb calls the endpoint and decodes its JSON; with jsonPath, the
// value at that path is the result.
func (ps Providers) measureWeb(ctx context.Context, w *Web) (any, string, error) {
	timeout := defaultWebTimeout
	if w.TimeoutSeconds > 0 {
		timeout = time.Duration(w.TimeoutSeconds) * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	method := w.Method
	if method == "" {
		method = http.MethodGet
	}
	var body io.Reader
	if w.Body != "" {
		body = strings.NewReader(w.Body)
	}
	req, err := http.NewRequestWithContext(ctx, method, w.URL, body)
	if err != nil {
		return nil, "", fmt.Errorf("web url %q: %w", w.URL, err)
	}
	for _, h := range w.Headers {
		req.Header.Set(h.Key, h.Value)
	}
	client := ps.Client
	if client == nil {
		client = http.DefaultClient
	}
	if w.Insecure {
		client = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} // #nosec G402 -- the metric asked for it
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, "", fmt.Errorf("web %s: %w", req.URL.Redacted(), err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxWebBody))
	if err != nil {
		return nil, "", fmt.Errorf("web %s: %w", req.URL.Redacted(), err)
	}
	if resp.StatusCode < 200 || resp.StatusCode >= 300 {
		return nil, "", fmt.Errorf("web %s: status %d", req.URL.Redacted(), resp.StatusCode)
	}
	var doc any
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, "", fmt.Errorf("web %s: response is not JSON: %w", req.URL.Redacted(), err)
	}
	if w.JSONPath == "" {
		return doc, string(bytes.TrimSpace(data)), nil
	}
	return pick(doc, w.JSONPath)
}

// pick evaluates a Kubernetes JSONPath ("{$.data.ok}") on doc.
func pick(doc any, path string) (any, string, error) {
	jp := jsonpath.New("metric")
	if err := jp.Parse(path); err != nil {
		return nil, "", fmt.Errorf("jsonPath %q: %w", path, err)
	}
	results, err := jp.FindResults(doc)
	if err != nil {
		return nil, "", fmt.Errorf("jsonPath %q: %w", path, err)
	}
	if len(results) == 0 || len(results[0]) == 0 {
		return nil, "", fmt.Errorf("jsonPath %q matched nothing", path)
	}
	v := results[0][0].Interface()
	text, _ := json.Marshal(v)
	// Argo Rollouts compares numbers as numbers: a string holding one is
	// given as a float.
	if s, ok := v.(string); ok {
		if f, err := strconv.ParseFloat(s, 64); err == nil {
			return f, s, nil
		}
	}
	return v, string(text), nil
}
