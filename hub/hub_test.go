package hub

import (
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"

	"github.com/flotilla-dev/flotilla/hub/config"
)

// A hub that cannot start returns the reason; it used to panic in its own
// cleanup (Close on the nil it was returning).
func TestNewReportsAFailedStart(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	cfg, err := config.Parse("hub.yaml", []byte("dataDir: "+t.TempDir()+"\nnats:\n  embeddedListen: "+taken.Addr().String()+"\n"))
	if err != nil {
		t.Fatal(err)
	}
	h, err := New(t.Context(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err == nil {
		h.Close()
		t.Fatalf("New on a taken NATS port succeeded")
	}
	if h != nil {
		t.Errorf("New returned a hub with its error %v", err)
	}
	if !strings.Contains(err.Error(), taken.Addr().String()) && !strings.Contains(strings.ToLower(err.Error()), "address already in use") {
		t.Errorf("error %q does not say the port is taken", err)
	}
}
