package testenv

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"path/filepath"
	"strings"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// GitSSH serves a GitServer's repositories over SSH as a Git host does: a
// session may exec only `git-upload-pack` or `git-receive-pack` on a
// repository, and the real git programs answer it.
type GitSSH struct {
	// Addr is the server's host:port on the loopback interface.
	Addr string
	// HostKey is the server's public host key.
	HostKey ssh.PublicKey
	root    string
}

// ServeSSH starts an SSH server for g's repositories, stopped when the test
// ends. User "git" may log in with clientKey, and nobody else, and with no
// other key.
func (g *GitServer) ServeSSH(t TB, clientKey ssh.PublicKey) *GitSSH {
	t.Helper()
	_, hostKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(hostKey)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &ssh.ServerConfig{
		PublicKeyCallback: func(meta ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			if meta.User() == "git" && bytes.Equal(key.Marshal(), clientKey.Marshal()) {
				return &ssh.Permissions{}, nil
			}
			return nil, fmt.Errorf("key %s is not authorized for %s", ssh.FingerprintSHA256(key), meta.User())
		},
	}
	cfg.AddHostKey(signer)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	s := &GitSSH{Addr: ln.Addr().String(), HostKey: signer.PublicKey(), root: g.root}
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go s.serve(conn, cfg)
		}
	}()
	return s
}

// RepoURL is the ssh:// clone URL of a repository.
func (s *GitSSH) RepoURL(name string) string {
	return "ssh://git@" + s.Addr + "/" + name + ".git"
}

// KnownHosts is the known_hosts line that trusts this server.
func (s *GitSSH) KnownHosts() string {
	return knownhosts.Line([]string{knownhosts.Normalize(s.Addr)}, s.HostKey) + "\n"
}

func (s *GitSSH) serve(conn net.Conn, cfg *ssh.ServerConfig) {
	defer conn.Close()
	_, channels, requests, err := ssh.NewServerConn(conn, cfg)
	if err != nil {
		return
	}
	go ssh.DiscardRequests(requests)
	for nc := range channels {
		if nc.ChannelType() != "session" {
			_ = nc.Reject(ssh.UnknownChannelType, "only sessions")
			continue
		}
		ch, reqs, err := nc.Accept()
		if err != nil {
			continue
		}
		go s.session(ch, reqs)
	}
}

// session runs the one git command a session execs and reports its exit
// status; shells, ptys and other commands are refused.
func (s *GitSSH) session(ch ssh.Channel, reqs <-chan *ssh.Request) {
	defer ch.Close()
	for req := range reqs {
		if req.Type != "exec" {
			_ = req.Reply(false, nil)
			continue
		}
		var payload struct{ Command string }
		if err := ssh.Unmarshal(req.Payload, &payload); err != nil {
			_ = req.Reply(false, nil)
			continue
		}
		cmd, err := s.gitCommand(payload.Command)
		if err != nil {
			_ = req.Reply(true, nil)
			fmt.Fprintln(ch.Stderr(), err)
			exitStatus(ch, 128)
			return
		}
		_ = req.Reply(true, nil)
		exitStatus(ch, s.run(cmd, ch))
		return
	}
}

// gitCommand maps `git-upload-pack '/name.git'` (or receive-pack) to the
// program and the repository on disk.
func (s *GitSSH) gitCommand(line string) (*exec.Cmd, error) {
	verb, arg, _ := strings.Cut(line, " ")
	if verb != "git-upload-pack" && verb != "git-receive-pack" {
		return nil, fmt.Errorf("%q: only git-upload-pack and git-receive-pack are served", verb)
	}
	repo := strings.TrimPrefix(strings.Trim(arg, `'"`), "/")
	if repo == "" || !filepath.IsLocal(repo) {
		return nil, fmt.Errorf("%q: not a repository", arg)
	}
	return exec.Command("git", strings.TrimPrefix(verb, "git-"), filepath.Join(s.root, repo)), nil
}

// run wires cmd to the channel and returns its exit code.
func (s *GitSSH) run(cmd *exec.Cmd, ch ssh.Channel) int {
	cmd.Stdout, cmd.Stderr = ch, ch.Stderr()
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return 128
	}
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(ch.Stderr(), err)
		return 128
	}
	go func() {
		_, _ = io.Copy(stdin, ch)
		stdin.Close()
	}()
	var exit *exec.ExitError
	switch err := cmd.Wait(); {
	case err == nil:
		return 0
	case errors.As(err, &exit):
		return exit.ExitCode()
	default:
		return 128
	}
}

func exitStatus(ch ssh.Channel, code int) {
	_, _ = ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{uint32(code)}))
}
