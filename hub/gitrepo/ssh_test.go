package gitrepo

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/flotilla-dev/flotilla/hub/config"
	"github.com/flotilla-dev/flotilla/test/testenv"
)

// TestMirrorFetchesAndPushesOverSSH runs the hub's SSH credentials, as its
// configuration builds them, against real git behind an SSH server: fetch,
// then a revert pushed back.
func TestMirrorFetchesAndPushesOverSSH(t *testing.T) {
	git := testenv.NewGitServer(t, testenv.GitServerOptions{})
	git.CreateRepo(t, "r")
	git.WriteFiles(t, "r", "main", "initial", map[string]string{"app/cm.yaml": "v: 1\n"})
	bump := git.WriteFiles(t, "r", "main", "bump", map[string]string{"app/cm.yaml": "v: 2\n"})
	keyFile, pub := sshKey(t)
	srv := git.ServeSSH(t, pub)
	knownHosts := writeFile(t, "known_hosts", srv.KnownHosts())

	auth, err := config.GitAuth{SSHKeyFile: keyFile, SSHKnownHostsFile: knownHosts}.AuthMethod()
	if err != nil {
		t.Fatal(err)
	}
	m, err := OpenMirror(t.TempDir(), Repository{URL: srv.RepoURL("r"), Auth: auth})
	if err != nil {
		t.Fatal(err)
	}
	refs, err := m.RemoteRefs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Fetch(context.Background(), refs); err != nil {
		t.Fatal(err)
	}
	if c, err := m.Resolve("main"); err != nil || c.Hash.String() != bump {
		t.Fatalf("main over SSH = %v, %v; want %s", c, err, bump)
	}
	res, err := m.Revert(context.Background(), "main", []string{"app"}, Author{Name: "Flotilla", Email: "flotilla@example.com"}, "")
	if err != nil {
		t.Fatal(err)
	}
	if head := git.Head(t, "r", "main"); head != res.Commit.String() {
		t.Fatalf("remote main is %s, want the revert %s pushed over SSH", head, res.Commit)
	}
	if got := gitOut(t, git.BareDir("r"), "show", "main:app/cm.yaml"); got != "v: 1" {
		t.Errorf("app/cm.yaml after the revert = %q, want v: 1", got)
	}
}

// TestSSHRefusesUnknownHostsAndKeys: a host key not in known_hosts, a
// changed one, and a key the server does not know each fail the fetch with
// an error naming the repository and never the key.
func TestSSHRefusesUnknownHostsAndKeys(t *testing.T) {
	git := testenv.NewGitServer(t, testenv.GitServerOptions{})
	git.CreateRepo(t, "r")
	git.WriteFiles(t, "r", "main", "initial", map[string]string{"app/cm.yaml": "v: 1\n"})
	keyFile, pub := sshKey(t)
	srv := git.ServeSSH(t, pub)
	impostor := git.ServeSSH(t, pub) // same repositories, another host key
	otherKey, _ := sshKey(t)
	t.Setenv("SSH_KNOWN_HOSTS", writeFile(t, "empty_known_hosts", ""))
	// The impostor's key, listed for the real server's address.
	changed := strings.Replace(impostor.KnownHosts(), knownHostsAddr(impostor), knownHostsAddr(srv), 1)

	for name, tc := range map[string]struct {
		auth config.GitAuth
		want string
	}{
		"host not in the default known_hosts": {config.GitAuth{SSHKeyFile: keyFile}, "knownhosts: key is unknown"},
		"host key changed":                    {config.GitAuth{SSHKeyFile: keyFile, SSHKnownHostsFile: writeFile(t, "changed", changed)}, "knownhosts: key mismatch"},
		"key not authorized":                  {config.GitAuth{SSHKeyFile: otherKey, SSHKnownHostsFile: writeFile(t, "kh", srv.KnownHosts())}, "unable to authenticate"},
	} {
		t.Run(name, func(t *testing.T) {
			auth, err := tc.auth.AuthMethod()
			if err != nil {
				t.Fatal(err)
			}
			m, err := OpenMirror(t.TempDir(), Repository{URL: srv.RepoURL("r"), Auth: auth})
			if err != nil {
				t.Fatal(err)
			}
			_, err = m.RemoteRefs(context.Background())
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), srv.RepoURL("r")) {
				t.Fatalf("error = %v, want it to name %s and say %q", err, srv.RepoURL("r"), tc.want)
			}
			key, _ := os.ReadFile(tc.auth.SSHKeyFile)
			if body := strings.Split(string(key), "\n")[1]; strings.Contains(err.Error(), body) {
				t.Fatalf("error carries the private key: %v", err)
			}
		})
	}
}

// sshKey writes a new OpenSSH private key and returns its file and public
// key.
func sshKey(t *testing.T) (string, ssh.PublicKey) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return writeFile(t, "id_ed25519", string(pem.EncodeToMemory(block))), sshPub
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// knownHostsAddr is how known_hosts writes a server's address.
func knownHostsAddr(s *testenv.GitSSH) string {
	return strings.Fields(s.KnownHosts())[0]
}
