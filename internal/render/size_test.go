package render

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRenderRefusesHelmOutputPastTheLimit(t *testing.T) {
	root := t.TempDir()
	writeFiles(t, root, map[string]string{
		"charts/big/Chart.yaml":         "apiVersion: v2\nname: big\nversion: 0.1.0\n",
		"charts/big/templates/big.yaml": configMap,
		"charts/big/templates/pad.yaml": fmt.Sprintf("{{- range until %d }}\n# {{ repeat %d \"x\" }}{{ end }}\n", maxRenderSize>>20+1, 1<<20),
	})
	_, err := Render(context.Background(), Request{Root: root, Path: "charts/big"})
	if want := "render charts/big: helm template: chart big rendered more than 64 MiB"; err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("error = %v, want %q", err, want)
	}
}

func TestRenderRefusesDirectoryPastTheLimit(t *testing.T) {
	root := t.TempDir()
	writeFiles(t, root, map[string]string{"dir/cm.yaml": configMap})
	big := append([]byte("# "), bytes.Repeat([]byte("x"), maxRenderSize)...)
	if err := os.WriteFile(filepath.Join(root, "dir", "big.yaml"), big, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Render(context.Background(), Request{Root: root, Path: "dir"})
	if want := "render dir/big.yaml: the directory's manifests are larger than 64 MiB"; err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("error = %v, want %q", err, want)
	}
}
