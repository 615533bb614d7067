package e2e

import "testing"

// steps runs the steps of a story test: each is a subtest, for its name in
// the output, but it starts from the state the steps before it left (the
// history ids they made, the commits they pushed, the revision they
// promoted), so the dependency is explicit rather than an accident of order:
//
//   - a failed step ends the test, since the steps after it would start
//     from a state it did not make;
//   - a step never runs without the steps before it: selecting one with
//     -run fails it with the name of the step it needs.
//
// Subtests that set up what they need themselves stay plain t.Run.
type steps struct {
	t *testing.T
	// skipped is the first step -run left out, if any.
	skipped string
}

func newSteps(t *testing.T) *steps { return &steps{t: t} }

// run runs the next step.
func (s *steps) run(name string, step func(t *testing.T)) {
	s.t.Helper()
	ran := false
	ok := s.t.Run(name, func(t *testing.T) {
		ran = true
		if s.skipped != "" {
			t.Fatalf("this step builds on the steps before it, and -run left out step %q: run the whole test", s.skipped)
		}
		step(t)
	})
	if !ran && s.skipped == "" {
		s.skipped = name
	}
	if !ok {
		s.t.Fatalf("step %q failed; no step after it runs, as each builds on it", name)
	}
}
