package hub

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/flotilla-dev/flotilla/hub/config"
)

// maxWebhookBody bounds a push payload; GitHub caps theirs at 25 MB but a
// push event is a few KiB.
const maxWebhookBody = 1 << 20

// serveWebhook takes GitHub, GitLab and Gitea push events, verifies their
// signature or token, and polls the repositories they name at once.
func (h *Hub) serveWebhook(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxWebhookBody+1))
	if err != nil || len(body) > maxWebhookBody {
		http.Error(w, "payload unreadable or too large", http.StatusRequestEntityTooLarge)
		return
	}
	if err := verifyWebhook(r.Header, body, h.secret); err != nil {
		h.log.Warn("webhook refused", "remote", r.RemoteAddr, "reason", err.Error())
		http.Error(w, "webhook refused: "+err.Error(), http.StatusUnauthorized)
		return
	}
	urls := payloadRepoURLs(body)
	var matched []string
	for _, repo := range h.repos {
		for _, u := range urls {
			if config.NormalizeURL(u) == config.NormalizeURL(repo.mirror.URL()) {
				matched = append(matched, repo.mirror.URL())
				select {
				case repo.pollNow <- struct{}{}:
				default:
				}
				break
			}
		}
	}
	if len(matched) == 0 {
		w.WriteHeader(http.StatusOK)
		fmt.Fprintf(w, "no watched repository in payload (%s)\n", strings.Join(urls, ", "))
		return
	}
	w.WriteHeader(http.StatusAccepted)
	fmt.Fprintf(w, "refreshing %s\n", strings.Join(matched, ", "))
}

// verifyWebhook checks GitHub's X-Hub-Signature-256 and Gitea's
// X-Gitea-Signature (HMAC-SHA256 of the body) and GitLab's X-Gitlab-Token
// (the secret itself). With no secret configured, webhooks are refused:
// an unauthenticated endpoint would let anyone make the hub poll.
func verifyWebhook(header http.Header, body []byte, secret string) error {
	if secret == "" {
		return fmt.Errorf("no webhook secret configured")
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	want := mac.Sum(nil)
	switch {
	case header.Get("X-Hub-Signature-256") != "":
		got, err := hex.DecodeString(strings.TrimPrefix(header.Get("X-Hub-Signature-256"), "sha256="))
		if err != nil || !hmac.Equal(got, want) {
			return fmt.Errorf("bad X-Hub-Signature-256")
		}
	case header.Get("X-Gitea-Signature") != "":
		got, err := hex.DecodeString(header.Get("X-Gitea-Signature"))
		if err != nil || !hmac.Equal(got, want) {
			return fmt.Errorf("bad X-Gitea-Signature")
		}
	case header.Get("X-Gitlab-Token") != "":
		if subtle.ConstantTimeCompare([]byte(header.Get("X-Gitlab-Token")), []byte(secret)) != 1 {
			return fmt.Errorf("bad X-Gitlab-Token")
		}
	default:
		return fmt.Errorf("no signature (X-Hub-Signature-256, X-Gitea-Signature or X-Gitlab-Token)")
	}
	return nil
}

// payloadRepoURLs collects the repository URLs a GitHub, Gitea or GitLab
// push payload names.
func payloadRepoURLs(body []byte) []string {
	var p struct {
		Repository map[string]any `json:"repository"`
		Project    map[string]any `json:"project"`
	}
	if json.Unmarshal(body, &p) != nil {
		return nil
	}
	var out []string
	for _, m := range []map[string]any{p.Repository, p.Project} {
		for _, k := range []string{"clone_url", "html_url", "git_http_url", "web_url", "ssh_url", "git_ssh_url", "url", "homepage"} {
			if s, ok := m[k].(string); ok && s != "" {
				out = append(out, s)
			}
		}
	}
	return out
}
