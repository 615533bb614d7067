package testenv

import (
	"fmt"
	"net/http"
	"time"
)

// WaitServing waits up to timeout until the hub at apiURL answers
// its /healthz with 200 OK through client.
func WaitServing(t TB, client *http.Client, apiURL string, timeout time.Duration) {
	t.Helper()
	Eventually(t, timeout, func() error {
		resp, err := client.Get(apiURL + "/healthz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("hub: %s", resp.Status)
		}
		return nil
	})
}
