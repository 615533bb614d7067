package api_test

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"

	"github.com/flotilla-dev/flotilla/hub/api"
	"github.com/flotilla-dev/flotilla/hub/api/apitest"
	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
	"github.com/flotilla-dev/flotilla/proto/flotilla/v1/flotillav1connect"
)

// memoryBudget is more than the API may allocate to refuse one request
// (some 4 MiB, more under the race detector, which defeats
// sync.Pool), and far less than decompressing the bomb takes (256 MiB).
const memoryBudget = 16 << 20

// TestRequestSizeLimits sends a gzip bomb: 64 KiB that decompress to
// 64 MiB (deflate's ratio tops out near 1000:1), which the hub used to
// decompress before it even looked at the token, allocating hundreds of
// MiB on the way.
func TestRequestSizeLimits(t *testing.T) {
	const bombSize = 64 << 20
	bomb := gzipped(t, make([]byte, bombSize))
	if len(bomb) > 100<<10 {
		t.Fatalf("the bomb is %d bytes compressed, want under 100 KiB", len(bomb))
	}
	syncRequest, err := proto.Marshal(&flotillav1.SyncAppRequest{App: "api-service"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name          string
		authorization string
		body          []byte
		gzip          bool
		wantStatus    int
		want          string // the error; "" for none
		wantAudits    int
	}{{
		name: "a gzip bomb without a token",
		body: bomb, gzip: true,
		wantStatus: http.StatusUnauthorized,
		want:       "unauthenticated: no bearer token: pass --token or set FLOTILLA_TOKEN",
	}, {
		name:          "a gzip bomb with a wrong token",
		authorization: bearer("guessed"),
		body:          bomb, gzip: true,
		wantStatus: http.StatusUnauthorized,
		want:       "unauthenticated: token not accepted (expired or wrong)",
	}, {
		name:          "a gzip bomb with a token",
		authorization: bearer(apitest.OperatorToken),
		body:          bomb, gzip: true,
		wantStatus: http.StatusTooManyRequests, // Connect's status for resource_exhausted
		want:       fmt.Sprintf("resource_exhausted: message size %d is larger than configured max %d", bombSize, api.MaxRequestBytes),
	}, {
		name:          "a body over the limit with a token",
		authorization: bearer(apitest.OperatorToken),
		body:          make([]byte, 2*api.MaxRequestBytes),
		wantStatus:    http.StatusTooManyRequests,
		want: fmt.Sprintf("resource_exhausted: read first %d bytes of message: exceeded %d byte http.MaxBytesReader limit",
			api.MaxRequestBytes, api.MaxRequestBytes),
	}, {
		name:          "a gzipped sync with a token",
		authorization: bearer(apitest.OperatorToken),
		body:          gzipped(t, syncRequest), gzip: true,
		wantStatus: http.StatusOK,
		wantAudits: 1,
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			hub := apitest.Fleet(time.Now())
			url := apitest.Serve(t, hub) + flotillav1connect.HubServiceSyncAppProcedure
			var status int
			var body string
			allocated := allocatedBy(func() { status, body = post(t, url, tc.authorization, tc.body, tc.gzip) })
			if status != tc.wantStatus {
				t.Errorf("status %d, want %d", status, tc.wantStatus)
			}
			if diff := cmp.Diff(tc.want, connectError(body)); diff != "" {
				t.Errorf("error (-want +got):\n%s", diff)
			}
			if allocated > memoryBudget {
				t.Errorf("the call allocated %d KiB, want under %d KiB", allocated>>10, memoryBudget>>10)
			}
			if got := len(hub.Audits()); got != tc.wantAudits {
				t.Errorf("%d audit events, want %d: %v", got, tc.wantAudits, hub.Audits())
			}
		})
	}
}

// gzipped is data, gzip-compressed.
func gzipped(t *testing.T, data []byte) []byte {
	var b bytes.Buffer
	zw, err := gzip.NewWriterLevel(&b, gzip.BestCompression)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := zw.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// post sends body to the Connect unary procedure at url as protobuf
// and returns the answer's status and body.
func post(t *testing.T, url, authorization string, body []byte, gzipped bool) (int, string) {
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/proto")
	req.Header.Set("Connect-Protocol-Version", "1")
	if gzipped {
		req.Header.Set("Content-Encoding", "gzip")
	}
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(answer)
}

// allocatedBy is how many bytes the whole process, the API's server
// included, allocated while f ran.
func allocatedBy(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}
