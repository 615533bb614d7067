package clustercreds

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	flotillav1 "github.com/flotilla-dev/flotilla/proto/flotilla/v1"
)

// The bundle's files, which are also the keys of the agent's Secret.
const (
	ClusterFile   = "cluster"
	NATSURLFile   = "nats-url"
	NATSCredsFile = "nats.creds"
	HubKeysFile   = "hub-keys.pem"
	CAFile        = "ca.pem"
)

// SecretName is the Secret the agent chart (deployments/charts/flotilla-agent)
// mounts.
const SecretName = "flotilla-agent-credentials"

// maxFileSize bounds each file Read takes: a bundle's files are a few KiB.
const maxFileSize = 1 << 20

func files(c *flotillav1.ClusterCredentials) map[string][]byte {
	out := map[string][]byte{
		ClusterFile: []byte(c.GetCluster() + "\n"),
		NATSURLFile: []byte(c.GetNatsUrl() + "\n"),
		HubKeysFile: c.GetHubKeys(),
	}
	if len(c.GetNatsCreds()) > 0 {
		out[NATSCredsFile] = c.GetNatsCreds()
	}
	if len(c.GetCa()) > 0 {
		out[CAFile] = c.GetCa()
	}
	return out
}

// Write writes the bundle's files into dir (created, mode 0700); the
// credentials are readable only by their owner.
func Write(dir string, c *flotillav1.ClusterCredentials) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	for name, data := range files(c) {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// Read reads a bundle from dir (a mounted Secret). The cluster, NATS URL
// and hub keys are required; the NATS credentials and CA are optional (a
// NATS that needs none, a server certificate from a public CA).
func Read(dir string) (*flotillav1.ClusterCredentials, error) {
	read := func(name string, required bool) ([]byte, error) {
		path := filepath.Join(dir, name)
		info, err := os.Stat(path)
		if errors.Is(err, os.ErrNotExist) && !required {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("credentials: %w", err)
		}
		if info.Size() > maxFileSize {
			return nil, fmt.Errorf("credentials: %s is %d bytes, over the %d limit", path, info.Size(), maxFileSize)
		}
		return os.ReadFile(path)
	}
	c := &flotillav1.ClusterCredentials{}
	var errs []error
	for _, f := range []struct {
		name     string
		required bool
		set      func([]byte)
	}{
		{ClusterFile, true, func(b []byte) { c.Cluster = strings.TrimSpace(string(b)) }},
		{NATSURLFile, true, func(b []byte) { c.NatsUrl = strings.TrimSpace(string(b)) }},
		{HubKeysFile, true, func(b []byte) { c.HubKeys = b }},
		{NATSCredsFile, false, func(b []byte) { c.NatsCreds = b }},
		{CAFile, false, func(b []byte) { c.Ca = b }},
	} {
		data, err := read(f.name, f.required)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		f.set(data)
	}
	return c, errors.Join(errs...)
}

// Secret is the agent's Secret in namespace holding the bundle, as YAML
// for kubectl apply.
func Secret(c *flotillav1.ClusterCredentials, namespace string) ([]byte, error) {
	s := corev1.Secret{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: metav1.ObjectMeta{Name: SecretName, Namespace: namespace, Labels: map[string]string{"app.kubernetes.io/name": "flotilla-agent"}},
		Type:       corev1.SecretTypeOpaque,
		Data:       files(c),
	}
	return yaml.Marshal(s)
}
