package hub

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"slices"
	"testing"
)

func TestVerifyWebhook(t *testing.T) {
	body := []byte(`{"repository":{"clone_url":"https://git.example.com/org/gitops-config.git"}}`)
	mac := hmac.New(sha256.New, []byte("s3cret"))
	mac.Write(body)
	sig := hex.EncodeToString(mac.Sum(nil))
	tests := []struct {
		name    string
		header  http.Header
		secret  string
		wantErr bool
	}{
		{"github", http.Header{"X-Hub-Signature-256": {"sha256=" + sig}}, "s3cret", false},
		{"github bad signature", http.Header{"X-Hub-Signature-256": {"sha256=00" + sig[2:]}}, "s3cret", true},
		{"gitea", http.Header{"X-Gitea-Signature": {sig}}, "s3cret", false},
		{"gitea bad signature", http.Header{"X-Gitea-Signature": {"zz"}}, "s3cret", true},
		{"gitlab", http.Header{"X-Gitlab-Token": {"s3cret"}}, "s3cret", false},
		{"gitlab wrong token", http.Header{"X-Gitlab-Token": {"guess"}}, "s3cret", true},
		{"unsigned", http.Header{}, "s3cret", true},
		{"no secret configured", http.Header{"X-Gitlab-Token": {""}}, "", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := verifyWebhook(tc.header, body, tc.secret)
			if (err != nil) != tc.wantErr {
				t.Fatalf("verifyWebhook = %v, want error %t", err, tc.wantErr)
			}
		})
	}
}

func TestPayloadRepoURLs(t *testing.T) {
	tests := map[string]struct {
		body string
		want string
	}{
		"github": {`{"repository":{"clone_url":"https://github.com/o/r.git","html_url":"https://github.com/o/r"}}`, "https://github.com/o/r.git"},
		"gitlab": {`{"project":{"git_http_url":"https://gitlab.com/o/r.git","web_url":"https://gitlab.com/o/r"}}`, "https://gitlab.com/o/r.git"},
		"gitea":  {`{"repository":{"clone_url":"https://gitea.example.com/o/r.git"}}`, "https://gitea.example.com/o/r.git"},
	}
	for name, tc := range tests {
		if got := payloadRepoURLs([]byte(tc.body)); !slices.Contains(got, tc.want) {
			t.Errorf("%s: %v does not contain %s", name, got, tc.want)
		}
	}
	if got := payloadRepoURLs([]byte("not json")); got != nil {
		t.Errorf("garbage payload gave %v", got)
	}
}

func FuzzPayloadRepoURLs(f *testing.F) {
	f.Add([]byte(`{"repository":{"clone_url":"https://github.com/o/r.git"}}`))
	f.Add([]byte(`{"project":{"web_url":7}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, u := range payloadRepoURLs(body) {
			if u == "" {
				t.Fatal("empty URL returned")
			}
		}
	})
}
