package bench

import "os/exec"

func testenvGit(dir string, args ...string) *exec.Cmd {
	c := exec.Command("git", append([]string{"-c", "user.name=bench", "-c", "user.email=bench@example.com"}, args...)...)
	c.Dir = dir
	return c
}
