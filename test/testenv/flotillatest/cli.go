package flotillatest

import (
	"io"

	"github.com/flotilla-dev/flotilla/internal/cli"
	"github.com/flotilla-dev/flotilla/test/testenv"
)

// RunCLI runs the flotilla CLI with args in process, as an operator types
// them, with its output to stdout, and its usage messages and the error it
// ends with (one line, as cmd/flotilla prints it) to stderr. It returns the
// exit code the command would exit with (cli.ExitCode).
func RunCLI(t testenv.TB, stdout, stderr io.Writer, args ...string) int {
	t.Helper()
	root := cli.NewRoot(stdout)
	root.SetArgs(args)
	root.SetErr(stderr)
	err := root.ExecuteContext(t.Context())
	if err != nil {
		_, _ = io.WriteString(stderr, err.Error())
	}
	return cli.ExitCode(err)
}
